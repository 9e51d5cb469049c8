/**
 * The decision on a token exchange (`TokenService.ExchangeToken`, the HTTP
 * exchange endpoint): the exchange is itself a request of the token, so the
 * stages that say whether this token may act here and now apply, in DESIGN.md's
 * order; the stages that say which API operation it may perform do not, since
 * every use of the JWT is judged in full again.
 */
import type { CompiledConditionalAccess, CompiledPolicySet } from "../policy/types.js";
import { checkToken, type Credential } from "./authenticate.js";
import { auditEventOf, type DecisionCode } from "./codes.js";
import { checkConditionalAccess } from "./conditional-access.js";
import type { StoredFacts } from "./decide.js";
import { deny, principalOf, unauthenticated } from "./decide.js";
import { effectiveControls } from "./effective-controls.js";
import { checkIpAllowlist } from "./ip-allowlist.js";
import { checkMtls } from "./mtls.js";
import type { PreparedRequest } from "./request.js";
import { checkTenant } from "./tenant.js";
import type { Decision, Denial } from "./types.js";

/**
 * Judges an exchange: `unauthenticated` (a JWT is never exchanged: only the
 * API token it came from), `tenant_suspended`, `ip_allowlist_blocked`,
 * `mtls_required` and `conditional_access_blocked` for the conditions on who,
 * where and when (environment, weekday, hours). A route, method, read-only or
 * idempotency-key condition is about API operations: it is not applied to the
 * exchange, and applies to every request made with the JWT. Scope and
 * workspace restriction likewise. The allow names the exchange's own rate
 * limit as its quota, which the caller charges on a counter of its own.
 */
export function decideExchange(request: PreparedRequest, credential: Credential, policy: CompiledPolicySet, facts: StoredFacts, nowMs: number): Decision {
  const exchange = policy.tokenExchange;
  if (exchange === null) return deny("unavailable", "exchange_off", "token exchange is not enabled by the policy set", "token_exchange", {});
  if (credential.jwt === true) {
    return unauthenticated({ reason: "malformed", message: "a jwt cannot be exchanged: exchange the api token it came from", presented: true }, policy);
  }
  const failure = checkToken(facts.token, credential, nowMs);
  if (failure !== null) return unauthenticated(failure, policy);
  // INVARIANT: checkToken returns null only for a stored token.
  const token = facts.token!;
  const principal = principalOf(token, policy);
  const denied = (code: Exclude<DecisionCode, "ok">, denial: Denial): Decision =>
    deny(code, denial.reason, denial.message, denial.ruleId, denial.details, [], principal, denial.auditEvent ?? auditEventOf(code));

  const tenant = checkTenant(token, facts);
  if (!tenant.ok) return denied("tenant_suspended", tenant.denial);
  const controls = effectiveControls(token, policy);
  const ip = checkIpAllowlist(request, controls.ipAllowlist);
  if (!ip.ok) return denied("ip_allowlist_blocked", ip.denial);
  const mtls = checkMtls(request, controls.mtls, nowMs, policy.trustedCas);
  if (!mtls.ok) return denied("mtls_required", mtls.denial);
  const access = checkConditionalAccess(request, whoWhereWhen(controls.conditionalAccess), nowMs);
  if (!access.ok) return denied("conditional_access_blocked", access.denial);

  return {
    allowed: true,
    code: "ok",
    httpStatus: 200,
    reason: "ok",
    message: "exchange allowed",
    ruleId: "token_exchange",
    auditEvent: null,
    details: {},
    responseHeaders: [],
    upstreamHeaders: [],
    upstreamMetadata: principal.upstreamMetadata,
    identity: principal.identity,
    warnings: mtls.warnings,
    quota: exchange.quota,
  };
}

const narrowed = new WeakMap<CompiledConditionalAccess, CompiledConditionalAccess>();

/** The conditions of `ca` that do not depend on the API operation; memoised, since compiled controls are immutable. */
function whoWhereWhen(ca: CompiledConditionalAccess | null): CompiledConditionalAccess | null {
  if (ca === null) return null;
  let kept = narrowed.get(ca);
  if (kept === undefined) {
    kept = Object.freeze({ ...ca, routes: null, methods: null, readOnly: false, requireIdempotencyKey: false });
    narrowed.set(ca, kept);
  }
  return kept;
}
