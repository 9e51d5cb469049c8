/**
 * `portcullis.v1.TokenService`: token management over the API, guarded by
 * Portcullis itself. Both transports (Connect on the HTTP/1.1 port, gRPC on
 * the gRPC port) serve the one implementation built here; they only convert a
 * call's headers and peer into a {@link CallContext}.
 *
 * Every call runs three steps:
 *
 * 1. **Guard.** The caller's own `Authorization` header is judged by the
 *    authorizer as a synthetic request to the policy set's token routes (see
 *    {@link GUARD_ROUTES}), so the policy set decides which scope each call
 *    needs, and every control on the caller's token (IP allowlist, conditional
 *    access, quota...) applies as it would to the real API. A denial becomes a
 *    {@link ConnectError}: `unauthenticated` for a bad credential,
 *    `permission_denied` (with the decision's message) for the rest.
 * 2. **Tenant.** The caller acts only within its token's tenant. A token id of
 *    another tenant answers `not_found`, exactly like an unknown id, so ids of
 *    other tenants cannot be probed.
 * 3. **Bounds.** A new token may hold no scope the caller does not hold
 *    (`permission_denied`); policy set limits and rotation conflicts answer
 *    `failed_precondition` with a message starting `conflict:`.
 *
 * The plaintext appears only in the create and rotate responses; nothing here
 * logs a request or a response.
 */
import { setTimeout as delay } from "node:timers/promises";
import { create, type JsonObject } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { DecisionCode } from "../engine/codes.js";
import { effectiveScopes } from "../engine/scope.js";
import type { AuthzInput, Decision, Identity, TokenControls, TokenRecord } from "../engine/types.js";
import {
  CreateTokenResponseSchema,
  EmergencyRevokeResponseSchema,
  GetTokenResponseSchema,
  ListSecurityEventsResponseSchema,
  ListTokensResponseSchema,
  RevokeTokenResponseSchema,
  RotateTokenResponseSchema,
  TokenSchema,
  UpdateTokenControlsResponseSchema,
  type CreateTokenRequest,
  type CreateTokenResponse,
  type EmergencyRevokeRequest,
  type EmergencyRevokeResponse,
  type GetTokenRequest,
  type GetTokenResponse,
  type ListSecurityEventsRequest,
  type ListSecurityEventsResponse,
  type ListTokensRequest,
  type ListTokensResponse,
  type RevokeTokenRequest,
  type RevokeTokenResponse,
  type RotateTokenRequest,
  type RotateTokenResponse,
  type Token,
  type TokenFilter as TokenFilterMessage,
  type UpdateTokenControlsRequest,
  type UpdateTokenControlsResponse,
} from "../gen/portcullis/v1/token_service_pb.js";
import type { CompiledPolicySet, CompiledTokenRules } from "../policy/types.js";
import { filterHasField, selectEmergencyRevocations, selectTokens, type TokenFilter } from "../lifecycle/emergency.js";
import { clip, escalationProblem } from "../lifecycle/escalation.js";
import { overlapProblem } from "../lifecycle/rotation.js";
import { parseSince } from "../lifecycle/since.js";
import type { TokenLifecycle } from "../lifecycle/token-lifecycle.js";
import { tokenStatus } from "../lifecycle/token-status.js";
import { isLockBusy, StoreError, transientStoreError } from "../store/store-error.js";
import type { TokenListing } from "../store/store-interfaces.js";
import { parseToken } from "../token/index.js";
import type { Authorizer } from "../service/authorize.js";
import { createToken, TokenRequestError, updateTokenControls } from "../service/tokens.js";

/** What a transport knows about one call. */
export interface CallContext {
  /** The `authorization` header; repeated fields joined by `", "`, so that the engine sees a duplicate. `undefined` when absent. */
  readonly authorization: string | undefined;
  /** The caller's address as the transport's socket saw it; `""` when unknown. */
  readonly sourceIp: string;
  /** The caller's `x-request-id`, echoed into the guard decision; optional. */
  readonly requestId?: string;
}

