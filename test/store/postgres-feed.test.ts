/**
 * The PostgreSQL store's migrations and change feed against real PostgreSQL:
 * the machine's service with a database of this run, and an instance of the
 * test's own for stopping and starting.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import { ChangeFeed, notifyChange, type StoreChange } from "../../src/store/postgres/change-feed.js";
import { migratePostgres, POSTGRES_MIGRATIONS } from "../../src/store/postgres/migrations.js";
import { createPostgresPool, inTransaction } from "../../src/store/postgres/pool.js";
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

/** Waits until `check` holds, polling every 10 ms, for at most `timeoutMs`. */
async function eventually(check: () => boolean, timeoutMs: number): Promise<number> {
  const started = Date.now();
  while (!check()) {
    if (Date.now() - started > timeoutMs) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return Date.now() - started;
}

describe.skipIf(unavailable !== null)("PostgreSQL migrations", () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase();
  });
  afterAll(async () => {
    await database?.drop();
  });

  it("applies each step once when ten replicas start at the same moment", async () => {
    const pools = Array.from({ length: 10 }, () => createPostgresPool({ url: database.url, max: 1 }));
    try {
      const results = await Promise.all(pools.map((pool) => migratePostgres(pool, "test")));
      expect(results.filter((result) => result.from === 0)).toHaveLength(1);
      expect(results.every((result) => result.to === POSTGRES_MIGRATIONS.length)).toBe(true);
      const { rows } = await pools[0]!.query("SELECT version FROM portcullis_schema_migrations ORDER BY version");
      expect(rows.map((row) => row.version)).toEqual(POSTGRES_MIGRATIONS.map((_, index) => index + 1));
      const tables = await pools[0]!.query("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name");
      expect(tables.rows.map((row) => row.table_name)).toEqual(["audit_events", "portcullis_schema_migrations", "portcullis_settings", "security_events", "signing_keys", "tenants", "tokens", "webhook_deliveries", "webhook_events", "workspaces"]);
    } finally {
      await Promise.all(pools.map((pool) => pool.end()));
    }
  });

  it("refuses a database migrated by a newer build, as too_new, and changes nothing", async () => {
    const pool = createPostgresPool({ url: database.url });
    try {
      await migratePostgres(pool, "test");
      await pool.query("INSERT INTO portcullis_schema_migrations (version, applied_at) VALUES ($1, 0)", [POSTGRES_MIGRATIONS.length + 1]);
      const error = await migratePostgres(pool, "`test`").catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(StoreError);
      expect((error as StoreError).kind).toBe("too_new");
      expect((error as StoreError).message).toMatch(new RegExp(`schema version ${POSTGRES_MIGRATIONS.length + 1} but this build knows up to ${POSTGRES_MIGRATIONS.length}`));
    } finally {
      await pool.query("DELETE FROM portcullis_schema_migrations WHERE version > $1", [POSTGRES_MIGRATIONS.length]);
      await pool.end();
    }
  });

  it("leaves nothing behind when a step fails", async () => {
    const pool = createPostgresPool({ url: database.url });
    try {
      await migratePostgres(pool, "test");
      const broken = [...POSTGRES_MIGRATIONS, "CREATE TABLE half_done (x INT); SELECT no_such_function();"];
      const error = await migratePostgres(pool, "test", broken).catch((caught: unknown) => caught);
      expect((error as StoreError).kind).toBe("corrupt");
      const { rows } = await pool.query("SELECT to_regclass('half_done') AS table, (SELECT max(version) FROM portcullis_schema_migrations) AS version");
      expect(rows[0]).toEqual({ table: null, version: POSTGRES_MIGRATIONS.length });
    } finally {
      await pool.end();
    }
  });
});

