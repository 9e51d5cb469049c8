/**
 * The in-memory {@link QuotaCounter}: fixed windows aligned to the UTC minute
 * and the UTC day, one entry per token id, in this process only. A fleet of N
 * replicas therefore allows up to N times a limit (less with sticky routing);
 * the Redis counter (redis-quota-counter.ts) shares exact counts across them.
 */
import { chargeResultOf, DAY_MS, MINUTE_MS } from "./charge-report.js";
import type { ChargeResult, QuotaCounter, QuotaLimits } from "./quota-counter.js";

/** Default bound on tracked keys: about 100 MB at worst. */
export const DEFAULT_MAX_QUOTA_KEYS = 1_000_000;

/** Options of {@link createMemoryQuotaCounter}. */
export interface MemoryQuotaCounterOptions {
  /**
   * Most keys tracked at once; default {@link DEFAULT_MAX_QUOTA_KEYS}. Past it
   * the least recently charged key is forgotten, which restarts its counts:
   * only a deployment with more active tokens than this ever notices.
   */
  readonly maxKeys?: number;
}

/** The in-memory counter, with its size for tests and metrics. */
export interface MemoryQuotaCounter extends QuotaCounter {
  /** Always answers at once. */
  charge(key: string, limits: QuotaLimits, nowMs: number): ChargeResult;
  /** Keys currently tracked. */
  size(): number;
}

interface Entry {
  minuteStartMs: number;
  minuteCount: number;
  dayStartMs: number;
  dayCount: number;
  /** When every window this entry counts in has ended; from then on it holds nothing. */
  expiresAtMs: number;
}

// why: a few expired entries are dropped per charge, so memory follows the active
// tokens without a timer or a stop-the-world sweep over a million keys
const SWEEP_PER_CHARGE = 4;

/**
 * Builds an in-memory counter.
 *
 * Memory is bounded twice: an entry expires once its windows have ended (a
 * minute-only quota's after its minute, otherwise after its UTC day), and the
 * map never holds more than `maxKeys` entries. The map is kept in order of
 * last charge (an LRU), so expired entries gather at its head, where each
 * charge drops a few and the bound evicts.
 *
 * A clock that steps back never reopens a window: counts reset only when the
 * current window starts after the counted one.
 *
 * @example
 * const counter = createMemoryQuotaCounter();
 * counter.charge("tok_2Xk…", { limitPerMinute: 60, limitPerDay: 10_000 }, Date.now());
 */
export function createMemoryQuotaCounter(options: MemoryQuotaCounterOptions = {}): MemoryQuotaCounter {
  const maxKeys = options.maxKeys ?? DEFAULT_MAX_QUOTA_KEYS;
  if (!Number.isInteger(maxKeys) || maxKeys < 1) throw new Error(`maxKeys must be a positive integer, got ${maxKeys}`);
  const entries = new Map<string, Entry>();

  const sweep = (nowMs: number): void => {
    let checked = 0;
    for (const [key, entry] of entries) {
      if (checked++ >= SWEEP_PER_CHARGE || entry.expiresAtMs > nowMs) break;
      entries.delete(key);
    }
  };

  return {
    size: () => entries.size,
    charge(key, limits, nowMs) {
      const { limitPerMinute, limitPerDay } = limits;
      // INVARIANT: compileQuota refuses a quota without a limit.
      if (limitPerMinute === null && limitPerDay === null) throw new Error("a quota needs a per-minute or a per-day limit");
      sweep(nowMs);
      const minuteStartMs = Math.floor(nowMs / MINUTE_MS) * MINUTE_MS;
      const dayStartMs = Math.floor(nowMs / DAY_MS) * DAY_MS;
      let entry = entries.get(key);
      if (entry === undefined) {
        entry = { minuteStartMs, minuteCount: 0, dayStartMs, dayCount: 0, expiresAtMs: 0 };
      } else {
        // re-inserted below: the map's order is the order of last charge
        entries.delete(key);
        if (minuteStartMs > entry.minuteStartMs) {
          entry.minuteStartMs = minuteStartMs;
          entry.minuteCount = 0;
        }
        if (dayStartMs > entry.dayStartMs) {
          entry.dayStartMs = dayStartMs;
          entry.dayCount = 0;
        }
      }
      const minuteEndMs = entry.minuteStartMs + MINUTE_MS;
      const dayEndMs = entry.dayStartMs + DAY_MS;
      const allowed = !(limitPerMinute !== null && entry.minuteCount >= limitPerMinute) && !(limitPerDay !== null && entry.dayCount >= limitPerDay);
      if (allowed) {
        if (limitPerMinute !== null) entry.minuteCount++;
        if (limitPerDay !== null) entry.dayCount++;
      }
      const result = chargeResultOf(allowed, limits, entry, nowMs);
      entry.expiresAtMs = Math.max(limitPerMinute === null ? 0 : minuteEndMs, limitPerDay === null ? 0 : dayEndMs);
      entries.set(key, entry);
      if (entries.size > maxKeys) {
        // INVARIANT: the map is non-empty here, and its first key is the least recently charged.
        entries.delete(entries.keys().next().value!);
      }
      return result;
    },
  };
}