/** The guard routes: each RPC is judged as this request to the policy set's own token API. `{id}` is the token id, URL-encoded. */
export const GUARD_ROUTES = {
  createToken: { method: "POST", path: "/api/settings/api-tokens" },
  getToken: { method: "GET", path: "/api/settings/api-tokens/{id}" },
  listTokens: { method: "GET", path: "/api/settings/api-tokens" },
  updateTokenControls: { method: "PATCH", path: "/api/settings/api-tokens/{id}" },
  rotateToken: { method: "POST", path: "/api/settings/api-tokens/{id}/rotate" },
  revokeToken: { method: "DELETE", path: "/api/settings/api-tokens/{id}" },
  emergencyRevoke: { method: "POST", path: "/api/settings/api-tokens/emergency-revoke" },
  listSecurityEvents: { method: "GET", path: "/api/settings/api-tokens/security-events" },
} as const satisfies Record<string, { method: string; path: string }>;

/** Everything {@link createTokenService} reads from the world. */
export interface TokenServiceDeps {
  /** The token lifecycle over the store in use. */
  readonly lifecycle: TokenLifecycle;
  /** The policy set in force, or `null` when none is loaded (every call is then `unavailable`). */
  readonly policy: () => CompiledPolicySet | null;
  /** Judges the caller's token; the same authorizer every transport serves. */
  readonly authorize: Authorizer;
  /** Milliseconds since the epoch; read once per call. */
  readonly now: () => number;
}

/** The service, one method per RPC; every method throws only {@link ConnectError}. */
export interface TokenServiceImpl {
  createToken(request: CreateTokenRequest, call: CallContext): Promise<CreateTokenResponse>;
  getToken(request: GetTokenRequest, call: CallContext): Promise<GetTokenResponse>;
  listTokens(request: ListTokensRequest, call: CallContext): Promise<ListTokensResponse>;
  updateTokenControls(request: UpdateTokenControlsRequest, call: CallContext): Promise<UpdateTokenControlsResponse>;
  rotateToken(request: RotateTokenRequest, call: CallContext): Promise<RotateTokenResponse>;
  revokeToken(request: RevokeTokenRequest, call: CallContext): Promise<RevokeTokenResponse>;
  emergencyRevoke(request: EmergencyRevokeRequest, call: CallContext): Promise<EmergencyRevokeResponse>;
  listSecurityEvents(request: ListSecurityEventsRequest, call: CallContext): Promise<ListSecurityEventsResponse>;
  /** Whether the caller may manage tokens (the `createToken` guard lets it through): who may have decision explanations. */
  mayManageTokens(call: CallContext): Promise<boolean>;
}

/** Who is calling, once the guard let them through. */
interface Caller {
  readonly identity: Identity;
  readonly policy: CompiledPolicySet;
  readonly nowMs: number;
  /** For the audit trail: `token:<id>`. */
  readonly actor: string;
}

const TOKEN_ID = /^tok_[0-9A-Za-z]{1,64}$/;

/**
 * Builds the service.
 *
 * @example
 * ```ts
 * const tokens = createTokenService({ store, policy: () => policy, authorize, now: Date.now });
 * registerTokenService(router, tokens); // Connect
 * tokenServiceMethods(tokens); // the gRPC port's methods
 * ```
 */
