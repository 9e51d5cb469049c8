/**
 * The Redis quota counter against real Redis: the same answers as the
 * in-memory counter for the same charges (pinned clocks, window rollover), its
 * key layout and expiry, exact counts across connections, and failing closed
 * (and recovering) when its own redis-server stops, pauses or forgets the script.
 */
import fc from "fast-check";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMemoryQuotaCounter } from "../../src/quota/memory-quota-counter.js";
import type { ChargeResult, QuotaLimits } from "../../src/quota/quota-counter.js";
import { QuotaStoreUnavailableError } from "../../src/quota/quota-store-error.js";
import { createRedisQuotaCounter, type RedisQuotaCounter } from "../../src/quota/redis-quota-counter.js";
import { deleteKeys, freePort, redisMissing, redisServerMissing, SHARED_REDIS_URL, startOwnRedis, uniqueKeyPrefix, type OwnRedis } from "../support/redis.js";

/** 2026-11-23 10:00:00.000 UTC, the start of a minute. */
const T0 = Date.UTC(2026, 10, 23, 10, 0, 0);
const MIDNIGHT = Date.UTC(2026, 10, 24, 0, 0, 0);
const perMinute = (n: number): QuotaLimits => ({ limitPerMinute: n, limitPerDay: null });
const perDay = (n: number): QuotaLimits => ({ limitPerMinute: null, limitPerDay: n });
const both = (minute: number, day: number): QuotaLimits => ({ limitPerMinute: minute, limitPerDay: day });

const missing = await redisMissing();
const prefix = uniqueKeyPrefix();
const counters: RedisQuotaCounter[] = [];

/** A counter on the shared Redis under this run's prefix plus `scope`, so each test has keys of its own. */
async function sharedCounter(scope: string): Promise<RedisQuotaCounter> {
  const counter = createRedisQuotaCounter({ url: SHARED_REDIS_URL, keyPrefix: `${prefix}${scope}:` });
  counters.push(counter);
  expect(await counter.waitReachable(5_000)).toBe(true);
  return counter;
}

afterAll(async () => {
  await Promise.all(counters.map((counter) => counter.close()));
  if (missing === null) await deleteKeys(SHARED_REDIS_URL, prefix);
});

type Charge = readonly [key: string, limits: QuotaLimits, nowMs: number];

/** Runs the same charges, one after the other, through the in-memory counter and a Redis counter. */
async function replay(scope: string, charges: readonly Charge[]): Promise<{ memory: ChargeResult[]; redis: ChargeResult[] }> {
  const memoryCounter = createMemoryQuotaCounter();
  const redisCounter = await sharedCounter(scope);
  const memory: ChargeResult[] = [];
  const redis: ChargeResult[] = [];
  for (const [key, limits, nowMs] of charges) {
    memory.push(memoryCounter.charge(key, limits, nowMs));
    redis.push(await redisCounter.charge(key, limits, nowMs));
  }
  return { memory, redis };
}

const repeat = (times: number, key: string, limits: QuotaLimits, nowMs: number): Charge[] => Array.from({ length: times }, () => [key, limits, nowMs] as const);

