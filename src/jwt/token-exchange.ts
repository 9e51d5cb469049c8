/**
 * The exchange: an API token in, a signed JWT out. Judged like any request of
 * the token (engine/decide-exchange.ts), rate limited per token on a counter
 * of its own, then signed with the key ring's current key. Transports (the
 * HTTP endpoint, `TokenService.ExchangeToken` on Connect and gRPC) only
 * convert their wire format to an {@link AuthzInput} and back.
 */
import { randomUUID } from "node:crypto";
import { readRequest, unauthenticated, unavailable } from "../engine/decide.js";
import { decideExchange } from "../engine/decide-exchange.js";
import type { AuthzInput, Decision, TokenRecord } from "../engine/types.js";
import type { CompiledPolicySet } from "../policy/types.js";
import type { QuotaCounter } from "../quota/quota-counter.js";
import { renderDecision, type RenderedResponse } from "../render/render.js";
import { chargeQuota } from "../service/charge-quota.js";
import type { TenantStateLookup } from "../service/tenant-state-cache.js";
import type { TokenLookup } from "../service/token-cache.js";
import { parseToken } from "../token/index.js";
import { buildPayload } from "./claims.js";
import type { KeyRing } from "./key-ring.js";
import { signJwt } from "./sign-jwt.js";

/** What a caller may ask of an exchange besides its credential. */
export interface ExchangeRequest {
  /** Scopes the JWT should carry, each one the token holds; all of them when empty or absent. */
  readonly scopes?: readonly string[];
  /** Lifetime in seconds, from 1 to the policy set's `maxLifetime`; that maximum when absent or 0. */
  readonly lifetimeSeconds?: number;
}

/** The answer to an exchange, ready for a transport. */
export type ExchangeOutcome =
  | {
      readonly ok: true;
      readonly accessToken: string;
      /** Seconds until the JWT expires. */
      readonly expiresIn: number;
      readonly tokenType: "Bearer";
      readonly requestId: string;
    }
  /** Refused: the decision (an `invalid_request` for a request asking too much) and its rendering in the policy set's dialect. */
  | { readonly ok: false; readonly decision: Decision; readonly response: RenderedResponse; readonly requestId: string };

export interface TokenExchange {
  /** The policy set's exchange path, or `null` when exchange is off. */
  path(): string | null;
  /** Exchanges the bearer token of `input`; never throws (a failure is an `unavailable` outcome). */
  exchange(input: AuthzInput, request: ExchangeRequest): Promise<ExchangeOutcome>;
}

export interface TokenExchangeDeps {
  readonly policy: () => CompiledPolicySet | null;
  readonly tokens: TokenLookup;
  readonly tenantState: TenantStateLookup;
  readonly ring: KeyRing;
  /** The exchanges' own counter, keyed by token id: never the one API quotas are charged on. */
  readonly quota: QuotaCounter;
  readonly now: () => number;
  readonly onError: (error: unknown, requestId: string) => void;
  /** Told about each exchange's decision, e.g. for last-used stamps; optional. */
  readonly observe?: (decision: Decision) => void;
}

// Caller-chosen request ids are echoed in bodies and logs, as the authorizer keeps them.
const REQUEST_ID_PATTERN = /^[\w.:\-]{1,128}$/;

