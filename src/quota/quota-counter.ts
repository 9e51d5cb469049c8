/**
 * Quota counters: the state behind `quota_exceeded`, kept out of the pure
 * engine. The engine says which quota applies to an allowed request; the
 * authorizer charges it here, and only then (DESIGN.md: "A quota counts only
 * requests that passed every other check").
 */

/** The limits to charge against; `null` limits do not apply. A `CompiledQuota` is one. */
export interface QuotaLimits {
  /** Allowed requests per UTC minute, or `null`. */
  readonly limitPerMinute: number | null;
  /** Allowed requests per UTC day, or `null`. */
  readonly limitPerDay: number | null;
}

/** Which fixed window a charge reports: a UTC minute or a UTC day. */
export type QuotaWindow = "per_minute" | "per_day";

/**
 * The outcome of one charge, reporting one window: the spent one on a denial
 * (the day when both are spent, since that is the later reset), else the one
 * with fewer requests left (the day on a tie: it is the binding one).
 */
export interface ChargeResult {
  /** Whether the request fit: it was counted. A refused request is not counted. */
  readonly allowed: boolean;
  readonly window: QuotaWindow;
  /** The reported window's limit. */
  readonly limit: number;
  /** Requests left in the reported window after this charge; `0` when refused. */
  readonly remaining: number;
  /** Whole seconds until the reported window resets, at least 1. */
  readonly resetSeconds: number;
  /** Whole seconds until a refused request could pass (the reset of the spent window); `0` when allowed. */
  readonly retryAfterSeconds: number;
}

/** Counts requests per key in fixed UTC windows. */
export interface QuotaCounter {
  // A shared backend (Redis) answers later; the in-memory counter answers at once.
  /**
   * Counts one request for `key` (a token id) in every window `limits` sets,
   * unless one of them is spent; then counts nothing and refuses. `nowMs` is
   * the decision's clock reading, so one request sees one instant.
   */
  charge(key: string, limits: QuotaLimits, nowMs: number): ChargeResult | Promise<ChargeResult>;
}