describe.skipIf(missing !== null)("the same answers as the in-memory counter", () => {
  const sequences: [string, Charge[]][] = [
    ["per minute: up to the limit, then refused, refusals not counted", repeat(5, "a", perMinute(3), T0 + 45_200)],
    ["per day: up to the limit, then refused", repeat(4, "a", perDay(3), T0)],
    ["limit 1 at :59.999 retries in 1 s", repeat(2, "a", perMinute(1), T0 + 59_999)],
    ["the last millisecond of a minute, then the first of the next", [...repeat(3, "a", perMinute(2), T0 + 30_000), ["a", perMinute(2), T0 + 59_999], ["a", perMinute(2), T0 + 60_000], ["a", perMinute(2), T0 + 60_001], ["a", perMinute(2), T0 + 60_002]]],
    ["23:59:59.999 UTC, then 00:00 UTC", [...repeat(2, "a", perDay(2), T0), ["a", perDay(2), MIDNIGHT - 1], ["a", perDay(2), MIDNIGHT], ["a", perDay(2), MIDNIGHT + 5]]],
    ["windows are aligned to UTC, not to the first request", [["a", perMinute(1), T0 + 50_000], ["a", perMinute(1), T0 + 59_000], ["a", perMinute(1), T0 + 60_000]]],
    ["a clock that steps back does not reopen a window", [["a", perMinute(1), T0 + 60_000], ["a", perMinute(1), T0 + 30_000], ["a", perDay(1), MIDNIGHT], ["a", perDay(1), MIDNIGHT - 10]]],
    [
      "minute and day together: minute binds, then the day, then both spent",
      [...repeat(4, "a", both(3, 5), T0), ...repeat(3, "a", both(3, 5), T0 + 60_000), ...repeat(2, "a", both(3, 5), T0 + 120_000), ...repeat(2, "a", both(3, 5), MIDNIGHT)],
    ],
    ["a tie between minute and day reports the day", repeat(3, "a", both(2, 2), T0 + 1_000)],
    ["keys are counted apart", [["a", perMinute(1), T0], ["b", perMinute(1), T0], ["a", perMinute(1), T0], ["b", perMinute(1), T0 + 60_000]]],
  ];

  it.each(sequences)("%s", async (name, charges) => {
    const { memory, redis } = await replay(name.replace(/\W+/g, "-"), charges);
    expect(redis).toEqual(memory);
  });

  it("random charges on pinned clocks: every result equal (property)", async () => {
    let run = 0;
    const limitsArb = fc.oneof(
      fc.record({ limitPerMinute: fc.integer({ min: 1, max: 4 }), limitPerDay: fc.constant(null) }),
      fc.record({ limitPerMinute: fc.constant(null), limitPerDay: fc.integer({ min: 1, max: 6 }) }),
      fc.record({ limitPerMinute: fc.integer({ min: 1, max: 4 }), limitPerDay: fc.integer({ min: 1, max: 6 }) }),
    );
    // steps forward of up to 3 minutes, now and then a day; never back: the in-memory counter forgets
    // a key once the pinned clock passes its windows, Redis on its own clock, so a step back past
    // that point differs (and is covered by the table above only where both keep the key)
    const stepArb = fc.oneof(fc.integer({ min: 0, max: 180_000 }), fc.constant(86_400_000));
    await fc.assert(
      fc.asyncProperty(fc.tuple(limitsArb, limitsArb), fc.array(fc.tuple(fc.integer({ min: 0, max: 1 }), stepArb), { minLength: 1, maxLength: 25 }), async (limitsByKey, steps) => {
        let nowMs = T0 + 12_345;
        const charges: Charge[] = steps.map(([k, step]) => {
          nowMs += step;
          // a key keeps its limits: the two counters forget an idle key at different times, which only shows when limits change
          return [`k${k}`, limitsByKey[k]!, nowMs] as const;
        });
        const { memory, redis } = await replay(`property-${run++}`, charges);
        expect(redis).toEqual(memory);
      }),
      { numRuns: 60 },
    );
  });
});

describe.skipIf(missing !== null)("keys and expiry", () => {
  it("one hash per token id under the prefix, expiring a few seconds after its last window", async () => {
    const counter = await sharedCounter("layout");
    const client = new Redis(SHARED_REDIS_URL);
    try {
      await counter.charge("tok_minute", perMinute(5), T0 + 45_000);
      await counter.charge("tok_day", both(5, 10), T0 + 45_000);
      expect(await client.hgetall(`${prefix}layout:tok_minute`)).toEqual({ ms: String(T0), mc: "1", ds: String(MIDNIGHT - 86_400_000), dc: "0" });
      expect(await client.hgetall(`${prefix}layout:tok_day`)).toEqual({ ms: String(T0), mc: "1", ds: String(MIDNIGHT - 86_400_000), dc: "1" });
      // the minute ends in 15 s, the day in 14 h: each plus 5 s of slack
      const minuteTtl = await client.pttl(`${prefix}layout:tok_minute`);
      expect(minuteTtl).toBeGreaterThan(19_000);
      expect(minuteTtl).toBeLessThanOrEqual(20_000);
      const dayTtl = await client.pttl(`${prefix}layout:tok_day`);
      expect(dayTtl).toBeGreaterThan(MIDNIGHT - T0 - 45_000);
      expect(dayTtl).toBeLessThanOrEqual(MIDNIGHT - T0 - 45_000 + 5_000);
    } finally {
      client.disconnect();
    }
  });
});

describe.skipIf(missing !== null)("exact across connections", () => {
  it("two counters charging one key at once allow exactly the limit", async () => {
    const [a, b] = [await sharedCounter("exact"), await sharedCounter("exact")];
    for (let round = 0; round < 5; round++) {
      const key = `tok_round${round}`;
      const results = await Promise.all(Array.from({ length: 400 }, (_, i) => (i % 2 === 0 ? a : b).charge(key, perMinute(100), T0 + 1_000)));
      expect(results.filter((result) => result.allowed)).toHaveLength(100);
      // every remaining count from 99 down to 0 was handed out once
      expect(results.filter((r) => r.allowed).map((r) => r.remaining).sort((x, y) => x - y)).toEqual(Array.from({ length: 100 }, (_, i) => i));
    }
  });
});

const noRedisServer = redisServerMissing();

