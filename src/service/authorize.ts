/**
 * Where I/O and decisions meet: read the current policy set, look the token up,
 * call the pure engine, render the answer. Every transport calls this and only this.
 */
import { randomUUID } from "node:crypto";
import { decide, readRequest, unauthenticated, unavailable } from "../engine/decide.js";
import type { JwtCredentials, JwtResolution } from "../jwt/jwt-credentials.js";
import type { AuthzInput, Decision, TokenRecord } from "../engine/types.js";
import type { CompiledPolicySet } from "../policy/types.js";
import { createMemoryQuotaCounter } from "../quota/memory-quota-counter.js";
import type { QuotaCounter } from "../quota/quota-counter.js";
import { renderDecision, type RenderedResponse } from "../render/render.js";
import { chargeQuota } from "./charge-quota.js";
import { isPromise, type MaybePromise } from "./maybe-promise.js";
import type { TenantStateLookup } from "./tenant-state-cache.js";
import type { TokenLookup } from "./token-cache.js";
import type { UsageRecorder } from "./usage-recorder.js";

/** The answer to one request, ready for any transport to put on the wire. */
export interface AuthorizeResult {
  readonly decision: Decision;
  readonly response: RenderedResponse;
  readonly requestId: string;
  /** Whether the enforcement point should strip `Authorization` before forwarding an allowed request. */
  readonly stripCredential: boolean;
  /** Revision of the policy set that decided; `""` when none was loaded. */
  readonly policyRevision: string;
}

/** Everything {@link createAuthorizer} reads from the world. */
export interface AuthorizerDeps {
  /** The policy set in force, or `null` when none is loaded (every request is then `unavailable`). */
  readonly policy: () => CompiledPolicySet | null;
  readonly tokens: TokenLookup;
  /** Tenant suspension and workspace restriction, read only for a stored token. */
  readonly tenantState: TenantStateLookup;
  /** Milliseconds since the epoch; read once per request. */
  readonly now: () => number;
  /** Told about every request-path exception, which has already become an `unavailable` decision. */
  readonly onError: (error: unknown, requestId: string) => void;
  /**
   * Last-used stamps: told about every decision that identified a stored token
   * (it authenticated; the decision may still deny). An in-memory update; the
   * recorder writes batches off the decision path. Absent: nothing is stamped.
   */
  readonly usage?: Pick<UsageRecorder, "record">;
  /** Told about every decision with its duration in seconds, e.g. for metrics. Absent: nothing is timed. */
  readonly observe?: (decision: Decision, seconds: number) => void;
  /**
   * Quota counters, charged only for allows that name a quota. Absent: a fresh
   * in-memory counter per authorizer (per process; see docs/controls/quota.md).
   */
  readonly quota?: QuotaCounter;
  /**
   * Exchanged JWTs as bearer credentials (src/jwt/): verified once, then judged
   * as the token they were exchanged for. Absent: a JWT is `unauthenticated`.
   */
  readonly jwt?: JwtCredentials;
}

/**
 * A function from request to decision: the service every transport serves.
 * It answers at once when everything it needs is in memory (a cached token,
 * an in-memory quota), and with a Promise when a store or quota backend must
 * be asked; transports handle both.
 */
export type Authorizer = (input: AuthzInput) => MaybePromise<AuthorizeResult>;

// Caller-chosen request ids are echoed in bodies and logs, so they are kept short and plain.
const REQUEST_ID_PATTERN = /^[\w.:\-]{1,128}$/;

/**
 * Builds the authorizer. It never throws: an exception anywhere on the decision
 * path becomes an `unavailable` (503) decision, reported through `onError`.
 */
export function createAuthorizer(deps: AuthorizerDeps): Authorizer {
  const observe = deps.observe;
  const decideOnce = decideWith(deps);
  if (observe === undefined) return decideOnce;
  return (input) => {
    const startMs = performance.now();
    const result = decideOnce(input);
    if (!isPromise(result)) {
      observe(result.decision, (performance.now() - startMs) / 1_000);
      return result;
    }
    return result.then((settled) => {
      observe(settled.decision, (performance.now() - startMs) / 1_000);
      return settled;
    });
  };
}