export function createTokenService(deps: TokenServiceDeps): TokenServiceImpl {
  const guard = async (route: keyof typeof GUARD_ROUTES, call: CallContext, id?: string): Promise<Caller> => {
    const policy = deps.policy();
    if (policy === null) throw new ConnectError("no valid policy set is loaded", Code.Unavailable);
    const { method, path } = GUARD_ROUTES[route];
    const input: AuthzInput = {
      method,
      // why: an id that is not a token id (`..`, `..;`) must not move the judged path to another route
      path: path.replace("{id}", id === undefined || !TOKEN_ID.test(id) ? "_" : id),
      host: hostForCredential(call.authorization, policy),
      headers: guardHeaders(call),
      sourceIp: call.sourceIp,
      clientCertificate: null,
    };
    const { decision } = await deps.authorize(input);
    if (!decision.allowed || decision.identity === null) throw guardError(decision);
    const identity = decision.identity;
    return { identity, policy, nowMs: deps.now(), actor: `token:${identity.tokenId}` };
  };

  /** The token `id` when the caller's tenant owns it; `not_found` otherwise, whoever owns it. */
  const owned = async (caller: Caller, id: string): Promise<TokenListing> => {
    const listing = TOKEN_ID.test(id) ? await deps.lifecycle.getListing(id) : undefined;
    if (listing === undefined || listing.tenant !== caller.identity.tenant) {
      throw new ConnectError(`no token with id \`${clip(id)}\``, Code.NotFound);
    }
    return listing;
  };

  const message = async (caller: Caller, id: string): Promise<Token> => {
    // INVARIANT: called right after a write to a row the caller owns.
    return tokenMessage((await deps.lifecycle.getListing(id))!, caller.policy, caller.nowMs);
  };

  return {
    async createToken(request, call) {
      const caller = await guard("createToken", call);
      return translateWrite(async () => {
        const { identity, policy, nowMs } = caller;
        const type = request.type === "" ? "service" : request.type;
        if (type !== "user" && type !== "service") throw new ConnectError(`token type must be \`user\` or \`service\`, got \`${clip(type)}\``, Code.InvalidArgument);
        if (request.expiresInSeconds < 0n) throw new ConnectError("expires_in_seconds must not be negative", Code.InvalidArgument);
        const controls = controlsOf(request.controls);
        const candidate: TokenRecord = {
          id: "tok_candidate",
          tenant: identity.tenant,
          workspace: request.workspace,
          environment: request.environment === "" ? identity.environment : request.environment,
          type,
          name: request.name,
          role: request.role === "" ? null : request.role,
          keyLevel: request.keyLevel === "" ? null : request.keyLevel,
          scopes: request.scopes.length === 0 ? null : [...request.scopes],
          creatorRole: request.creatorRole === "" ? null : request.creatorRole,
          createdAtMs: nowMs,
          expiresAtMs: request.expiresInSeconds === 0n ? null : nowMs + Number(request.expiresInSeconds) * 1_000,
          revokedAtMs: null,
          service: request.serviceLabel === "" ? null : request.serviceLabel,
          controls: controls ?? {},
          lineageId: "tok_candidate",
          successorId: null,
          overlapEndsAtMs: null,
        };
        // A token manages its own environment only, and mints nothing beyond what it holds.
        const escalation = escalationProblem(candidate, identity, policy);
        if (escalation !== null) throw new ConnectError(escalation, Code.PermissionDenied);
        const { token, record } = await createToken(
          deps.lifecycle,
          policy,
          {
            tenant: candidate.tenant,
            workspace: candidate.workspace,
            environment: candidate.environment,
            name: candidate.name,
            type,
            role: candidate.role,
            keyLevel: candidate.keyLevel,
            scopes: candidate.scopes,
            creator: request.creator === "" ? null : request.creator,
            creatorRole: candidate.creatorRole,
            expiresAtMs: candidate.expiresAtMs,
            service: candidate.service,
            controls,
            actor: caller.actor,
          },
          nowMs,
        );
        return create(CreateTokenResponseSchema, { token: await message(caller, record.id), plaintext: token });
      });
    },

    async getToken(request, call) {
      const caller = await guard("getToken", call, request.id);
      return translate(async () => create(GetTokenResponseSchema, { token: tokenMessage(await owned(caller, request.id), caller.policy, caller.nowMs) }));
    },

    async listTokens(request, call) {
      const caller = await guard("listTokens", call);
      return translate(async () => {
        const rows = await deps.lifecycle.list({
          tenant: caller.identity.tenant,
          workspace: request.workspace === "" ? undefined : request.workspace,
          includeRevoked: request.includeRevoked,
        });
        return create(ListTokensResponseSchema, { tokens: rows.map((row) => tokenMessage(row, caller.policy, caller.nowMs)) });
      });
    },

    async updateTokenControls(request, call) {
      const caller = await guard("updateTokenControls", call, request.id);
      await owned(caller, request.id);
      return translateWrite(async () => {
        await updateTokenControls(deps.lifecycle, caller.policy, request.id, controlsOf(request.controls), caller.actor);
        return create(UpdateTokenControlsResponseSchema, { token: await message(caller, request.id) });
      });
    },

    async rotateToken(request, call) {
      const caller = await guard("rotateToken", call, request.id);
      await owned(caller, request.id);
      return translateWrite(async () => {
        const rules = caller.policy.tokens;
        const overlapMs = request.overlapSeconds === undefined ? rules.defaultOverlapMs : Number(request.overlapSeconds) * 1_000;
        checkOverlap(overlapMs, rules);
        // The store tells the token cache about every changed token, so this node's next decision sees the change.
        const rotated = await deps.lifecycle.rotate(request.id, { overlapMs, actor: caller.actor, nowMs: caller.nowMs });
        return create(RotateTokenResponseSchema, {
          token: await message(caller, rotated.record.id),
          plaintext: rotated.token,
          predecessor: await message(caller, request.id),
        });
      });
    },

    async revokeToken(request, call) {
      const caller = await guard("revokeToken", call, request.id);
      await owned(caller, request.id);
      return translateWrite(async () => {
        await deps.lifecycle.revoke(request.id, caller.actor, request.reason === "" ? undefined : request.reason);
        return create(RevokeTokenResponseSchema, { token: await message(caller, request.id) });
      });
    },

    async listSecurityEvents(request, call) {
      const caller = await guard("listSecurityEvents", call);
      const filter = securityEventFilterOf(request, caller);
      return translate(async () => {
        const rows = await deps.lifecycle.listSecurityEvents(filter);
        return create(ListSecurityEventsResponseSchema, {
          events: rows.map((row) => ({
            minuteUnixMs: BigInt(row.minuteMs),
            event: row.event,
            tokenId: row.tokenId ?? "",
            tenant: row.tenant ?? "",
            count: BigInt(row.count),
            lastAtUnixMs: BigInt(row.lastAtMs),
          })),
        });
      });
    },

    async mayManageTokens(call) {
      try {
        await guard("createToken", call);
        return true;
      } catch (error) {
        if (error instanceof ConnectError) return false;
        throw error;
      }
    },

    async emergencyRevoke(request, call) {
      const caller = await guard("emergencyRevoke", call);
      return translateWrite(async () => {
        const { target } = request;
        const tenant = caller.identity.tenant;
        const reason = `emergency${request.reason === "" ? "" : `: ${request.reason}`}`;
        let ids: string[];
        if (target.case === "lineageOf") {
          const listing = await owned(caller, target.value);
          ids = selectEmergencyRevocations(await deps.lifecycle.lineageOf(listing.id), tenant).map((row) => row.id);
          if (!request.dryRun) ids = await deps.lifecycle.emergencyRevoke({ lineageOf: listing.id }, { tenant, actor: caller.actor, reason });
        } else if (target.case === "filter") {
          const filter = filterFromMessage(target.value, tenant);
          ids = selectTokens(await deps.lifecycle.list({ tenant, includeRevoked: false }), filter, caller.policy).map((row) => row.id);
          if (!request.dryRun && ids.length > 0) ids = await deps.lifecycle.emergencyRevoke({ ids }, { tenant, actor: caller.actor, reason });
        } else {
          throw new ConnectError("emergency revoke needs `lineage_of` or a `filter`", Code.InvalidArgument);
        }
        return create(EmergencyRevokeResponseSchema, { matchedCount: BigInt(ids.length), tokenIds: ids, dryRun: request.dryRun });
      });
    },
  };
}

