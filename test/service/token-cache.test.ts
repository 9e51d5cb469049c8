import { describe, expect, it } from "vitest";
import type { TokenRecord } from "../../src/engine/types.js";
import { createTokenCache } from "../../src/service/token-cache.js";
import { makeToken } from "../support/fixtures.js";
import { settledNow } from "../../src/service/maybe-promise.js";

/** A store whose rows the test edits, counting reads. Each read returns a fresh object, as SQLite does. */
function fakeStore(rows: Map<string, TokenRecord>) {
  let reads = 0;
  return {
    reads: () => reads,
    find(token: string) {
      reads++;
      const row = rows.get(token);
      return row === undefined ? undefined : structuredClone(row);
    },
  };
}

describe("token cache", () => {
  const { token, record } = makeToken();

  it("answers a hot token from memory until its age runs out", () => {
    let now = 10_000;
    const store = fakeStore(new Map([[token, record]]));
    const cache = createTokenCache(store, { ttlMs: 1_000, clockMs: () => now });
    const first = cache.find(token);
    now = 11_000;
    expect(cache.find(token)).toBe(first);
    expect(store.reads()).toBe(1);
    now = 11_001;
    cache.find(token);
    expect(store.reads()).toBe(2);
  });

  it("keeps the same object across a refresh when the record did not change, so per-record memos survive", () => {
    let now = 10_000;
    const cache = createTokenCache(fakeStore(new Map([[token, record]])), { ttlMs: 1_000, clockMs: () => now });
    const first = cache.find(token);
    now = 15_000;
    expect(cache.find(token)).toBe(first);
  });

  it("takes the new record when another process changed it, within one age", () => {
    let now = 10_000;
    const rows = new Map([[token, record]]);
    const cache = createTokenCache(fakeStore(rows), { ttlMs: 1_000, clockMs: () => now });
    expect(settledNow(cache.find(token))!.revokedAtMs).toBeNull();
    rows.set(token, { ...record, revokedAtMs: 123 });
    now = 10_500;
    expect(settledNow(cache.find(token))!.revokedAtMs).toBeNull();
    now = 11_001;
    expect(settledNow(cache.find(token))!.revokedAtMs).toBe(123);
  });

  it("forgets a token the store no longer holds, and never caches unknown tokens", () => {
    let now = 10_000;
    const rows = new Map([[token, record]]);
    const store = fakeStore(rows);
    const cache = createTokenCache(store, { ttlMs: 1_000, clockMs: () => now });
    cache.find(token);
    rows.delete(token);
    now = 11_001;
    expect(cache.find(token)).toBeUndefined();
    expect(cache.find("sk_live_unknown")).toBeUndefined();
    expect(cache.find("sk_live_unknown")).toBeUndefined();
    expect(store.reads()).toBe(4);
  });

  it("evicts by token id at once", () => {
    const store = fakeStore(new Map([[token, record]]));
    const cache = createTokenCache(store, { ttlMs: 60_000 });
    cache.find(token);
    cache.evictTokenIds([record.id]);
    cache.find(token);
    expect(store.reads()).toBe(2);
  });

  it("holds at most maxEntries tokens", () => {
    const tokens = Array.from({ length: 5 }, () => makeToken());
    const store = fakeStore(new Map(tokens.map((t) => [t.token, t.record])));
    const cache = createTokenCache(store, { maxEntries: 3, ttlMs: 60_000 });
    for (const t of tokens) cache.find(t.token);
    cache.find(tokens[0]!.token);
    expect(store.reads()).toBe(6);
  });
});
