/**
 * What a charge reports, from the counts it left: shared by every
 * {@link QuotaCounter} so that the in-memory and the Redis counter answer alike.
 */
import type { ChargeResult, QuotaLimits, QuotaWindow } from "./quota-counter.js";

export const MINUTE_MS = 60_000;
export const DAY_MS = 86_400_000;

/** A token's two fixed windows after a charge: where each starts and how many it counted. */
export interface WindowCounts {
  readonly minuteStartMs: number;
  readonly minuteCount: number;
  readonly dayStartMs: number;
  readonly dayCount: number;
}

/**
 * The {@link ChargeResult} of a charge at `nowMs` that left `counts`: counted
 * (`allowed`, the counts include this request) or refused (the counts are as
 * found, one window at its limit). A refusal reports the spent window (the day
 * when both are spent, the later reset); an allow the window with fewer
 * requests left (the day on a tie).
 */
export function chargeResultOf(allowed: boolean, limits: QuotaLimits, counts: WindowCounts, nowMs: number): ChargeResult {
  const { limitPerMinute, limitPerDay } = limits;
  const minuteEndMs = counts.minuteStartMs + MINUTE_MS;
  const dayEndMs = counts.dayStartMs + DAY_MS;
  if (!allowed) {
    const daySpent = limitPerDay !== null && counts.dayCount >= limitPerDay;
    const window: QuotaWindow = daySpent ? "per_day" : "per_minute";
    const resetSeconds = secondsUntil(daySpent ? dayEndMs : minuteEndMs, nowMs);
    return { allowed: false, window, limit: (daySpent ? limitPerDay : limitPerMinute)!, remaining: 0, resetSeconds, retryAfterSeconds: resetSeconds };
  }
  const minuteLeft = limitPerMinute === null ? Infinity : limitPerMinute - counts.minuteCount;
  const dayLeft = limitPerDay === null ? Infinity : limitPerDay - counts.dayCount;
  return dayLeft <= minuteLeft
    ? { allowed: true, window: "per_day", limit: limitPerDay!, remaining: dayLeft, resetSeconds: secondsUntil(dayEndMs, nowMs), retryAfterSeconds: 0 }
    : { allowed: true, window: "per_minute", limit: limitPerMinute!, remaining: minuteLeft, resetSeconds: secondsUntil(minuteEndMs, nowMs), retryAfterSeconds: 0 };
}

/** Whole seconds from `nowMs` to `endMs`, rounded up, at least 1 (`Retry-After: 0` would invite a retry storm). */
function secondsUntil(endMs: number, nowMs: number): number {
  return Math.max(1, Math.ceil((endMs - nowMs) / 1000));
}
