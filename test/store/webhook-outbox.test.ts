/**
 * The webhook outbox on SQLite and PostgreSQL, through the store interfaces:
 * lifecycle events commit with their change and vanish with a rollback; a
 * security event row enqueues one event when first written, never per
 * denial; fan-out makes one delivery per subscribed endpoint and drops past
 * the capacity; two store objects (two replicas) claiming at once never take
 * one delivery twice; a lease that ends makes a delivery claimable again.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createTokenLifecycle } from "../../src/lifecycle/token-lifecycle.js";
import { PostgresStore } from "../../src/store/postgres/postgres-store.js";
import { SqliteStore } from "../../src/store/sqlite/sqlite-store.js";
import type { Store, WebhookRoute } from "../../src/store/store-interfaces.js";
import { LIFECYCLE_WEBHOOK_EVENTS, WEBHOOK_EVENT_NAMES } from "../../src/webhooks/webhook-events.js";
import { createTestDatabase, postgresUnavailableReason } from "../support/postgres.js";

interface Target {
  readonly name: string;
  /** A fresh database; `open` gives another store object on it each call. */
  create(): Promise<{ open(): Promise<Store>; drop(): Promise<void> }>;
}

const SECRET = Buffer.alloc(32, 7);
const T0 = 1_750_000_000_020;
const ALL: WebhookRoute = { id: "all", events: new Set(WEBHOOK_EVENT_NAMES) };
const LIFECYCLE_ONLY: WebhookRoute = { id: "lifecycle", events: new Set(LIFECYCLE_WEBHOOK_EVENTS) };

const targets: Target[] = [
  {
    name: "SQLite",
    async create() {
      const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-outbox-"));
      return { open: async () => SqliteStore.open({ dataDir, secret: SECRET }), drop: async () => fs.rmSync(dataDir, { recursive: true, force: true }) };
    },
  },
];
const unavailable = await postgresUnavailableReason();
if (unavailable === null) {
  targets.push({
    name: "PostgreSQL",
    async create() {
      const database = await createTestDatabase();
      return { open: () => PostgresStore.open({ url: database.url }), drop: () => database.drop() };
    },
  });
} else {
  describe("webhook outbox: PostgreSQL", () => it.skip(`skipped: ${unavailable}`, () => undefined));
}