describe.skipIf(unavailable !== null)("PostgreSQL change feed", () => {
  let database: TestDatabase;
  let pool: pg.Pool;
  let feed: ChangeFeed;
  const received: StoreChange[] = [];
  beforeAll(async () => {
    database = await createTestDatabase();
    pool = createPostgresPool({ url: database.url });
    feed = ChangeFeed.start({ url: database.url });
    feed.subscribe((change) => received.push(change));
    await feed.whenLive();
  });
  afterAll(async () => {
    await feed?.close();
    await pool?.end();
    await database?.drop();
  });

  it("tells subscribers to drop their caches when it first listens", () => {
    expect(received[0]).toEqual({ kind: "reset" });
    expect(feed.isLive()).toBe(true);
    expect(feed.blindSince()).toBeNull();
  });

  it("delivers a change when its transaction commits, and never one that rolled back", async () => {
    received.length = 0;
    await inTransaction(pool, async (client) => {
      await notifyChange(client, { kind: "tokens", ids: ["tok_rolled_back"] });
      throw new Error("roll back");
    }).catch(() => undefined);
    await inTransaction(pool, (client) => notifyChange(client, { kind: "tokens", ids: ["tok_a", "tok_b"] }));
    await inTransaction(pool, (client) => notifyChange(client, { kind: "administrative" }));
    await eventually(() => received.length >= 2, 2_000);
    expect(received).toEqual([{ kind: "tokens", ids: ["tok_a", "tok_b"] }, { kind: "administrative" }]);
  });

  it("splits a long list of ids under PostgreSQL's payload limit and loses none", async () => {
    received.length = 0;
    const ids = Array.from({ length: 1_000 }, (_, index) => `tok_${String(index).padStart(26, "0")}`);
    await inTransaction(pool, (client) => notifyChange(client, { kind: "created", ids }));
    await eventually(() => received.flatMap((change) => (change.kind === "created" ? change.ids : [])).length === ids.length, 2_000);
    expect(received.flatMap((change) => (change.kind === "created" ? change.ids : []))).toEqual(ids);
  });

  it("reads an unexpected payload on the channel as reset", async () => {
    received.length = 0;
    await pool.query("NOTIFY portcullis_changes, 'not json'");
    await eventually(() => received.length === 1, 2_000);
    expect(received).toEqual([{ kind: "reset" }]);
  });

  it("confirms its connection several times a second", async () => {
    const first = feed.confirmedAtMs!;
    await new Promise((resolve) => setTimeout(resolve, 700));
    expect(feed.confirmedAtMs! - first).toBeGreaterThanOrEqual(400);
    expect(Date.now() - feed.confirmedAtMs!).toBeLessThan(400);
  });
});

const ownUnavailable = unavailable ?? ownPostgresUnavailableReason();

describe.skipIf(ownUnavailable !== null)("PostgreSQL change feed when the server stops and starts", () => {
  let server: OwnPostgres;
  beforeAll(async () => {
    server = await startOwnPostgres();
  });
  afterAll(async () => {
    await server?.destroy();
  });

  it("knows it is blind within a second of the stop, and recovers by itself with a reset", async () => {
    const feed = ChangeFeed.start({ url: server.url });
    const received: StoreChange[] = [];
    feed.subscribe((change) => received.push(change));
    const pool = createPostgresPool({ url: server.url, timeoutMs: 1_000 });
    try {
      await feed.whenLive();
      expect(feed.isLive()).toBe(true);

      await server.stop();
      const stoppedAt = Date.now();
      const blindAfterMs = await eventually(() => !feed.isLive(), 3_000);
      expect(feed.blindSince()).not.toBeNull();
      expect(feed.blindSince()!).toBeLessThanOrEqual(stoppedAt);
      console.log(`change feed: not live ${blindAfterMs} ms after the stop; blind since ${stoppedAt - feed.blindSince()!} ms before it`);
      expect(blindAfterMs).toBeLessThanOrEqual(1_100);

      received.length = 0;
      await server.start();
      const recoveredAfterMs = await eventually(() => feed.isLive(), 5_000);
      console.log(`change feed: live again ${recoveredAfterMs} ms after the start`);
      expect(received[0]).toEqual({ kind: "reset" });
      expect(feed.blindSince()).toBeNull();

      received.length = 0;
      await inTransaction(pool, (client) => notifyChange(client, { kind: "tokens", ids: ["tok_after_restart"] }));
      await eventually(() => received.length === 1, 2_000);
      expect(received).toEqual([{ kind: "tokens", ids: ["tok_after_restart"] }]);
    } finally {
      await feed.close();
      await pool.end();
    }
  });

  it("keeps trying while the server is down at its start, and listens once it is up", async () => {
    await server.stop();
    const feed = ChangeFeed.start({ url: server.url });
    try {
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(feed.isLive()).toBe(false);
      expect(feed.blindSince()).not.toBeNull();
      await server.start();
      await feed.whenLive(5_000);
      expect(feed.isLive()).toBe(true);
    } finally {
      await feed.close();
    }
  });
});
