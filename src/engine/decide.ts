/**
 * The engine: pure functions from plain values to a {@link Decision}. No I/O, no
 * clock reads; the caller passes `nowMs` and the stored facts it looked up.
 *
 * A decision is made in two halves because the token must be looked up in
 * between: {@link readRequest} judges everything knowable from the request
 * alone, then {@link decide} runs the remaining stages in DESIGN.md's order.
 */
import type { CompiledPolicySet, UpstreamField } from "../policy/types.js";
import { checkToken, readCredential, type AuthFailure, type Credential } from "./authenticate.js";
import { auditEventOf, httpStatusOf, type AuditEvent, type DecisionCode } from "./codes.js";
import { checkConditionalAccess } from "./conditional-access.js";
import { effectiveControls } from "./effective-controls.js";
import { checkIpAllowlist } from "./ip-allowlist.js";
import { checkMtls } from "./mtls.js";
import { prepareRequest, type PreparedRequest } from "./request.js";
import { checkScope, scopeSetOf } from "./scope.js";
import { checkTenant } from "./tenant.js";
import type { AuthzInput, Decision, Denial, HeaderField, Identity, MetadataEntry, TokenRecord, Warning } from "./types.js";
import { checkWorkspace } from "./workspace.js";
import type { WorkspaceRestrictionFact } from "./workspace-restriction-mode.js";

/** What the store knew about the request's token when it was asked. */
export interface StoredFacts {
  /** The token record for the credential's hash, or `undefined` when none is stored. */
  readonly token: TokenRecord | undefined;
  /** Whether the token's tenant is suspended (`portcullis tenants suspend`); `false` when there is no token. */
  readonly tenantSuspended: boolean;
  /**
   * The token's workspace restriction (`portcullis workspaces restrict`): its
   * mode, `true` for `writes`, or `false` when it is not restricted or there is no token.
   */
  readonly workspaceRestricted: WorkspaceRestrictionFact;
}

/** The result of {@link readRequest}: a final decision, or a credential to look up. */
export type RequestReading =
  | { readonly done: true; readonly decision: Decision }
  | { readonly done: false; readonly request: PreparedRequest; readonly credential: Credential };

/**
 * Judges what can be judged before the store is read: `invalid_request` and
 * the credential-format half of `unauthenticated`.
 */
export function readRequest(input: AuthzInput, policy: CompiledPolicySet): RequestReading {
  const prepared = prepareRequest(input, policy);
  if (!prepared.ok) {
    return { done: true, decision: deny("invalid_request", prepared.invalid.reason, prepared.invalid.message, "request", {}) };
  }
  const read = readCredential(prepared.request, policy);
  if (!read.ok) return { done: true, decision: unauthenticated(read.failure, policy) };
  return { done: false, request: prepared.request, credential: read.credential };
}

/**
 * Runs the stages that need the stored token, in precedence order; the first
 * denial decides.
 *
 * @example
 * const reading = readRequest(input, policy);
 * const decision = reading.done ? reading.decision
 *   : decide(reading.request, reading.credential, policy, { token, tenantSuspended: false, workspaceRestricted: false }, Date.now());
 */
export function decide(
  request: PreparedRequest,
  credential: Credential,
  policy: CompiledPolicySet,
  facts: StoredFacts,
  nowMs: number,
): Decision {
  const failure = checkToken(facts.token, credential, nowMs);
  if (failure !== null) return unauthenticated(failure, policy);
  // INVARIANT: checkToken returns null only for a stored token.
  const token = facts.token!;

  const principal = principalOf(token, policy);
  const { identity, upstreamHeaders, upstreamMetadata } = principal;
  const denied = (code: Exclude<DecisionCode, "ok">, denial: Denial, warnings: readonly Warning[] = []): Decision =>
    deny(code, denial.reason, denial.message, denial.ruleId, denial.details, [], principal, denial.auditEvent ?? auditEventOf(code), warnings);

  const tenant = checkTenant(token, facts);
  if (!tenant.ok) return denied("tenant_suspended", tenant.denial);

  const controls = effectiveControls(token, policy);
  const ip = checkIpAllowlist(request, controls.ipAllowlist);
  if (!ip.ok) return denied("ip_allowlist_blocked", ip.denial);

  const mtls = checkMtls(request, controls.mtls, nowMs, policy.trustedCas);
  if (!mtls.ok) return denied("mtls_required", mtls.denial);
  // why: a certificate close to expiry, or a token inside its rotation window, is worth telling operators about even when a later stage denies
  const rotating = rotationWarning(token);
  const warnings = rotating === null ? mtls.warnings : [...mtls.warnings, rotating];

  const access = checkConditionalAccess(request, controls.conditionalAccess, nowMs);
  if (!access.ok) return denied("conditional_access_blocked", access.denial, warnings);

  const scope = checkScope(request, policy, token);
  if (!scope.ok) {
    const { denial } = scope;
    const headers: HeaderField[] =
      denial.reason === "missing_scope"
        ? [["www-authenticate", `Bearer realm="${policy.name}", error="insufficient_scope", scope="${denial.details.required_scope}"`]]
        : [];
    return deny("scope_denied", denial.reason, denial.message, denial.ruleId, denial.details, headers, principal, auditEventOf("scope_denied"), warnings);
  }

  const workspace = checkWorkspace(request, token, policy, facts);
  if (!workspace.ok) return denied("workspace_restricted", workspace.denial, warnings);

  // Quota (quota_exceeded) is last: the allow names the quota in force, and the
  // authorizer charges it (counters are state; see engine/quota.ts), so only
  // requests that passed every other stage are ever counted.

  return {
    allowed: true,
    code: "ok",
    httpStatus: 200,
    reason: "ok",
    message: "allowed",
    ruleId: scope.route.ruleId,
    auditEvent: null,
    details: {},
    responseHeaders: [],
    upstreamHeaders,
    upstreamMetadata,
    identity,
    warnings,
    quota: controls.quota,
  };
}

