/**
 * The Redis quota store through real servers: two servers sharing one token
 * store (SQLite in one data folder) and one Redis allow exactly the limit to
 * eight concurrent clients, in every repetition; and a server whose own
 * redis-server stops or pauses answers 503 `unavailable` for tokens with a
 * quota only, and recovers by itself.
 */
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startServer, type RunningServer } from "../../src/main.js";
import { EXAMPLE_POLICY_DIR } from "../support/fixtures.js";
import { deleteKeys, redisMissing, redisServerMissing, SHARED_REDIS_URL, startOwnRedis, uniqueKeyPrefix, type OwnRedis } from "../support/redis.js";
import { startTestServer, type TestServer } from "../support/server.js";
import { seedToken } from "../lifecycle/helpers.js";

interface Answer {
  readonly status: number;
  readonly allowed: boolean;
  readonly code: string;
  readonly reason: string;
}

/** One Connect (JSON) `Authorize` of `GET /api/payouts` with `token`. */
async function authorize(httpUrl: string, token: string): Promise<Answer> {
  const response = await fetch(`${httpUrl}/portcullis.v1.AuthorizationService/Authorize`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ method: "GET", path: "/api/payouts", host: "api.example.com", headers: [{ name: "authorization", value: `Bearer ${token}` }] }),
  });
  const json = (await response.json()) as { allowed?: boolean; code?: string; reason?: string; httpStatus?: number };
  return { status: json.httpStatus ?? 0, allowed: json.allowed === true, code: json.code ?? "", reason: json.reason ?? "" };
}

const minuteOf = (ms: number) => Math.floor(ms / 60_000);

const missing = await redisMissing();

describe.skipIf(missing !== null)("exact across two servers sharing one Redis", () => {
  const prefix = uniqueKeyPrefix();
  let first: TestServer;
  let second: RunningServer;

  beforeAll(async () => {
    first = await startTestServer(EXAMPLE_POLICY_DIR, { quotaStoreUrl: SHARED_REDIS_URL, quotaKeyPrefix: prefix });
    // the same data folder: one SQLite token store, read by both
    second = await startServer(
      { host: "127.0.0.1", grpcPort: 0, httpPort: 0, policyDir: EXAMPLE_POLICY_DIR, dataDir: first.dataDir, logLevel: "silent", quotaStoreUrl: SHARED_REDIS_URL, quotaKeyPrefix: prefix },
      pino({ level: "silent" }),
    );
  });

  afterAll(async () => {
    await second?.close(1_000);
    await first?.stop();
    await deleteKeys(SHARED_REDIS_URL, prefix);
  });

  it("8 concurrent clients, 100 per minute: exactly 100 allowed, never 101, in each of 5 repetitions", async () => {
    const urls = [first.httpUrl, `http://127.0.0.1:${second.httpPort}`];
    const outcomes: number[] = [];
    for (let repetition = 0; outcomes.length < 5 && repetition < 10; repetition++) {
      // a fresh token each time: its own key, its own count
      const { token } = await seedToken(first.server, { name: `fleet-${repetition}`, role: "tenant_operator", keyLevel: "read_write", controls: { quota: { limitPerMinute: 100 } } });
      const startMs = Date.now();
      const answers = await Promise.all(
        Array.from({ length: 8 }, async (_, client) => {
          const mine: Answer[] = [];
          for (let i = 0; i < 25; i++) mine.push(await authorize(urls[client % 2]!, token));
          return mine;
        }),
      );
      // every decision fell in one UTC minute, or a new window opened halfway: then this repetition does not count
      if (minuteOf(startMs) !== minuteOf(Date.now())) continue;
      const all = answers.flat();
      expect(all.filter((a) => !a.allowed && a.code !== "quota_exceeded")).toEqual([]);
      outcomes.push(all.filter((a) => a.allowed).length);
      // both servers took part in allowing
      expect(answers.filter((_, client) => client % 2 === 1).flat().some((a) => a.allowed)).toBe(true);
    }
    expect(outcomes).toEqual([100, 100, 100, 100, 100]);
  });
});

const noRedisServer = redisServerMissing();

describe.skipIf(noRedisServer !== null)("the quota store down, slow, and back (a redis-server of the test's own)", () => {
  let own: OwnRedis;
  let t: TestServer;
  let withQuota: string;
  let withoutQuota: string;

  beforeAll(async () => {
    own = await startOwnRedis();
    t = await startTestServer(EXAMPLE_POLICY_DIR, { quotaStoreUrl: own.url });
    withQuota = (await seedToken(t.server, { name: "metered", role: "tenant_operator", keyLevel: "read_write", controls: { quota: { limitPerMinute: 100_000 } } })).token;
    withoutQuota = (await seedToken(t.server, { name: "unmetered", role: "tenant_operator", keyLevel: "read_write" })).token;
  });

  afterAll(async () => {
    await t?.stop();
    await own?.stop();
  });

  const readyz = async () => {
    const response = await fetch(`${t.httpUrl}/readyz`);
    return { status: response.status, body: await response.text() };
  };

  /** Polls until the token with a quota is allowed again; resolves to whether it was within `withinMs`. */
  async function recovers(withinMs: number): Promise<boolean> {
    const giveUpAtMs = Date.now() + withinMs;
    while (Date.now() < giveUpAtMs) {
      if ((await authorize(t.httpUrl, withQuota)).allowed) return true;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return false;
  }

  it("stopped: tokens with a quota get 503 unavailable, tokens without one are still allowed; started: recovers by itself", async () => {
    expect(await authorize(t.httpUrl, withQuota)).toMatchObject({ allowed: true, code: "ok" });
    expect(await readyz()).toEqual({ status: 200, body: "ready\nquota store: reachable\n" });

    await own.stop();
    const startMs = performance.now();
    expect(await authorize(t.httpUrl, withQuota)).toEqual({ status: 503, allowed: false, code: "unavailable", reason: "quota_store_unavailable" });
    expect(performance.now() - startMs).toBeLessThan(500);
    expect(await authorize(t.httpUrl, withoutQuota)).toMatchObject({ allowed: true, code: "ok" });
    // still ready: tokens without a quota are served; the body says what is missing
    expect(await readyz()).toEqual({ status: 200, body: "ready\nquota store: unreachable (requests with a quota answer 503 unavailable)\n" });

    await own.start();
    expect(await recovers(5_000)).toBe(true);
    expect(await readyz()).toEqual({ status: 200, body: "ready\nquota store: reachable\n" });
  });

  it("paused (answers nothing): 503 unavailable within the command timeout, and recovers once resumed", async () => {
    expect(await authorize(t.httpUrl, withQuota)).toMatchObject({ allowed: true });
    own.pause();
    try {
      const startMs = performance.now();
      const answers = await Promise.all(Array.from({ length: 20 }, () => authorize(t.httpUrl, withQuota)));
      expect(answers.every((a) => a.code === "unavailable" && a.reason === "quota_store_unavailable")).toBe(true);
      expect(performance.now() - startMs).toBeLessThan(1_500);
      expect(await authorize(t.httpUrl, withoutQuota)).toMatchObject({ allowed: true });
    } finally {
      own.resume();
    }
    expect(await recovers(5_000)).toBe(true);
  });
});
