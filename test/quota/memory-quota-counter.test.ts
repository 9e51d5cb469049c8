/** The in-memory quota counter: fixed UTC windows, limits, resets, Retry-After and bounded memory, on a pinned clock. */
import { describe, expect, it } from "vitest";
import { createMemoryQuotaCounter } from "../../src/quota/memory-quota-counter.js";
import type { QuotaLimits } from "../../src/quota/quota-counter.js";

/** 2026-11-23 10:00:00.000 UTC, the start of a minute. */
const T0 = Date.UTC(2026, 10, 23, 10, 0, 0);
const MIDNIGHT = Date.UTC(2026, 10, 24, 0, 0, 0);
const perMinute = (n: number): QuotaLimits => ({ limitPerMinute: n, limitPerDay: null });
const perDay = (n: number): QuotaLimits => ({ limitPerMinute: null, limitPerDay: n });

/** Charges `times` times at `nowMs` and returns every result. */
function chargeTimes(counter: ReturnType<typeof createMemoryQuotaCounter>, key: string, limits: QuotaLimits, nowMs: number, times: number) {
  return Array.from({ length: times }, () => counter.charge(key, limits, nowMs));
}

describe("exactly at the limit", () => {
  it.each([
    ["per minute", perMinute(3), "per_minute"],
    ["per day", perDay(3), "per_day"],
    ["per minute, limit 1", perMinute(1), "per_minute"],
  ] as const)("%s: the Nth request is allowed, the N+1th refused", (_name, limits, window) => {
    const counter = createMemoryQuotaCounter();
    const n = (limits.limitPerMinute ?? limits.limitPerDay)!;
    const results = chargeTimes(counter, "tok_a", limits, T0 + 1_000, n + 1);
    expect(results.slice(0, n).map((r) => r.allowed)).toEqual(Array(n).fill(true));
    expect(results.slice(0, n).map((r) => r.remaining)).toEqual(Array.from({ length: n }, (_, i) => n - 1 - i));
    expect(results[n]).toMatchObject({ allowed: false, window, limit: n, remaining: 0 });
  });

  it("a refused request is not counted: after the reset the full limit is there again", () => {
    const counter = createMemoryQuotaCounter();
    chargeTimes(counter, "tok_a", perMinute(2), T0, 10);
    const next = chargeTimes(counter, "tok_a", perMinute(2), T0 + 60_000, 3);
    expect(next.map((r) => r.allowed)).toEqual([true, true, false]);
  });

  it("counts each key apart", () => {
    const counter = createMemoryQuotaCounter();
    expect(counter.charge("tok_a", perMinute(1), T0).allowed).toBe(true);
    expect(counter.charge("tok_b", perMinute(1), T0).allowed).toBe(true);
    expect(counter.charge("tok_a", perMinute(1), T0).allowed).toBe(false);
  });
});

describe("window rollover on a pinned clock", () => {
  it.each([
    ["the last millisecond of the minute is still the same window", T0 + 59_999, false],
    ["the first millisecond of the next minute is a new window", T0 + 60_000, true],
    ["a minute later still", T0 + 61_000, true],
  ])("per minute: %s", (_name, later, allowed) => {
    const counter = createMemoryQuotaCounter();
    chargeTimes(counter, "tok_a", perMinute(2), T0 + 30_000, 2);
    expect(counter.charge("tok_a", perMinute(2), later).allowed).toBe(allowed);
  });

  it.each([
    ["23:59:59.999 UTC is still the same day", MIDNIGHT - 1, false],
    ["00:00:00.000 UTC starts a new day", MIDNIGHT, true],
  ])("per day: %s", (_name, later, allowed) => {
    const counter = createMemoryQuotaCounter();
    chargeTimes(counter, "tok_a", perDay(2), T0, 2);
    expect(counter.charge("tok_a", perDay(2), later).allowed).toBe(allowed);
  });

  it("windows are aligned to UTC, not to the first request", () => {
    const counter = createMemoryQuotaCounter();
    // first request 10:00:50; at 10:01:00 (10 s later, not 60) the minute resets
    counter.charge("tok_a", perMinute(1), T0 + 50_000);
    expect(counter.charge("tok_a", perMinute(1), T0 + 59_000).allowed).toBe(false);
    expect(counter.charge("tok_a", perMinute(1), T0 + 60_000).allowed).toBe(true);
  });

  it("a clock that steps back does not reopen a window", () => {
    const counter = createMemoryQuotaCounter();
    counter.charge("tok_a", perMinute(1), T0 + 60_000);
    const back = counter.charge("tok_a", perMinute(1), T0 + 30_000);
    expect(back).toMatchObject({ allowed: false, retryAfterSeconds: 90 });
  });
});

