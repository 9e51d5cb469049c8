/**
 * Where the quota counter meets the engine: charges an allow's quota and lets
 * the pure quota stage turn the outcome into the final decision.
 */
import { applyQuotaCharge, quotaStoreUnavailable } from "../engine/quota.js";
import type { Decision } from "../engine/types.js";
import type { QuotaCounter } from "../quota/quota-counter.js";
import { QuotaStoreUnavailableError } from "../quota/quota-store-error.js";
import { isPromise, type MaybePromise } from "./maybe-promise.js";

/**
 * Charges `counter` for an allowed decision that names a quota, keyed by token
 * id, and returns the decision with its rate-limit headers, or `quota_exceeded`.
 * Denials and allows without a quota are returned untouched and never counted:
 * a quota counts only requests that passed every other check. A shared
 * quota store that cannot answer ({@link QuotaStoreUnavailableError}) makes the
 * allow `unavailable` (503, `quota_store_unavailable`): an expected outcome of
 * an outage, answered without logging each request (the store logs when it goes
 * away and comes back). Any other failure rejects, for the authorizer's catch-all.
 */
export function chargeQuota(decision: Decision, counter: QuotaCounter, nowMs: number): MaybePromise<Decision> {
  if (!decision.allowed || decision.quota === null || decision.identity === null) return decision;
  const charged = counter.charge(decision.identity.tokenId, decision.quota, nowMs);
  if (!isPromise(charged)) return applyQuotaCharge(decision, charged);
  return charged.then(
    (result) => applyQuotaCharge(decision, result),
    (error: unknown) => {
      if (error instanceof QuotaStoreUnavailableError) return quotaStoreUnavailable(decision);
      throw error;
    },
  );
}
