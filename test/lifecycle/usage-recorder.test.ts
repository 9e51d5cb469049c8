import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createUsageRecorder, type UsageSink } from "../../src/service/usage-recorder.js";
import type { TokenUse } from "../../src/store/token-store.js";
import { TokenStore } from "../../src/store/token-store.js";
import { NOW_MS } from "../support/fixtures.js";

/** A sink that counts transactions and keeps what it was given. */
function countingSink(): UsageSink & { transactions: number; batches: Map<string, TokenUse>[] } {
  const sink = {
    transactions: 0,
    batches: [] as Map<string, TokenUse>[],
    recordUse(batch: ReadonlyMap<string, TokenUse>) {
      sink.transactions += 1;
      sink.batches.push(new Map(batch));
    },
  };
  return sink;
}

afterEach(() => {
  vi.useRealTimers();
});

describe("usage recorder", () => {
  it("collapses a burst of 10,000 stamps on a few tokens into one transaction", () => {
    const sink = countingSink();
    const usage = createUsageRecorder(sink, { flushIntervalMs: 60_000 });
    for (let i = 0; i < 10_000; i++) usage.record(`tok_${i % 3}`, NOW_MS + i);
    expect(sink.transactions).toBe(0);
    expect(usage.pending).toBe(3);
    usage.close();
    expect(sink.transactions).toBe(1);
    const batch = sink.batches[0]!;
    expect([...batch.values()].reduce((sum, use) => sum + use.count, 0)).toBe(10_000);
    expect(batch.get("tok_0")).toEqual({ lastUsedAtMs: NOW_MS + 9_999, count: 3_334 });
  });

  it("flushes early, on the next turn, at maxPending distinct tokens: 10,000 tokens are 10 transactions", async () => {
    const sink = countingSink();
    const usage = createUsageRecorder(sink, { flushIntervalMs: 60_000, maxPending: 1_000 });
    for (let i = 0; i < 10_000; i++) {
      usage.record(`tok_${i}`, NOW_MS);
      // Yield to the event loop every 1,000 decisions, as a server between requests does.
      if (i % 1_000 === 999) {
        expect(sink.transactions).toBe(Math.floor(i / 1_000)); // never inside record()
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
    usage.close();
    expect(sink.transactions).toBe(10);
    expect(sink.batches.reduce((sum, batch) => sum + batch.size, 0)).toBe(10_000);
  });

  it("flushes after flushIntervalMs and not before", () => {
    vi.useFakeTimers();
    const sink = countingSink();
    const usage = createUsageRecorder(sink, { flushIntervalMs: 500 });
    usage.record("tok_a", NOW_MS);
    vi.advanceTimersByTime(499);
    expect(sink.transactions).toBe(0);
    vi.advanceTimersByTime(1);
    expect(sink.transactions).toBe(1);
    vi.advanceTimersByTime(5_000);
    expect(sink.transactions).toBe(1); // nothing pending: no empty transactions
    usage.close();
  });

  it("keeps a failed batch and writes it with the next flush, merged with newer stamps", () => {
    let fail = true;
    const sink = countingSink();
    const errors: unknown[] = [];
    const usage = createUsageRecorder(
      {
        recordUse(batch) {
          if (fail) throw new Error("database is locked");
          sink.recordUse(batch);
        },
      },
      { flushIntervalMs: 60_000, onError: (error) => errors.push(error) },
    );
    usage.record("tok_a", NOW_MS);
    usage.flush();
    expect(errors).toHaveLength(1);
    fail = false;
    usage.record("tok_a", NOW_MS + 10);
    usage.close();
    expect(sink.batches).toEqual([new Map([["tok_a", { lastUsedAtMs: NOW_MS + 10, count: 2 }]])]);
  });

  it("writes through the real store in one transaction per flush", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-usage-"));
    const store = TokenStore.open({ dataDir: dir, secret: Buffer.alloc(32, 7) });
    try {
      const base = { tenant: "acme", workspace: "main", environment: "production", prefix: "sk_live_", type: "service" as const, role: "tenant_operator" };
      const a = (await store.create({ ...base, name: "a" })).record;
      const b = (await store.create({ ...base, name: "b" })).record;
      const spy = vi.spyOn(store, "recordUse");
      const usage = createUsageRecorder(store, { flushIntervalMs: 60_000 });
      for (let i = 0; i < 10_000; i++) usage.record(i % 2 === 0 ? a.id : b.id, NOW_MS + i);
      await usage.close();
      expect(spy).toHaveBeenCalledTimes(1);
      const rows = new Map((await store.list()).map((row) => [row.id, row]));
      expect(rows.get(a.id)).toMatchObject({ useCount: 5_000, lastUsedAtMs: NOW_MS + 9_998 });
      expect(rows.get(b.id)).toMatchObject({ useCount: 5_000, lastUsedAtMs: NOW_MS + 9_999 });
    } finally {
      store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
