/**
 * The decision path's reads over PostgreSQL: cached tokens answered at once,
 * changes made through another store object (another replica, the CLI) seen
 * within 1 s through the change feed, and a replica that cannot hear the feed
 * refusing instead of trusting its cache, then recovering by itself.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTokenLifecycle, type TokenLifecycle } from "../../src/lifecycle/token-lifecycle.js";
import { createFleetReads, type FleetReads } from "../../src/service/fleet-reads.js";
import { isPromise } from "../../src/service/maybe-promise.js";
import { PostgresStore } from "../../src/store/postgres/postgres-store.js";
import { StoreError } from "../../src/store/store-error.js";
import {
  createTestDatabase,
  ownPostgresUnavailableReason,
  postgresUnavailableReason,
  startOwnPostgres,
  type OwnPostgres,
  type TestDatabase,
} from "../support/postgres.js";

const unavailable = await postgresUnavailableReason();
const SECRET = Buffer.alloc(32, 9);
const SPEC = { tenant: "acme", workspace: "main", environment: "live", prefix: "sk_live_", type: "service", name: "sync", role: "reader", actor: "test" } as const;

async function eventually(check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<number> {
  const started = performance.now();
  while (!(await check())) {
    if (performance.now() - started > timeoutMs) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  return performance.now() - started;
}

async function replica(url: string): Promise<{ store: PostgresStore; lifecycle: TokenLifecycle; reads: FleetReads }> {
  const store = await PostgresStore.open({ url, secret: SECRET, changeFeed: true });
  const lifecycle = createTokenLifecycle({ store, secret: SECRET, now: Date.now });
  const reads = createFleetReads({ store, find: (token) => lifecycle.findByToken(token) });
  await reads.ready;
  return { store, lifecycle, reads };
}

describe.skipIf(unavailable !== null)("fleet reads on PostgreSQL", () => {
  let database: TestDatabase;
  let reader: Awaited<ReturnType<typeof replica>>;
  let writer: { store: PostgresStore; lifecycle: TokenLifecycle };
  beforeAll(async () => {
    database = await createTestDatabase();
    reader = await replica(database.url);
    const store = await PostgresStore.open({ url: database.url, secret: SECRET });
    writer = { store, lifecycle: createTokenLifecycle({ store, secret: SECRET, now: Date.now }) };
  });
  afterAll(async () => {
    reader?.reads.close();
    await reader?.store.close();
    await writer?.store.close();
    await database?.drop();
  });

  it("answers a cached token at once, without asking PostgreSQL", async () => {
    const { token, record } = await writer.lifecycle.create(SPEC);
    const first = reader.reads.tokens.find(token);
    expect(isPromise(first)).toBe(true);
    expect((await first)?.id).toBe(record.id);
    const second = reader.reads.tokens.find(token);
    expect(isPromise(second)).toBe(false);
    expect((second as { id: string }).id).toBe(record.id);
  });

  it("sees a revocation made through another store object within 1 s, 20 times in a row", async () => {
    const waits: number[] = [];
    for (let round = 0; round < 20; round++) {
      const { token, record } = await writer.lifecycle.create({ ...SPEC, name: `sync-${round}` });
      await reader.reads.tokens.find(token);
      expect(isPromise(reader.reads.tokens.find(token))).toBe(false);
      const revokedAt = performance.now();
      await writer.lifecycle.revoke(record.id, "ops");
      const committedAfter = performance.now() - revokedAt;
      await eventually(async () => (await reader.reads.tokens.find(token))?.revokedAtMs != null, 1_000);
      waits.push(performance.now() - revokedAt - committedAfter);
    }
    expect(Math.max(...waits)).toBeLessThan(1_000);
  });

  it("sees a tenant suspension within 1 s, without a decision waiting for it", async () => {
    expect(reader.reads.tenantState.tenantSuspended("globex")).toBe(false);
    await writer.lifecycle.suspendTenant("globex", { actor: "ops" });
    await eventually(() => reader.reads.tenantState.tenantSuspended("globex"), 1_000);
    await writer.lifecycle.restrictWorkspace("acme", "main", { actor: "ops", mode: "all" });
    await eventually(() => reader.reads.tenantState.workspaceRestricted("acme", "main") === "all", 1_000);
  });
});

const ownUnavailable = unavailable ?? ownPostgresUnavailableReason();

describe.skipIf(ownUnavailable !== null)("fleet reads when PostgreSQL stops and starts", () => {
  let server: OwnPostgres;
  beforeAll(async () => {
    server = await startOwnPostgres();
  });
  afterAll(async () => {
    await server?.destroy();
  });

  it("refuses even cached tokens once blind for over 1 s, and serves again by itself after the start", async () => {
    const { store, lifecycle, reads } = await replica(server.url);
    try {
      const { token } = await lifecycle.create(SPEC);
      await reads.tokens.find(token);
      expect(isPromise(reads.tokens.find(token))).toBe(false);

      await server.stop();
      const stoppedAt = performance.now();
      // Until the promise runs out, the cached token is still answered (and at once).
      expect(isPromise(reads.tokens.find(token))).toBe(false);
      const refusedAfterMs = await eventually(() => !reads.isLive(), 2_000);
      expect(() => reads.tokens.find(token)).toThrow(StoreError);
      console.log(`fleet reads: refusing ${Math.round(refusedAfterMs)} ms after the stop`);
      expect(performance.now() - stoppedAt).toBeLessThan(1_500);

      await server.start();
      const recoveredAfterMs = await eventually(() => reads.isLive(), 10_000);
      console.log(`fleet reads: deciding again ${Math.round(recoveredAfterMs)} ms after the start`);
      // The cache was dropped on reconnect: the next look-up asks PostgreSQL again.
      const again = reads.tokens.find(token);
      expect(isPromise(again)).toBe(true);
      expect((await again)?.revokedAtMs).toBeNull();
    } finally {
      reads.close();
      await store.close();
    }
  });
});