describe.each(targets)("webhook outbox: $name", (target) => {
  let database: Awaited<ReturnType<Target["create"]>>;
  const opened: Store[] = [];
  const open = async () => {
    const store = await database.open();
    opened.push(store);
    return store;
  };

  beforeEach(async () => {
    database = await target.create();
  });
  afterEach(async () => {
    for (const store of opened.splice(0)) await store.close();
    await database.drop();
  });

  it("enqueues a lifecycle event with its change, and nothing when the transaction rolls back", async () => {
    const store = await open();
    const lifecycle = createTokenLifecycle({ store, secret: SECRET, now: () => T0 });
    const { record } = await lifecycle.create({ tenant: "acme", workspace: "main", environment: "live", prefix: "sk_live_", type: "service", name: "billing", role: "reader", actor: "test" });
    await lifecycle.revoke(record.id, "test", "leaked");
    expect(await store.webhooks.depth()).toEqual({ pending: 0, waitingEvents: 2 });

    await expect(
      store.transaction(async (tx) => {
        await tx.audit.append({ atMs: T0, event: "tenant.suspended", actor: "test", tokenId: null, tenant: "acme", data: {} });
        await tx.webhooks.enqueue({ id: "evt_rolled_back", type: "tenant.suspended", atMs: T0, body: "{}" });
        throw new Error("abort");
      }),
    ).rejects.toThrow("abort");
    expect(await store.webhooks.depth()).toEqual({ pending: 0, waitingEvents: 2 });

    const fan = await store.webhooks.fanOut([ALL, LIFECYCLE_ONLY], { nowMs: T0, capacity: 100, limit: 100 });
    expect(fan).toEqual({ events: 2, deliveries: 4, dropped: 0 });
    const rows = await store.webhooks.list({ limit: 10 });
    expect(rows.map((row) => `${row.endpointId}:${row.type}`).sort()).toEqual(["all:api_token.created", "all:api_token.revoked", "lifecycle:api_token.created", "lifecycle:api_token.revoked"]);
    expect(rows.every((row) => row.status === "pending" && row.attempts === 0 && row.nextAttemptAtMs === T0)).toBe(true);
    const revoked = JSON.parse(rows.find((row) => row.type === "api_token.revoked")!.body);
    expect(revoked).toMatchObject({ type: "api_token.revoked", category: "lifecycle", tenant: "acme", tokenId: record.id, data: { actor: "test", reason: "leaked" } });
    // the same event id for every endpoint: the idempotency key
    expect(new Set(rows.map((row) => row.eventId)).size).toBe(2);
    expect(await store.webhooks.depth()).toEqual({ pending: 4, waitingEvents: 0 });
  });

  it("enqueues one event per security event row when it is first written, not one per denial or batch", async () => {
    const store = await open();
    const row = { minuteMs: T0 - (T0 % 60_000), event: "auth.api_token_ip_allowlist_blocked" as const, tokenId: "tok_a", tenant: "acme", count: 3, lastAtMs: T0 };
    await store.securityEvents.record([row, { ...row, tokenId: null, tenant: null }]);
    await store.securityEvents.record([{ ...row, count: 500 }]);
    const other = await open();
    await other.securityEvents.record([{ ...row, count: 7 }]);
    const fan = await store.webhooks.fanOut([ALL, LIFECYCLE_ONLY], { nowMs: T0, capacity: 100, limit: 100 });
    expect(fan).toEqual({ events: 2, deliveries: 2, dropped: 0 });
    const bodies = (await store.webhooks.list({ limit: 10 })).map((delivery) => JSON.parse(delivery.body));
    expect(bodies.find((body) => body.tokenId === "tok_a")).toMatchObject({ category: "security", type: row.event, data: { count: 3 } });
    expect((await store.securityEvents.list({ limit: 10 })).find((stored) => stored.tokenId === "tok_a")!.count).toBe(510);
  });

  it("drops deliveries past the capacity and counts them", async () => {
    const store = await open();
    for (let i = 0; i < 5; i++) await store.webhooks.enqueue({ id: `evt_${i}`, type: "tenant.suspended", atMs: T0 + i, body: "{}" });
    expect(await store.webhooks.fanOut([ALL], { nowMs: T0, capacity: 3, limit: 100 })).toEqual({ events: 5, deliveries: 3, dropped: 2 });
    expect((await store.webhooks.list({ limit: 10 })).map((row) => row.eventId).sort()).toEqual(["evt_0", "evt_1", "evt_2"]);
  });

  it("two store objects claiming at once never take one delivery twice, and every delivery is taken", async () => {
    const first = await open();
    const second = await open();
    const total = 120;
    for (let i = 0; i < total; i++) await first.webhooks.enqueue({ id: `evt_${String(i).padStart(3, "0")}`, type: "api_token.created", atMs: T0 + i, body: `{"n":${i}}` });
    await Promise.all([first.webhooks.fanOut([ALL], { nowMs: T0, capacity: 1_000, limit: 50 }), second.webhooks.fanOut([ALL], { nowMs: T0, capacity: 1_000, limit: 50 })]);
    while ((await first.webhooks.depth()).waitingEvents > 0) await first.webhooks.fanOut([ALL], { nowMs: T0, capacity: 1_000, limit: 50 });
    expect((await first.webhooks.depth()).pending).toBe(total);

    const claimedBy = new Map<string, string>();
    const duplicates: string[] = [];
    const replica = async (store: Store, name: string) => {
      for (let round = 0; round < 100; round++) {
        const claimed = await store.webhooks.claim({ endpointIds: ["all"], nowMs: T0 + 1_000, leaseUntilMs: T0 + 60_000, leaseId: `${name}:${round}`, limit: 7 });
        if (claimed.length === 0) return;
        for (const delivery of claimed) {
          if (claimedBy.has(delivery.eventId)) duplicates.push(delivery.eventId);
          claimedBy.set(delivery.eventId, name);
        }
        await Promise.all(claimed.map((delivery) => store.webhooks.complete(delivery.eventId, "all", `${name}:${round}`, { kind: "delivered", atMs: T0 + 1_001 })));
      }
    };
    await Promise.all([replica(first, "a"), replica(second, "b")]);
    expect(duplicates).toEqual([]);
    expect(claimedBy.size).toBe(total);
    expect((await first.webhooks.list({ status: "delivered", limit: 1_000 })).length).toBe(total);
    // why: on PostgreSQL both replicas really run at once (two pools); SQLite serializes them on the file
    if (target.name === "PostgreSQL") expect(new Set(claimedBy.values()).size).toBe(2);
  });

  it("keeps a claimed delivery from others until its lease ends, then lets it be claimed again; a lost lease changes nothing", async () => {
    const store = await open();
    await store.webhooks.enqueue({ id: "evt_lease", type: "tenant.resumed", atMs: T0, body: "{}" });
    await store.webhooks.fanOut([ALL], { nowMs: T0, capacity: 10, limit: 10 });
    const claim = (nowMs: number, leaseId: string) => store.webhooks.claim({ endpointIds: ["all"], nowMs, leaseUntilMs: nowMs + 30_000, leaseId, limit: 10 });
    expect(await claim(T0, "crashed")).toHaveLength(1);
    expect(await claim(T0 + 29_999, "other")).toHaveLength(0);
    expect(await claim(T0 + 30_000, "other")).toHaveLength(1);
    await store.webhooks.complete("evt_lease", "all", "crashed", { kind: "delivered", atMs: T0 + 30_001 });
    expect((await store.webhooks.list({ limit: 1 }))[0]).toMatchObject({ status: "pending", attempts: 0 });
    await store.webhooks.complete("evt_lease", "all", "other", { kind: "retry", atMs: T0 + 30_002, nextAttemptAtMs: T0 + 31_000, error: "HTTP 500" });
    expect((await store.webhooks.list({ limit: 1 }))[0]).toMatchObject({ status: "pending", attempts: 1, lastError: "HTTP 500", nextAttemptAtMs: T0 + 31_000 });
    expect(await store.webhooks.claim({ endpointIds: ["another_endpoint"], nowMs: T0 + 40_000, leaseUntilMs: T0 + 70_000, leaseId: "x", limit: 10 })).toHaveLength(0);
    const again = await claim(T0 + 31_000, "third");
    expect(again).toHaveLength(1);
    await store.webhooks.complete("evt_lease", "all", "third", { kind: "failed", atMs: T0 + 31_001, error: "HTTP 410" });
    expect(await store.webhooks.list({ status: "failed", limit: 5 })).toMatchObject([{ eventId: "evt_lease", attempts: 2, lastError: "HTTP 410" }]);
  });

  it("sweeps: gives up pending deliveries past their age and deletes finished ones past retention", async () => {
    const store = await open();
    await store.webhooks.enqueue({ id: "evt_old", type: "tenant.resumed", atMs: T0, body: "{}" });
    await store.webhooks.fanOut([ALL], { nowMs: T0, capacity: 10, limit: 10 });
    expect(await store.webhooks.sweep({ nowMs: T0 + 10, createdBeforeMs: T0, finishedBeforeMs: 0 })).toBe(0);
    expect(await store.webhooks.sweep({ nowMs: T0 + 10, createdBeforeMs: T0 + 1, finishedBeforeMs: 0 })).toBe(1);
    expect((await store.webhooks.list({ limit: 1 }))[0]).toMatchObject({ status: "failed", lastError: "given up: too old" });
    await store.webhooks.sweep({ nowMs: T0 + 20, createdBeforeMs: 0, finishedBeforeMs: T0 + 11 });
    expect(await store.webhooks.list({ limit: 1 })).toEqual([]);
  });
});