/** The API's view of a stored token: never the plaintext or the hash. */
export function tokenMessage(row: TokenListing, policy: CompiledPolicySet, nowMs: number): Token {
  return create(TokenSchema, {
    id: row.id,
    tenant: row.tenant,
    workspace: row.workspace,
    environment: row.environment,
    prefix: row.prefix,
    type: row.type,
    name: row.name,
    role: row.role ?? "",
    keyLevel: row.keyLevel ?? "",
    scopes: row.scopes === null ? [] : [...row.scopes],
    effectiveScopes: [...effectiveScopes(row, policy)],
    creator: row.creator ?? "",
    creatorRole: row.creatorRole ?? "",
    serviceLabel: row.service ?? "",
    // INVARIANT: stored controls passed the controls schema, so they are plain JSON.
    controls: Object.keys(row.controls).length > 0 ? (row.controls as unknown as JsonObject) : undefined,
    status: tokenStatus(row, nowMs),
    createdAtUnixMs: BigInt(row.createdAtMs),
    expiresAtUnixMs: BigInt(row.expiresAtMs ?? 0),
    revokedAtUnixMs: BigInt(row.revokedAtMs ?? 0),
    revokedBy: row.revokedBy ?? "",
    revokedReason: row.revokedReason ?? "",
    lastUsedAtUnixMs: BigInt(row.lastUsedAtMs ?? 0),
    useCount: BigInt(row.useCount),
    lineageId: row.lineageId,
    predecessorId: row.predecessorId ?? "",
    successorId: row.successorId ?? "",
    rotatedAtUnixMs: BigInt(row.rotatedAtMs ?? 0),
    overlapEndsAtUnixMs: BigInt(row.overlapEndsAtMs ?? 0),
  });
}