/** What the decision needs from the token look-up, before the engine runs. */
type Facts = Parameters<typeof decide>[3];

// why: the helpers take their context as arguments, so that a decision made at once allocates no closures
function decideWith(deps: AuthorizerDeps): Authorizer {
  const quota = deps.quota ?? createMemoryQuotaCounter();
  const answer = (decision: Decision, policy: CompiledPolicySet, requestId: string): AuthorizeResult => ({
    decision,
    response: renderDecision(decision, policy.errorDialect, requestId),
    requestId,
    stripCredential: policy.stripCredential,
    policyRevision: policy.revision,
  });
  const fail = (error: unknown, policy: CompiledPolicySet, requestId: string): AuthorizeResult => {
    deps.onError(error, requestId);
    return failClosed("authorization could not be decided", requestId, policy);
  };
  const stamp = (decision: Decision, nowMs: number, policy: CompiledPolicySet, requestId: string): AuthorizeResult => {
    if (decision.identity !== null) deps.usage?.record(decision.identity.tokenId, nowMs);
    return answer(decision, policy, requestId);
  };
  // The quota comes last and counts only what decide() allowed.
  const finish = (token: TokenRecord | undefined, reading: Reading, policy: CompiledPolicySet, requestId: string, nowMs = deps.now()): MaybePromise<AuthorizeResult> => {
    const facts: Facts = {
      token,
      tenantSuspended: token !== undefined && deps.tenantState.tenantSuspended(token.tenant),
      workspaceRestricted: token !== undefined && deps.tenantState.workspaceRestricted(token.tenant, token.workspace),
    };
    const charged = chargeQuota(decide(reading.request, reading.credential, policy, facts, nowMs), quota, nowMs);
    if (isPromise(charged)) return charged.then((decision) => stamp(decision, nowMs, policy, requestId));
    return stamp(charged, nowMs, policy, requestId);
  };
  const judgeJwt = (resolved: JwtResolution, reading: Reading, policy: CompiledPolicySet, requestId: string, nowMs: number): MaybePromise<AuthorizeResult> =>
    resolved.ok ? finish(resolved.token, reading, policy, requestId, nowMs) : answer(unauthenticated(resolved.failure, policy), policy, requestId);
  return (input) => {
    const given = input.headers.get("x-request-id");
    const requestId = given !== undefined && REQUEST_ID_PATTERN.test(given) ? given : randomUUID();
    const policy = deps.policy();
    if (policy === null) return failClosed("no valid policy set is loaded", requestId);
    try {
      const reading = readRequest(input, policy);
      if (reading.done) return answer(reading.decision, policy, requestId);
      if (reading.credential.jwt === true) {
        const nowMs = deps.now();
        const resolved = deps.jwt === undefined ? NO_JWTS : deps.jwt.find(reading.credential.token, policy, nowMs);
        const result = isPromise(resolved) ? resolved.then((settled) => judgeJwt(settled, reading, policy, requestId, nowMs)) : judgeJwt(resolved, reading, policy, requestId, nowMs);
        return isPromise(result) ? result.catch((error: unknown) => fail(error, policy, requestId)) : result;
      }
      const token = deps.tokens.find(reading.credential.token);
      if (isPromise(token)) {
        return token.then((found) => finish(found, reading, policy, requestId)).catch((error: unknown) => fail(error, policy, requestId));
      }
      const result = finish(token, reading, policy, requestId);
      return isPromise(result) ? result.catch((error: unknown) => fail(error, policy, requestId)) : result;
    } catch (error) {
      return fail(error, policy, requestId);
    }
  };
}

const NO_JWTS: JwtResolution = { ok: false, failure: { reason: "jwt_invalid", message: "this service does not accept jwts", presented: true } };

/** A request `readRequest` could not decide alone: it needs the stored token. */
type Reading = Extract<ReturnType<typeof readRequest>, { done: false }>;

function failClosed(message: string, requestId: string, policy?: CompiledPolicySet): AuthorizeResult {
  const decision = unavailable(message);
  return { decision, response: renderDecision(decision, policy?.errorDialect ?? "canonical", requestId), requestId, stripCredential: true, policyRevision: policy?.revision ?? "" };
}