describe.skipIf(noRedisServer !== null)("failing closed and recovering (a redis-server of the test's own)", () => {
  let own: OwnRedis;
  beforeAll(async () => {
    own = await startOwnRedis();
  });
  afterAll(async () => {
    await own?.stop();
  });

  it("nothing listening: the charge fails at once with QuotaStoreUnavailableError", async () => {
    const counter = createRedisQuotaCounter({ url: `redis://127.0.0.1:${await freePort()}` });
    try {
      const startMs = performance.now();
      await expect(counter.charge("tok_a", perMinute(1), T0)).rejects.toBeInstanceOf(QuotaStoreUnavailableError);
      expect(performance.now() - startMs).toBeLessThan(50);
      expect(counter.reachable()).toBe(false);
    } finally {
      await counter.close();
    }
  });

  it("stopped, then started again: fails closed while down, counts again by itself once back", async () => {
    const changes: boolean[] = [];
    const counter = createRedisQuotaCounter({ url: own.url, onReachableChange: (reachable) => changes.push(reachable) });
    try {
      expect(await counter.waitReachable(5_000)).toBe(true);
      expect((await counter.charge("tok_a", perMinute(10), Date.now())).allowed).toBe(true);
      await own.stop();
      await expect(counter.charge("tok_a", perMinute(10), Date.now())).rejects.toBeInstanceOf(QuotaStoreUnavailableError);
      expect(counter.reachable()).toBe(false);
      await own.start();
      expect(await counter.waitReachable(5_000)).toBe(true);
      // a restarted server has no scripts: NOSCRIPT makes the counter send the script again
      expect((await counter.charge("tok_a", perMinute(10), Date.now())).allowed).toBe(true);
      expect(changes).toEqual([true, false, true]);
    } finally {
      await counter.close();
    }
  });

  it("paused (answers nothing): fails within the command timeout, and answers again once resumed", async () => {
    // the timed-out charges were sent, so Redis counts them when it resumes: the limit leaves room for that
    const counter = createRedisQuotaCounter({ url: own.url, commandTimeoutMs: 200 });
    try {
      expect(await counter.waitReachable(5_000)).toBe(true);
      own.pause();
      const startMs = performance.now();
      const stalled = await Promise.allSettled(Array.from({ length: 50 }, () => counter.charge("tok_b", perMinute(1_000), Date.now())));
      const tookMs = performance.now() - startMs;
      expect(stalled.every((s) => s.status === "rejected" && s.reason instanceof QuotaStoreUnavailableError)).toBe(true);
      // one command timeout (200 ms), plus a noisy machine's slack
      expect(tookMs).toBeLessThan(1_000);
      // a connection silent for over a second while charges time out is dropped: charges then fail at once
      await new Promise((resolve) => setTimeout(resolve, 900));
      await expect(counter.charge("tok_b", perMinute(1_000), Date.now())).rejects.toBeInstanceOf(QuotaStoreUnavailableError);
      expect(counter.reachable()).toBe(false);
      const fastMs = performance.now();
      await expect(counter.charge("tok_b", perMinute(1_000), Date.now())).rejects.toThrow(/not connected/);
      expect(performance.now() - fastMs).toBeLessThan(50);
      own.resume();
      let back = false;
      for (let attempt = 0; attempt < 50 && !back; attempt++) {
        back = await counter.charge("tok_b", perMinute(1_000), Date.now()).then((r) => r.allowed, () => false);
        if (!back) await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(back).toBe(true);
    } finally {
      own.resume();
      await counter.close();
    }
  });

  it("bounds the charges waiting for redis: past the bound a charge fails at once", async () => {
    const counter = createRedisQuotaCounter({ url: own.url, commandTimeoutMs: 300, maxPendingCharges: 10 });
    try {
      expect(await counter.waitReachable(5_000)).toBe(true);
      own.pause();
      const charges = Array.from({ length: 30 }, () => counter.charge("tok_c", perMinute(10), Date.now()).then(() => "answered", (error: Error) => error.message));
      const messages = await Promise.all(charges);
      expect(messages.filter((m) => m.includes("already waiting"))).toHaveLength(20);
    } finally {
      own.resume();
      await counter.close();
    }
  });

  it("SCRIPT FLUSH under a live connection: the next charge loads the script again", async () => {
    const counter = createRedisQuotaCounter({ url: own.url });
    const admin = new Redis(own.url);
    try {
      expect(await counter.waitReachable(5_000)).toBe(true);
      expect((await counter.charge("tok_d", perMinute(3), T0)).remaining).toBe(2);
      await admin.script("FLUSH");
      expect((await counter.charge("tok_d", perMinute(3), T0)).remaining).toBe(1);
    } finally {
      admin.disconnect();
      await counter.close();
    }
  });
});
