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

  it("forgets a token the store no longer holds", () => {
    let now = 10_000;
    const rows = new Map([[token, record]]);
    const store = fakeStore(rows);
    const cache = createTokenCache(store, { ttlMs: 1_000, clockMs: () => now });
    cache.find(token);
    rows.delete(token);
    now = 11_001;
    expect(cache.find(token)).toBeUndefined();
    expect(store.reads()).toBe(2);
  });

  it("remembers an unknown token for at most one second: one created elsewhere after its first miss is found within it", () => {
    let now = 10_000;
    const rows = new Map<string, TokenRecord>();
    const store = fakeStore(rows);
    const cache = createTokenCache(store, { clockMs: () => now });
    expect(cache.find(token)).toBeUndefined();
    expect(cache.find(token)).toBeUndefined();
    expect(store.reads()).toBe(1);
    rows.set(token, record); // created by another process, which cannot tell this cache
    now = 10_999;
    expect(cache.find(token)).toBeUndefined();
    now = 11_001;
    expect(settledNow(cache.find(token))?.id).toBe(record.id);
    expect(store.reads()).toBe(2);
  });

  it("never remembers an unknown token longer than one second, whatever it is told", () => {
    let now = 10_000;
    const rows = new Map<string, TokenRecord>();
    const cache = createTokenCache(fakeStore(rows), { unknownTtlMs: 60_000, clockMs: () => now });
    cache.find(token);
    rows.set(token, record);
    now = 11_001;
    expect(settledNow(cache.find(token))?.id).toBe(record.id);
  });

  it("forgets every unknown token when told of a change, so a token created on this node works at once", () => {
    const rows = new Map<string, TokenRecord>();
    const store = fakeStore(rows);
    const cache = createTokenCache(store);
    expect(cache.find(token)).toBeUndefined();
    rows.set(token, record);
    cache.evictTokenIds([record.id]); // what the store's change listener says on a creation
    expect(settledNow(cache.find(token))?.id).toBe(record.id);
    expect(store.reads()).toBe(2);
  });

  it("holds at most maxUnknown unknown tokens, and a flood of them never pushes a known token out", () => {
    const rows = new Map([[token, record]]);
    const store = fakeStore(rows);
    const cache = createTokenCache(store, { maxEntries: 2, maxUnknown: 100, ttlMs: 60_000 });
    cache.find(token);
    const flood = Array.from({ length: 5_000 }, () => makeToken().token);
    for (const unknown of flood) cache.find(unknown);
    expect(store.reads()).toBe(5_001);
    cache.find(token);
    for (const unknown of flood.slice(-100)) cache.find(unknown);
    expect(store.reads()).toBe(5_001);
    cache.find(flood[0]!);
    expect(store.reads()).toBe(5_002);
  });

  it("remembers an unknown token a network store reported; a change while it was asked makes it ask again", async () => {
    const rows = new Map<string, TokenRecord>();
    let reads = 0;
    const cache = createTokenCache({ find: async (t: string) => (reads++, rows.get(t)) });
    expect(await cache.find(token)).toBeUndefined();
    expect(cache.find(token)).toBeUndefined();
    expect(reads).toBe(1);
    const other = makeToken();
    const asked = cache.find(other.token);
    rows.set(other.token, other.record);
    cache.evictTokenIds([other.record.id]);
    // The creation landed while the first read was on the wire: the token is read again, and kept.
    expect((await asked)?.id).toBe(other.record.id);
    expect(reads).toBe(3);
    expect((cache.find(other.token) as TokenRecord | undefined)?.id).toBe(other.record.id);
    expect(reads).toBe(3);
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
