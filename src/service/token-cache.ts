/**
 * A bounded in-memory cache in front of the token store, so that a hot token
 * costs no SQLite read and no HMAC.
 *
 * Entries live at most `ttlMs` (default 1 s): that is the bound on how long a
 * revocation made by another process sharing the store file can go unseen.
 * Revocations on this node evict at once through {@link TokenCache.evictTokenId}.
 * Unknown tokens are not cached, so a token created a moment ago is found at once.
 *
 * When an entry's age runs out and the store still holds the same record, the
 * cached object is kept: what the engine memoises per record (compiled
 * allowlists, the identity and its headers) then survives the refresh instead
 * of being rebuilt every second.
 */
import { LRUCache } from "lru-cache";
import type { TokenRecord } from "../engine/types.js";
import { isPromise, type MaybePromise } from "./maybe-promise.js";

/**
 * Looks a bearer token up; `undefined` when no such token is stored. An
 * embedded store answers at once; a network store answers with a Promise.
 */
export interface TokenLookup {
  find(token: string): MaybePromise<TokenRecord | undefined>;
}

export interface TokenCache extends TokenLookup {
  /** Forgets the entry of a token id, e.g. after it was revoked on this node. */
  evictTokenId(tokenId: string): void;
  /** Forgets the entries of several token ids in one pass over the cache (an emergency revoke, a rotated lineage). */
  evictTokenIds(tokenIds: Iterable<string>): void;
  clear(): void;
}

export interface TokenCacheOptions {
  /**
   * Entries kept; default 20,000. An entry with its memoised identity and
   * headers takes about 1 KB of heap (scope lists are shared per role), so the
   * default holds about 20 MB; beyond the working set of tokens, a miss costs
   * the HMAC and one indexed SQLite read (about 20 µs with 1,000,000 stored).
   */
  readonly maxEntries?: number;
  /** How long an entry is trusted, milliseconds; default 1,000. */
  readonly ttlMs?: number;
  /** Monotonic milliseconds for entry ages; default `performance.now`. Tests pin it. */
  readonly clockMs?: () => number;
}

/** Entries kept when the caller names no size. */
export const DEFAULT_MAX_ENTRIES = 20_000;

/** Wraps a store look-up with an LRU cache bounded in size and age. */
export function createTokenCache(store: TokenLookup, options: TokenCacheOptions = {}): TokenCache {
  const cache = new LRUCache<string, TokenRecord>({
    max: options.maxEntries ?? DEFAULT_MAX_ENTRIES,
    ttl: options.ttlMs ?? 1_000,
    ttlAutopurge: false,
    // A stale entry stays readable through peek, to be compared with the store's fresh record.
    noDeleteOnStaleGet: true,
    ...(options.clockMs === undefined ? {} : { perf: { now: options.clockMs }, ttlResolution: 0 }),
  });
  // One read in flight per token: a burst for a token that just went stale waits on one store round trip.
  const pending = new Map<string, Promise<TokenRecord | undefined>>();
  // Bumped by every eviction, so that a read that started before a revocation does not cache what it read.
  let generation = 0;
  const forgetReadsInFlight = (): void => {
    generation++;
    // why: a read that began before the change may return the old record; later callers must not join it
    pending.clear();
  };
  const settle = (token: string, fresh: TokenRecord | undefined): TokenRecord | undefined => {
    if (fresh === undefined) {
      cache.delete(token);
      return undefined;
    }
    const stale = cache.peek(token, { allowStale: true });
    const record = stale !== undefined && sameRecord(stale, fresh) ? stale : fresh;
    cache.set(token, record);
    return record;
  };
  return {
    find(token) {
      const hit = cache.get(token);
      if (hit !== undefined) return hit;
      const inFlight = pending.get(token);
      if (inFlight !== undefined) return inFlight;
      const fresh = store.find(token);
      if (!isPromise(fresh)) return settle(token, fresh);
      const startedAt = generation;
      const read = fresh
        .then((found) => (generation === startedAt ? settle(token, found) : found))
        .finally(() => pending.delete(token));
      pending.set(token, read);
      return read;
    },
    evictTokenId(tokenId) {
      forgetReadsInFlight();
      for (const [token, record] of cache.entries()) if (record.id === tokenId) cache.delete(token);
    },
    evictTokenIds(tokenIds) {
      const ids = new Set(tokenIds);
      if (ids.size === 0) return;
      forgetReadsInFlight();
      for (const [token, record] of cache.entries()) if (ids.has(record.id)) cache.delete(token);
    },
    clear() {
      forgetReadsInFlight();
      cache.clear();
    },
  };
}

/** Whether two reads of one token found the same record: every field, controls included, is plain data. */
function sameRecord(a: TokenRecord, b: TokenRecord): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
