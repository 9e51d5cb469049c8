/**
 * A bounded in-memory cache in front of the token store, so that a hot token
 * costs no SQLite read and no HMAC.
 *
 * Entries live at most `ttlMs` (default 1 s): that is the bound on how long a
 * revocation made by another process sharing the store file can go unseen.
 * Revocations on this node evict at once through {@link TokenCache.evictTokenId}.
 * Unknown tokens are not cached, so a token created a moment ago is found at once.
 */
import { LRUCache } from "lru-cache";
import type { TokenRecord } from "../engine/types.js";

/** Looks a bearer token up; `undefined` when no such token is stored. */
export interface TokenLookup {
  find(token: string): TokenRecord | undefined;
}

export interface TokenCache extends TokenLookup {
  /** Forgets the entry of a token id, e.g. after it was revoked on this node. */
  evictTokenId(tokenId: string): void;
  /** Forgets the entries of several token ids in one pass over the cache (an emergency revoke, a rotated lineage). */
  evictTokenIds(tokenIds: Iterable<string>): void;
  clear(): void;
}

export interface TokenCacheOptions {
  /** Entries kept; default 100,000 (about 40 MB). */
  readonly maxEntries?: number;
  /** How long an entry is trusted, milliseconds; default 1,000. */
  readonly ttlMs?: number;
}

/** Wraps a store look-up with an LRU cache bounded in size and age. */
export function createTokenCache(store: TokenLookup, options: TokenCacheOptions = {}): TokenCache {
  const cache = new LRUCache<string, TokenRecord>({ max: options.maxEntries ?? 100_000, ttl: options.ttlMs ?? 1_000, ttlAutopurge: false });
  return {
    find(token) {
      const hit = cache.get(token);
      if (hit !== undefined) return hit;
      const record = store.find(token);
      if (record !== undefined) cache.set(token, record);
      return record;
    },
    evictTokenId(tokenId) {
      for (const [token, record] of cache.entries()) if (record.id === tokenId) cache.delete(token);
    },
    evictTokenIds(tokenIds) {
      const ids = new Set(tokenIds);
      if (ids.size === 0) return;
      for (const [token, record] of cache.entries()) if (ids.has(record.id)) cache.delete(token);
    },
    clear() {
      cache.clear();
    },
  };
}
