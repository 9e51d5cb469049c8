/**
 * A value now, or later. The decision path answers synchronously whenever it
 * can (a cached token, an in-memory quota) and returns a Promise only when a
 * store or quota backend must be asked over the network (PostgreSQL, Redis):
 * a Promise per request would cost every cache hit a microtask and an allocation.
 */
export type MaybePromise<T> = T | Promise<T>;

/** Whether `value` is still to come; our backends return native Promises. */
export function isPromise<T>(value: MaybePromise<T>): value is Promise<T> {
  return value instanceof Promise;
}

/**
 * The value of `value`, which must already be there: for callers whose
 * look-ups are all in memory (the policy test runner, benchmarks), where a
 * Promise would mean a slow path was taken by mistake.
 */
export function settledNow<T>(value: MaybePromise<T>): T {
  if (isPromise(value)) throw new Error("expected an answer at once: every look-up here is in memory");
  return value;
}