/** Builds the exchange. */
export function createTokenExchange(deps: TokenExchangeDeps): TokenExchange {
  return {
    path: () => deps.policy()?.tokenExchange?.path ?? null,
    async exchange(input, request) {
      const given = input.headers.get("x-request-id");
      const requestId = given !== undefined && REQUEST_ID_PATTERN.test(given) ? given : randomUUID();
      const policy = deps.policy();
      const refused = (decision: Decision, dialectOf: CompiledPolicySet | null): ExchangeOutcome => ({
        ok: false,
        decision,
        response: renderDecision(decision, dialectOf?.errorDialect ?? "canonical", requestId),
        requestId,
      });
      if (policy === null) return refused(unavailable("no valid policy set is loaded"), null);
      const settings = policy.tokenExchange;
      if (settings === null) return refused(unavailable("token exchange is not enabled by the policy set"), policy);
      try {
        const reading = readRequest(environmentOfToken(input, policy), policy);
        if (reading.done) return refused(reading.decision, policy);
        if (reading.credential.jwt === true) {
          return refused(unauthenticated({ reason: "malformed", message: "a jwt cannot be exchanged: exchange the api token it came from", presented: true }, policy), policy);
        }
        const token: TokenRecord | undefined = await deps.tokens.find(reading.credential.token);
        const nowMs = deps.now();
        const judged = decideExchange(reading.request, reading.credential, policy, {
          token,
          tenantSuspended: token !== undefined && deps.tenantState.tenantSuspended(token.tenant),
          workspaceRestricted: false,
        }, nowMs);
        if (!judged.allowed || judged.identity === null) {
          deps.observe?.(judged);
          return refused(judged, policy);
        }
        // INVARIANT: an allowed exchange decision carries the identity.
        const identity = judged.identity;
        const asked = askedFor(request, identity.scopes, settings.maxLifetimeMs);
        if (typeof asked === "string") return refused(invalidExchange(asked), policy);
        // The rate limit comes last, as quotas do: a refused or malformed exchange is not counted.
        const charged = await chargeQuota(judged, deps.quota, nowMs);
        deps.observe?.(charged);
        if (!charged.allowed) return refused(charged, policy);
        const accessToken = await signJwt(buildPayload(identity, asked.scopes, settings, nowMs, asked.lifetimeSeconds), deps.ring);
        return { ok: true, accessToken, expiresIn: asked.lifetimeSeconds, tokenType: "Bearer", requestId };
      } catch (error) {
        deps.onError(error, requestId);
        return refused(unavailable("the token could not be exchanged"), policy);
      }
    },
  };
}

/** The scopes and lifetime a request asks for, or why it asks too much. */
function askedFor(request: ExchangeRequest, held: readonly string[], maxLifetimeMs: number): { scopes: readonly string[]; lifetimeSeconds: number } | string {
  const maxSeconds = Math.floor(maxLifetimeMs / 1_000);
  const lifetime = request.lifetimeSeconds ?? 0;
  if (!Number.isSafeInteger(lifetime) || lifetime < 0 || lifetime > maxSeconds) return `lifetime must be from 1 to ${maxSeconds} seconds`;
  const wanted = request.scopes ?? [];
  for (const scope of wanted) if (!held.includes(scope)) return `the token does not hold scope \`${scope.slice(0, 128)}\``;
  const scopes = wanted.length === 0 ? held : [...new Set(wanted)].sort();
  return { scopes, lifetimeSeconds: lifetime === 0 ? maxSeconds : lifetime };
}

function invalidExchange(message: string): Decision {
  return {
    allowed: false,
    code: "invalid_request",
    httpStatus: 400,
    reason: "exchange_request",
    message,
    ruleId: "token_exchange",
    auditEvent: "auth.api_token_invalid_request",
    details: {},
    responseHeaders: [],
    upstreamHeaders: [],
    upstreamMetadata: [],
    identity: null,
    warnings: [],
    quota: null,
  };
}

/**
 * The exchange targets no API host, so unless the request names an
 * environment in the policy set's environment header, it is judged in the
 * environment its token's prefix names, whatever host it was sent to: a
 * sandbox token gets a sandbox JWT, which then works only on sandbox hosts.
 */
function environmentOfToken(input: AuthzInput, policy: CompiledPolicySet): AuthzInput {
  if (policy.environmentHeader !== null && input.headers.has(policy.environmentHeader)) return input;
  const raw = input.headers.get("authorization")?.trim().split(/\s+/)[1];
  const parsed = raw === undefined ? undefined : parseToken(raw, policy.tokenPrefixes);
  const environment = parsed?.ok === true ? policy.environmentByPrefix.get(parsed.prefix) : undefined;
  if (environment === undefined) return input;
  if (environment === policy.defaultEnvironment) return { ...plain(input), host: "" };
  for (const [host, name] of policy.environmentByHost) {
    if (name === environment) return { ...plain(input), host };
  }
  return input;
}

/** The input's fields as a plain object (the transports' inputs read the certificate lazily through a getter). */
function plain(input: AuthzInput): AuthzInput {
  return { method: input.method, path: input.path, host: input.host, headers: input.headers, sourceIp: input.sourceIp, clientCertificate: input.clientCertificate };
}
