/**
 * A bounded in-memory cache in front of the token store, so that a hot token
 * costs no SQLite read and no HMAC.
 *
 * Entries live at most `ttlMs` (default 1 s): that is the bound on how long a
 * revocation made by another process sharing the store file can go unseen.
 * Revocations on this node evict at once through {@link TokenCache.evictTokenId}.
 *
 * Unknown tokens are remembered too, for at most `unknownTtlMs` (default 1 s),
 * so that a token sent again and again (a client with a deleted key, an
 * attacker) costs no HMAC and no store read each time. A token created by
 * another process is therefore found within that second; one created through
 * this node's store evicts these entries at once ({@link TokenCache.evictTokenIds}
 * is told of creations too). They live in a cache of their own, bounded in
 * entries, so a flood of random tokens holds bounded memory and never pushes
 * a real token out; keyed by the whole token, never a prefix or a short hash,
 * so an unknown token can never stand for a real one.
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
  /** Forgets the entry of a token id, e.g. after it was revoked on this node, and every unknown token remembered. */
  evictTokenId(tokenId: string): void;
  /**
   * Forgets the entries of several token ids (an emergency revoke, a rotated
   * lineage, a creation) and every unknown token remembered.
   */
  evictTokenIds(tokenIds: Iterable<string>): void;
  clear(): void;
  /** Look-ups answered from the cache, and those that went to the store (joining one in flight included), since creation. */
  stats(): { readonly hits: number; readonly misses: number };
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
  /** Unknown tokens remembered; default 10,000 (about 2 MB). */
  readonly maxUnknown?: number;
  /** How long an unknown token is remembered, milliseconds; default and at most 1,000 (a token created elsewhere works within it). */
  readonly unknownTtlMs?: number;
  /** Monotonic milliseconds for entry ages; default `performance.now`. Tests pin it. */
  readonly clockMs?: () => number;
}

/** Entries kept when the caller names no size. */
export const DEFAULT_MAX_ENTRIES = 20_000;

/** Unknown tokens remembered when the caller names no size. */
export const DEFAULT_MAX_UNKNOWN = 10_000;

/** Wraps a store look-up with an LRU cache bounded in size and age. */
export function createTokenCache(store: TokenLookup, options: TokenCacheOptions = {}): TokenCache {
  const cache = new LRUCache<string, TokenRecord>({
    max: options.maxEntries ?? DEFAULT_MAX_ENTRIES,
    ttl: options.ttlMs ?? 1_000,
    ttlAutopurge: false,
    // A stale entry stays readable through peek, to be compared with the store's fresh record.
    noDeleteOnStaleGet: true,
    ...(options.clockMs === undefined ? {} : { perf: { now: options.clockMs }, ttlResolution: 0 }),
    // why: keeps the id index exact, so that an eviction by id touches only that id's entry
    dispose: (record, token) => {
      if (byId.get(record.id) === token) byId.delete(record.id);
    },
  });
  // Token id -> its cached token: a revocation or creation evicts in O(ids), not in a pass over the cache.
  const byId = new Map<string, string>();
  const unknown = new LRUCache<string, true>({
    max: options.maxUnknown ?? DEFAULT_MAX_UNKNOWN,
    ttl: Math.min(options.unknownTtlMs ?? 1_000, 1_000),
    ttlAutopurge: false,
    ...(options.clockMs === undefined ? {} : { perf: { now: options.clockMs }, ttlResolution: 0 }),
  });
  const evict = (tokenId: string): void => {
    const token = byId.get(tokenId);
    if (token !== undefined) cache.delete(token);
  };
  // One read in flight per token: a burst for a token that just went stale waits on one store round trip.
  const pending = new Map<string, Promise<TokenRecord | undefined>>();
  // Bumped by every eviction, so that a read that started before a revocation does not cache what it read.
  let generation = 0;
  let hits = 0;
  let misses = 0;
  const forgetReadsInFlight = (): void => {
    generation++;
    // why: a read that began before the change may return the old record; later callers must not join it
    pending.clear();
  };
  const settle = (token: string, fresh: TokenRecord | undefined): TokenRecord | undefined => {
    if (fresh === undefined) {
      cache.delete(token);
      unknown.set(token, true);
      return undefined;
    }
    const stale = cache.peek(token, { allowStale: true });
    const record = stale !== undefined && sameRecord(stale, fresh) ? stale : fresh;
    cache.set(token, record);
    byId.set(record.id, token);
    unknown.delete(token);
    return record;
  };
  /**
   * Settles a read from a store that answers later. A change announced while
   * it was on the wire (a revocation, or only a creation elsewhere) may or may
   * not be in what it read, so it is read once more rather than cached; past
   * that it is answered uncached, as a request concurrent with the change.
   */
  const settleLater = (token: string, read: Promise<TokenRecord | undefined>, retries: number): Promise<TokenRecord | undefined> => {
    const startedAt = generation;
    return read.then((found) => {
      if (generation === startedAt) return settle(token, found);
      if (retries === 0) return found;
      const again = store.find(token);
      return isPromise(again) ? settleLater(token, again, retries - 1) : settle(token, again);
    });
  };
  return {
    find(token) {
      const hit = cache.get(token);
      if (hit !== undefined) {
        hits++;
        return hit;
      }
      // An unknown token remembered is answered from memory too.
      if (unknown.get(token) === true) {
        hits++;
        return undefined;
      }
      misses++;
      const inFlight = pending.get(token);
      if (inFlight !== undefined) return inFlight;
      const fresh = store.find(token);
      if (!isPromise(fresh)) return settle(token, fresh);
      const read = settleLater(token, fresh, 1).finally(() => {
        if (pending.get(token) === read) pending.delete(token);
      });
      pending.set(token, read);
      return read;
    },
    evictTokenId(tokenId) {
      forgetReadsInFlight();
      unknown.clear();
      evict(tokenId);
    },
    evictTokenIds(tokenIds) {
      const ids = [...tokenIds];
      if (ids.length === 0) return;
      forgetReadsInFlight();
      // why: the change may be a creation, and which unknown token it makes known cannot be told from its id
      unknown.clear();
      for (const id of ids) evict(id);
    },
    clear() {
      forgetReadsInFlight();
      unknown.clear();
      cache.clear();
    },
    stats: () => ({ hits, misses }),
  };
}

/** Whether two reads of one token found the same record: every field, controls included, is plain data. */
function sameRecord(a: TokenRecord, b: TokenRecord): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
