/**
 * Retention of stored security events on SQLite and on real PostgreSQL: a
 * backlog is deleted in bounded batches over several runs, rows inside the
 * retention stay, two replicas pruning at once delete each row once, the timer
 * runs it by itself, and the metric counts the rows. Plus the serve option.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ConfigError, resolveServeConfig } from "../../src/config/config.js";
import { DEFAULT_SECURITY_EVENT_RETENTION_MS, startSecurityEventPruner, type SecurityEventPruner } from "../../src/observe/security-event-retention.js";
import { createServerMetrics } from "../../src/service/metrics.js";
import { PostgresStore } from "../../src/store/postgres/postgres-store.js";
import { SqliteStore } from "../../src/store/sqlite/sqlite-store.js";
import type { SecurityEventCount, Store } from "../../src/store/store-interfaces.js";
import { createTestDatabase, postgresUnavailableReason } from "../support/postgres.js";

const NOW = 1_780_000_000_000 - (1_780_000_000_000 % 60_000);
const DAY = 86_400_000;
const RETENTION = 30 * DAY;

/** `count` rows of distinct tokens in minutes that started `ageMs` (and a minute per row more) before {@link NOW}. */
function rowsAged(ageMs: number, count: number, prefix: string): SecurityEventCount[] {
  return Array.from({ length: count }, (_, i) => {
    const minuteMs = NOW - ageMs - (i % 100) * 60_000;
    return { minuteMs, event: "auth.api_token_ip_allowlist_blocked", tokenId: `tok_${prefix}${i}`, tenant: "acme", count: 1, lastAtMs: minuteMs + 1_000 };
  });
}

interface Target {
  name: string;
  skip: string | null;
  /** A fresh empty store, and a second object over the same database (another replica or process). */
  open(): Promise<{ store: Store; replica: Store; close(): Promise<void> }>;
}

const pgUnavailable = await postgresUnavailableReason();

const targets: Target[] = [
  {
    name: "SQLite",
    skip: null,
    async open() {
      const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-retention-"));
      const store = SqliteStore.open({ dataDir, secret: Buffer.alloc(32, 7) });
      const replica = SqliteStore.open({ dataDir, secret: Buffer.alloc(32, 7), busyTimeoutMs: 5_000 });
      return {
        store,
        replica,
        async close() {
          await store.close();
          await replica.close();
          fs.rmSync(dataDir, { recursive: true, force: true });
        },
      };
    },
  },
  {
    name: "PostgreSQL",
    skip: pgUnavailable,
    async open() {
      const database = await createTestDatabase();
      const store = await PostgresStore.open({ url: database.url });
      const replica = await PostgresStore.open({ url: database.url });
      return {
        store,
        replica,
        async close() {
          await store.close();
          await replica.close();
          await database.drop();
        },
      };
    },
  },
];

const pruners: SecurityEventPruner[] = [];
let closeStores: (() => Promise<void>) | undefined;

afterEach(async () => {
  for (const pruner of pruners.splice(0)) await pruner.close();
  await closeStores?.();
  closeStores = undefined;
});

/** A pruner whose timer never fires during the test unless asked. */
function pruner(store: Store, options: { batchRows?: number; maxBatchesPerRun?: number; firstRunDelayMs?: number } = {}): SecurityEventPruner {
  const started = startSecurityEventPruner({ log: store.securityEvents, retentionMs: RETENTION, now: () => NOW, firstRunDelayMs: 3_600_000, ...options });
  pruners.push(started);
  return started;
}

for (const target of targets) {
  describe.skipIf(target.skip !== null)(`security event retention on ${target.name}`, () => {
    it("deletes a backlog in bounded batches over runs, and keeps the rows inside the retention", async () => {
      const { store, close } = await target.open();
      closeStores = close;
      await store.securityEvents.record([...rowsAged(RETENTION + DAY, 2_500, "old"), ...rowsAged(RETENTION - DAY, 30, "recent")]);
      const pruning = pruner(store, { batchRows: 1_000, maxBatchesPerRun: 2 });
      // two batches of 1,000 in the first run; the rest is left for the next one
      expect(await pruning.runOnce()).toBe(2_000);
      expect(await pruning.runOnce()).toBe(500);
      expect(await pruning.runOnce()).toBe(0);
      expect(pruning.stats()).toEqual({ pruned: 2_500, failedRuns: 0 });
      const left = await store.securityEvents.list({ limit: 10_000 });
      expect(left).toHaveLength(30);
      expect(left.every((row) => row.tokenId!.startsWith("tok_recent"))).toBe(true);
      const metrics = createServerMetrics();
      metrics.watchSecurityEventPruning(() => pruning.stats());
      expect((await metrics.render()).body).toMatch(/^portcullis_security_event_rows_pruned_total 2500$/m);
    });

    it("deletes each row once when two replicas prune at the same time", async () => {
      const { store, replica, close } = await target.open();
      closeStores = close;
      await store.securityEvents.record(rowsAged(RETENTION + DAY, 1_200, "old"));
      const [a, b] = [pruner(store, { batchRows: 100 }), pruner(replica, { batchRows: 100 })];
      const [deletedByA, deletedByB] = await Promise.all([a.runOnce(), b.runOnce()]);
      expect(deletedByA + deletedByB).toBe(1_200);
      expect(a.stats().failedRuns + b.stats().failedRuns).toBe(0);
      expect(await store.securityEvents.list({ limit: 10 })).toEqual([]);
    });

    it("runs on its timer, off any caller", async () => {
      const { store, close } = await target.open();
      closeStores = close;
      await store.securityEvents.record(rowsAged(RETENTION + DAY, 5, "old"));
      const pruning = pruner(store, { firstRunDelayMs: 10 });
      const deadline = Date.now() + 5_000;
      while (pruning.stats().pruned < 5 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
      expect(pruning.stats().pruned).toBe(5);
    });
  });
}

describe("--security-event-retention", () => {
  it.each([
    [{}, {}, DEFAULT_SECURITY_EVENT_RETENTION_MS],
    [{ securityEventRetention: "7d" }, {}, 7 * DAY],
    [{}, { PORTCULLIS_SECURITY_EVENT_RETENTION: "12h" }, 12 * 3_600_000],
    [{ securityEventRetention: "0s" }, { PORTCULLIS_SECURITY_EVENT_RETENTION: "12h" }, 0],
  ])("%j with env %j keeps rows for %d ms", (flags, env, expected) => {
    expect(resolveServeConfig(flags, env).securityEventRetentionMs).toBe(expected);
  });

  it.each(["30", "soon", "10s"])("refuses `%s`", (value) => {
    expect(() => resolveServeConfig({ securityEventRetention: value }, {})).toThrow(ConfigError);
    expect(() => resolveServeConfig({ securityEventRetention: value }, {})).toThrow(/--security-event-retention \(PORTCULLIS_SECURITY_EVENT_RETENTION\)/);
  });
});
