/**
 * The quota stage (`quota_exceeded`), last in DESIGN.md's order. Counting is
 * state, so it happens outside the engine: `decide` names the quota in force on
 * its allow (`Decision.quota`), the authorizer charges a `QuotaCounter`, and
 * this pure function turns the allow and the charge into the final decision.
 */
import type { CompiledQuota } from "../policy/types.js";
import type { ChargeResult } from "../quota/quota-counter.js";
import { auditEventOf, httpStatusOf } from "./codes.js";
import type { Decision, HeaderField } from "./types.js";

/** Rate-limit header names (draft-ietf-httpapi-ratelimit-headers), lower-case as on the wire. */
export const RATE_LIMIT_HEADERS = {
  limit: "ratelimit-limit",
  remaining: "ratelimit-remaining",
  reset: "ratelimit-reset",
  policy: "ratelimit-policy",
} as const;

/**
 * The `ratelimit-*` fields for a charge: limit, remaining and reset (seconds)
 * of the window the charge reports, and every window of the quota in `ratelimit-policy`.
 */
export function rateLimitHeaders(quota: CompiledQuota, charge: ChargeResult): HeaderField[] {
  return [
    [RATE_LIMIT_HEADERS.limit, String(charge.limit)],
    [RATE_LIMIT_HEADERS.remaining, String(charge.remaining)],
    [RATE_LIMIT_HEADERS.reset, String(charge.resetSeconds)],
    [RATE_LIMIT_HEADERS.policy, quota.policyHeader],
  ];
}

/**
 * Applies a charge to the allow it was made for: a charge that fit keeps the
 * allow and adds the `ratelimit-*` headers for the client; a refused one turns
 * it into {@link quotaExceeded}. Anything but an allow with a quota is returned as is.
 */
export function applyQuotaCharge(decision: Decision, charge: ChargeResult): Decision {
  if (!decision.allowed || decision.quota === null) return decision;
  if (!charge.allowed) return quotaExceeded(decision, charge);
  return { ...decision, responseHeaders: [...decision.responseHeaders, ...rateLimitHeaders(decision.quota, charge)] };
}

/**
 * The `quota_exceeded` (429) decision for an allow whose quota is spent:
 * `Retry-After` and the `ratelimit-*` headers, details `quota` (`per_minute` or
 * `per_day`), `limit` and `retry_after_seconds`, the quota's rule id, and the
 * allow's identity and warnings. Nothing goes upstream.
 */
export function quotaExceeded(allow: Decision, charge: ChargeResult): Decision {
  // INVARIANT: only called for an allow that named a quota (see applyQuotaCharge).
  const quota = allow.quota!;
  const unit = charge.window === "per_minute" ? "minute" : "day";
  const seconds = charge.retryAfterSeconds;
  return {
    allowed: false,
    code: "quota_exceeded",
    httpStatus: httpStatusOf("quota_exceeded"),
    reason: charge.window,
    message: `quota of ${charge.limit} requests per ${unit} is spent; retry in ${seconds} second${seconds === 1 ? "" : "s"}`,
    ruleId: quota.ruleId,
    auditEvent: auditEventOf("quota_exceeded"),
    details: { quota: charge.window, limit: String(charge.limit), retry_after_seconds: String(seconds) },
    responseHeaders: [["retry-after", String(seconds)], ...rateLimitHeaders(quota, charge)],
    upstreamHeaders: [],
    upstreamMetadata: allow.upstreamMetadata,
    identity: allow.identity,
    warnings: allow.warnings,
    quota: null,
  };
}

/**
 * The `unavailable` (503) decision for an allow whose quota could not be
 * counted (the shared quota store did not answer in time): it fails closed, as
 * an uncounted request could exceed the limit. Reason `quota_store_unavailable`,
 * the quota's rule id, `retry-after: 1` (the store reconnects by itself), and
 * the allow's identity, so that the audit trail names the token. Nothing goes upstream.
 */
export function quotaStoreUnavailable(allow: Decision): Decision {
  // INVARIANT: only called for an allow that named a quota (see chargeQuota).
  const quota = allow.quota!;
  return {
    allowed: false,
    code: "unavailable",
    httpStatus: httpStatusOf("unavailable"),
    reason: "quota_store_unavailable",
    message: "the quota store cannot count this request; retry shortly",
    ruleId: quota.ruleId,
    auditEvent: auditEventOf("unavailable"),
    details: {},
    responseHeaders: [["retry-after", "1"]],
    upstreamHeaders: [],
    upstreamMetadata: allow.upstreamMetadata,
    identity: allow.identity,
    warnings: allow.warnings,
    quota: null,
  };
}