describe("Retry-After and reset", () => {
  it.each([
    ["minute spent at :45.200 retries in 15 s (rounded up)", perMinute(1), T0 + 45_200, 15],
    ["minute spent at :59.999 retries in 1 s, never 0", perMinute(1), T0 + 59_999, 1],
    ["minute spent at :00.000 retries in 60 s", perMinute(1), T0, 60],
    ["day spent at 23:59:30 UTC retries in 30 s", perDay(1), MIDNIGHT - 30_000, 30],
    ["day spent at 10:00 UTC retries in 14 h", perDay(1), T0, 14 * 3600],
  ])("%s", (_name, limits, nowMs, seconds) => {
    const counter = createMemoryQuotaCounter();
    const first = counter.charge("tok_a", limits, nowMs);
    expect(first).toMatchObject({ allowed: true, resetSeconds: seconds, retryAfterSeconds: 0 });
    expect(counter.charge("tok_a", limits, nowMs)).toMatchObject({ allowed: false, resetSeconds: seconds, retryAfterSeconds: seconds });
  });
});

describe("minute and day together", () => {
  const both: QuotaLimits = { limitPerMinute: 3, limitPerDay: 5 };

  it("reports the window with fewer requests left while allowed, and the spent one when refused", () => {
    const counter = createMemoryQuotaCounter();
    const minute1 = chargeTimes(counter, "tok_a", both, T0, 4);
    expect(minute1.map((r) => [r.allowed, r.window, r.remaining])).toEqual([
      [true, "per_minute", 2],
      [true, "per_minute", 1],
      [true, "per_minute", 0],
      [false, "per_minute", 0],
    ]);
    expect(minute1[3]!.retryAfterSeconds).toBe(60);
    const minute2 = chargeTimes(counter, "tok_a", both, T0 + 60_000, 3);
    // the day has 2 left, the minute 3: the day is tighter; then it is spent
    expect(minute2.map((r) => [r.allowed, r.window, r.remaining])).toEqual([
      [true, "per_day", 1],
      [true, "per_day", 0],
      [false, "per_day", 0],
    ]);
    expect(minute2[2]!.retryAfterSeconds).toBe((MIDNIGHT - T0 - 60_000) / 1000);
  });

  it("when both are spent, reports the day: its reset is the later one", () => {
    const counter = createMemoryQuotaCounter();
    chargeTimes(counter, "tok_a", { limitPerMinute: 2, limitPerDay: 2 }, T0, 2);
    expect(counter.charge("tok_a", { limitPerMinute: 2, limitPerDay: 2 }, T0)).toMatchObject({ allowed: false, window: "per_day", limit: 2 });
  });

  it("on a tie, reports the day", () => {
    const counter = createMemoryQuotaCounter();
    expect(counter.charge("tok_a", { limitPerMinute: 10, limitPerDay: 10 }, T0)).toMatchObject({ window: "per_day", remaining: 9 });
  });
});

describe("bounded memory", () => {
  it("forgets the least recently charged key past maxKeys", () => {
    const counter = createMemoryQuotaCounter({ maxKeys: 2 });
    counter.charge("tok_a", perDay(1), T0);
    counter.charge("tok_b", perDay(1), T0);
    counter.charge("tok_a", perDay(1), T0); // refused, but touched: tok_b is now the oldest
    counter.charge("tok_c", perDay(1), T0);
    expect(counter.size()).toBe(2);
    expect(counter.charge("tok_a", perDay(1), T0).allowed).toBe(false);
    // tok_b was evicted: its count restarted
    expect(counter.charge("tok_b", perDay(1), T0).allowed).toBe(true);
  });

  it("drops entries whose windows have ended as later charges come in", () => {
    const counter = createMemoryQuotaCounter();
    for (let i = 0; i < 8; i++) counter.charge(`tok_${i}`, perMinute(5), T0);
    expect(counter.size()).toBe(8);
    counter.charge("tok_late", perMinute(5), T0 + 60_000);
    counter.charge("tok_late", perMinute(5), T0 + 60_000);
    expect(counter.size()).toBe(1);
  });

  it("keeps a per-day entry for the rest of its day", () => {
    const counter = createMemoryQuotaCounter();
    counter.charge("tok_day", perDay(5), T0);
    counter.charge("tok_late", perMinute(5), T0 + 3_600_000);
    expect(counter.size()).toBe(2);
    counter.charge("tok_late", perMinute(5), MIDNIGHT);
    expect(counter.size()).toBe(1);
  });

  it("refuses a bound that is not a positive integer", () => {
    expect(() => createMemoryQuotaCounter({ maxKeys: 0 })).toThrow(/maxKeys/);
  });
});
