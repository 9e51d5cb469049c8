/**
 * The one failure a shared quota store reports: it could not answer a charge
 * in time (unreachable, too slow, too many charges waiting). The authorizer
 * turns it into `unavailable` (503) for the request whose quota it was:
 * counting cannot be skipped, so it fails closed.
 */
export class QuotaStoreUnavailableError extends Error {
  override readonly name = "QuotaStoreUnavailableError";
}