/** Checks a requested overlap against the policy set's maximum: `invalid_argument` when it is refused. */
export function checkOverlap(overlapMs: number, rules: CompiledTokenRules): void {
  const problem = overlapProblem(overlapMs, rules);
  if (problem !== null) throw new ConnectError(problem, Code.InvalidArgument);
}

/** A `google.protobuf.Struct` of controls; an empty or absent one clears them. The store and the policy check their shape. */
function controlsOf(value: { [key: string]: unknown } | undefined): TokenControls | null {
  return value === undefined || Object.keys(value).length === 0 ? null : (value as TokenControls);
}

/** Rows {@link TokenServiceImpl.listSecurityEvents} may answer with by default and at most. */
const DEFAULT_SECURITY_EVENT_LIMIT = 100;
const MAX_SECURITY_EVENT_LIMIT = 10_000;

/**
 * The store filter of a security event read: always the caller's tenant (the
 * request may name it, but no other), a checked `limit` and a parsed `since`.
 */
function securityEventFilterOf(request: ListSecurityEventsRequest, caller: Caller): { tenant: string; event?: string; sinceMs?: number; limit: number } {
  const tenant = caller.identity.tenant;
  // why: no probing of other tenants, but a clear refusal rather than an empty list that looks like "no denials"
  if (request.tenant !== "" && request.tenant !== tenant) {
    throw new ConnectError(`a token of tenant \`${clip(tenant)}\` reads only its own tenant's security events, not \`${clip(request.tenant)}\``, Code.PermissionDenied);
  }
  const limit = request.limit === 0 ? DEFAULT_SECURITY_EVENT_LIMIT : request.limit;
  if (limit < 1 || limit > MAX_SECURITY_EVENT_LIMIT) {
    throw new ConnectError(`limit must be from 1 to ${MAX_SECURITY_EVENT_LIMIT} (0 for ${DEFAULT_SECURITY_EVENT_LIMIT}), got \`${request.limit}\``, Code.InvalidArgument);
  }
  let sinceMs: number | undefined;
  if (request.since !== "") {
    const parsed = parseSince(request.since.trim(), caller.nowMs);
    if (parsed === null) {
      throw new ConnectError(`invalid since \`${clip(request.since)}\`: expected an ISO 8601 time (2026-12-04T18:00:00Z) or a duration back from now (30m, 1h, 7d)`, Code.InvalidArgument);
    }
    sinceMs = parsed;
  }
  return { tenant, limit, ...(request.event === "" ? {} : { event: request.event }), ...(sinceMs === undefined ? {} : { sinceMs }) };
}

function filterFromMessage(message: TokenFilterMessage, tenant: string): TokenFilter {
  const filter: TokenFilter = {
    tenant,
    ...(message.serviceLabel === "" ? {} : { serviceLabel: message.serviceLabel }),
    ...(message.environment === "" ? {} : { environment: message.environment }),
    ...(message.scope === "" ? {} : { scope: message.scope }),
    ...(message.ids.length === 0 ? {} : { ids: [...message.ids] }),
  };
  if (!filterHasField(filter)) {
    throw new ConnectError("an emergency revoke filter needs at least one of `service_label`, `environment`, `scope` or `ids`", Code.InvalidArgument);
  }
  return filter;
}

/** The guard's request carries the caller's credential and request id, nothing else. */
function guardHeaders(call: CallContext): Map<string, string> {
  const headers = new Map<string, string>();
  if (call.authorization !== undefined) headers.set("authorization", call.authorization);
  if (call.requestId !== undefined) headers.set("x-request-id", call.requestId);
  return headers;
}

/**
 * A host that targets the environment the caller's token names, so that a
 * sandbox token manages sandbox tokens and its environment check passes. When
 * the header holds no readable token, the default environment's: the guard
 * then answers `unauthenticated` with the engine's own reason.
 */