/** The decision for a request that could not be judged: fails closed with 503. */
export function unavailable(message: string): Decision {
  return deny("unavailable", "internal_error", message, "unavailable", {});
}

/** The `unauthenticated` (401) decision for a credential failure, with its RFC 6750 challenge. */
export function unauthenticated(failure: AuthFailure, policy: CompiledPolicySet): Decision {
  // RFC 6750 §3: no error attribute when the request carried no credential at all.
  const challenge = failure.presented
    ? `Bearer realm="${policy.name}", error="invalid_token", error_description="${failure.message.replace(/["\\]/g, "")}"`
    : `Bearer realm="${policy.name}"`;
  return deny("unauthenticated", failure.reason, failure.message, "authentication", {}, [["www-authenticate", challenge]]);
}

/** A denial with every field filled; `principal` when the token is known. */
export function deny(
  code: Exclude<DecisionCode, "ok">,
  reason: string,
  message: string,
  ruleId: string,
  details: Readonly<Record<string, string>>,
  responseHeaders: readonly HeaderField[] = [],
  principal: Principal | null = null,
  auditEvent: AuditEvent = auditEventOf(code),
  warnings: readonly Warning[] = [],
): Decision {
  return {
    allowed: false,
    code,
    httpStatus: httpStatusOf(code),
    reason,
    message,
    ruleId,
    auditEvent,
    details,
    responseHeaders,
    upstreamHeaders: [],
    upstreamMetadata: principal?.upstreamMetadata ?? [],
    identity: principal?.identity ?? null,
    warnings,
    quota: null,
  };
}

/**
 * The `token_rotating` warning for a token inside its overlap window. Only
 * called once {@link checkToken} passed, so the window has not ended yet.
 */
function rotationWarning(token: TokenRecord): Warning | null {
  if (token.overlapEndsAtMs === null) return null;
  const successor = token.successorId === null ? "" : ` to \`${token.successorId}\``;
  return { code: "token_rotating", message: `token was rotated${successor}; it stops working at ${new Date(token.overlapEndsAtMs).toISOString()}` };
}

/** The identity of a token and what forwards it upstream, as the policy set chose. */
export interface Principal {
  readonly identity: Identity;
  readonly upstreamHeaders: readonly HeaderField[];
  readonly upstreamMetadata: readonly MetadataEntry[];
}

const principals = new WeakMap<TokenRecord, { policy: CompiledPolicySet; principal: Principal }>();

/**
 * Memoised per (record, policy) pair: both are immutable, so the memo cannot go
 * stale, and an allow does not rebuild the same scope list and headers each
 * time. The lists are frozen: transports key their encodings on them.
 */
export function principalOf(token: TokenRecord, policy: CompiledPolicySet): Principal {
  const cached = principals.get(token);
  if (cached !== undefined && cached.policy === policy) return cached.principal;
  const scopeSet = scopeSetOf(token, policy);
  const identity: Identity = Object.freeze({
    tokenId: token.id,
    tenant: token.tenant,
    workspace: token.workspace,
    environment: token.environment,
    tokenType: token.type,
    role: token.role,
    name: token.name,
    scopes: scopeSet.scopes,
  });
  // why: a scopes-only token has no role; its header and entry are left out rather than sent empty
  const valueOf = (field: UpstreamField): string | readonly string[] | null => {
    switch (field) {
      case "scopes":
        return identity.scopes;
      case "role":
        return identity.role;
      default:
        return identity[field];
    }
  };
  const upstreamHeaders: HeaderField[] = [];
  for (const [field, name] of policy.upstream.headers) {
    const value = field === "scopes" ? scopeSet.joined : valueOf(field);
    if (value !== null) upstreamHeaders.push([name, value as string]);
  }
  const upstreamMetadata: MetadataEntry[] = [];
  for (const [field, key] of policy.upstream.metadata) {
    const value = valueOf(field);
    if (value !== null) upstreamMetadata.push([key, value]);
  }
  const principal = { identity, upstreamHeaders: Object.freeze(upstreamHeaders), upstreamMetadata: Object.freeze(upstreamMetadata) };
  principals.set(token, { policy, principal });
  return principal;
}