function hostForCredential(authorization: string | undefined, policy: CompiledPolicySet): string {
  const raw = authorization?.trim().split(/\s+/)[1];
  const parsed = raw === undefined ? undefined : parseToken(raw, policy.tokenPrefixes);
  const environment = parsed?.ok === true ? policy.environmentByPrefix.get(parsed.prefix) : undefined;
  if (environment === undefined || environment === policy.defaultEnvironment) return "";
  for (const [host, name] of policy.environmentByHost) if (name === environment) return host;
  // An environment without hosts cannot be targeted by any request; the guard will say wrong environment.
  return "";
}

/** The RPC status for a denied guard: the code the decision's HTTP status stands for. */
function guardError(decision: Decision): ConnectError {
  return new ConnectError(decision.message, rpcCodeOf(decision.code), undefined, undefined, undefined);
}

/** The RPC status a denial's decision code stands for; the token API's guard and the JWT exchange both answer with it. */
export function rpcCodeOf(code: DecisionCode): Code {
  switch (code) {
    case "unauthenticated":
      return Code.Unauthenticated;
    case "invalid_request":
      return Code.InvalidArgument;
    case "quota_exceeded":
      return Code.ResourceExhausted;
    case "unavailable":
      return Code.Unavailable;
    case "ok": // allowed without an identity cannot happen; refuse rather than guess
    case "tenant_suspended":
    case "ip_allowlist_blocked":
    case "mtls_required":
    case "conditional_access_blocked":
    case "scope_denied":
    case "workspace_restricted":
      return Code.PermissionDenied;
    default:
      return assertNeverCode(code);
  }
}

function assertNeverCode(code: never): never {
  throw new Error(`unhandled decision code: ${String(code)}`);
}

/** Runs a read and turns the store's and the token rules' refusals into RPC errors. */
async function translate<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    throw toConnectError(error);
  }
}

/** How long a write keeps retrying while another process holds the store's write lock. */
const WRITE_RETRY_BUDGET_MS = 5_000;
const WRITE_RETRY_MAX_PAUSE_MS = 100;

/**
 * Runs a write like {@link translate}, retrying while another process holds
 * the write lock. The server's connection never waits for the lock itself
 * (busy timeout 0), so the pauses between attempts are timers: decisions keep
 * flowing meanwhile. Past the budget the answer is `unavailable`, to retry.
 * A failed attempt rolled its transaction back, so running `run` again is safe.
 */
async function translateWrite<T>(run: () => Promise<T>): Promise<T> {
  const startMs = performance.now();
  for (let attempt = 0; ; attempt++) {
    try {
      return await run();
    } catch (error) {
      if (!isLockBusy(error) || performance.now() - startMs >= WRITE_RETRY_BUDGET_MS) throw toConnectError(error);
    }
    await delay(Math.min(WRITE_RETRY_MAX_PAUSE_MS, 2 ** attempt));
  }
}

/** Maps a refusal to its RPC status; anything unexpected becomes `internal` without its message. */
export function toConnectError(error: unknown): ConnectError {
  if (error instanceof ConnectError) return error;
  if (error instanceof TokenRequestError) return new ConnectError(error.message, Code.InvalidArgument);
  if (error instanceof StoreError) {
    switch (error.kind) {
      case "not_found":
        return new ConnectError(error.message, Code.NotFound);
      case "conflict":
        return new ConnectError(`conflict: ${error.message}`, Code.FailedPrecondition);
      case "invalid":
        return new ConnectError(error.message, Code.InvalidArgument);
      case "unavailable":
      case "missing":
        return new ConnectError("the token store cannot be used right now; retry", Code.Unavailable, undefined, undefined, error);
      case "unwritable":
      case "corrupt":
      case "too_new":
      case "secret":
        return new ConnectError("the token store cannot be written", Code.Unavailable, undefined, undefined, error);
      default:
        return assertNeverKind(error.kind);
    }
  }
  // why: a full disk or a lock held elsewhere is retryable, not a bug (`internal` says "do not retry")
  const transient = transientStoreError(error);
  if (transient !== undefined) return toConnectError(transient);
  return new ConnectError("token management failed", Code.Internal, undefined, undefined, error);
}

function assertNeverKind(kind: never): never {
  throw new Error(`unhandled store error kind: ${String(kind)}`);
}
