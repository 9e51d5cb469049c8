/**
 * What the decision path reads when the store is PostgreSQL shared by a
 * fleet: tokens through a cache that never waits on PostgreSQL for a cached
 * token, and tenant and workspace state from a snapshot refreshed off the
 * decision path, both kept right by the change feed.
 *
 * The promise to keep is that a revocation, suspension or restriction made
 * anywhere reaches every replica's decisions within 1 s. The feed delivers
 * changes in milliseconds, so cache entries may be trusted far longer than
 * SQLite's 1 s, but only while the feed is known to be live: once it has been
 * blind for longer than the promise (PostgreSQL down, a network cut), every
 * decision that needs a token answers `unavailable` (503) instead of trusting
 * what may have been revoked meanwhile. It recovers by itself: when the feed
 * is back, caches are dropped (changes may have been missed) and refilled.
 */
import type { TokenRecord } from "../engine/types.js";
import type { WorkspaceRestrictionFact } from "../engine/workspace-restriction-mode.js";
import type { ChangeFeed } from "../store/postgres/change-feed.js";
import { StoreError } from "../store/store-error.js";
import { workspaceKey, type AdministrativeState, type TenantStateRepository } from "../store/store-interfaces.js";
import type { MaybePromise } from "./maybe-promise.js";
import type { TenantStateLookup } from "./tenant-state-cache.js";
import { createTokenCache, type TokenCache, type TokenLookup } from "./token-cache.js";

/** What {@link createFleetReads} needs of the store (a {@link PostgresStore}). */
export interface FleetStore {
  readonly feed: Pick<ChangeFeed, "isLive" | "blindSince"> | null;
  readonly tenantState: Pick<TenantStateRepository, "readAdministrativeState">;
  onTokensChanged(listener: (tokenIds: readonly string[]) => void): () => void;
  onAdministrativeStateChanged(listener: () => void): () => void;
  onFeedReset(listener: () => void): () => void;
}

/** Options of {@link createFleetReads}. */
export interface FleetReadsOptions {
  readonly store: FleetStore;
  /** Looks a bearer token up in the store (hash, then one indexed read); a Promise. */
  readonly find: (token: string) => MaybePromise<TokenRecord | undefined>;
  /** The promise: how stale what a replica knows may be before it stops deciding, ms; default 1,000. */
  readonly maxStalenessMs?: number;
  /**
   * How long a cached token is trusted, ms; default 300,000. The feed evicts
   * changed tokens at once, so this only bounds the memory of tokens no
   * longer used and the cost of a notification lost to a bug.
   */
  readonly cacheTtlMs?: number;
  /** Tokens cached; default the token cache's. */
  readonly maxEntries?: number;
  /** Clock, ms since the epoch (the feed's clock); default `Date.now`. */
  readonly now?: () => number;
  /** Told when the tenant state could not be reread; it is retried. */
  readonly onRefreshError?: (error: unknown) => void;
  /** Wait before retrying a failed reread, ms; default 100. */
  readonly retryMs?: number;
}

/** The decision path's reads over a PostgreSQL store. */
export interface FleetReads {
  /** Token look-up for the authorizer: cached, and refused while blind. */
  readonly tokens: TokenLookup;
  /** The cache behind {@link tokens}, to clear on a policy reload. */
  readonly tokenCache: TokenCache;
  readonly tenantState: TenantStateLookup;
  /**
   * Whether decisions may be made now: the feed confirmed within the promise,
   * and the tenant state snapshot reread after every change it announced.
   */
  isLive(nowMs?: number): boolean;
  /** Resolves when the first tenant state snapshot is in. */
  readonly ready: Promise<void>;
  /** Stops listening; the store is the caller's to close. */
  close(): void;
}

/**
 * Builds the fleet's reads and subscribes them to the store's changes.
 *
 * @example
 * const reads = createFleetReads({ store, find: (token) => lifecycle.findByToken(token) });
 * await reads.ready;
 * createAuthorizer({ tokens: reads.tokens, tenantState: reads.tenantState, … });
 */
export function createFleetReads(options: FleetReadsOptions): FleetReads {
  const { store } = options;
  const now = options.now ?? Date.now;
  const maxStalenessMs = options.maxStalenessMs ?? 1_000;
  const retryMs = options.retryMs ?? 100;
  const tokenCache = createTokenCache({ find: options.find }, { ttlMs: options.cacheTtlMs ?? 300_000, ...(options.maxEntries === undefined ? {} : { maxEntries: options.maxEntries }) });

  let snapshot: AdministrativeState | null = null;
  // The first change not yet covered by a reread (null: none), and the one a reread in flight covers.
  let dirtySince: number | null = now();
  let inFlightSince: number | null = null;
  let retryTimer: NodeJS.Timeout | null = null;
  let closed = false;
  let resolveReady!: () => void;
  const ready = new Promise<void>((resolve) => (resolveReady = resolve));

  const refresh = (): void => {
    if (closed || inFlightSince !== null || dirtySince === null) return;
    inFlightSince = dirtySince;
    dirtySince = null;
    Promise.resolve()
      .then(() => store.tenantState.readAdministrativeState())
      .then(
        (state) => {
          snapshot = state;
          inFlightSince = null;
          resolveReady();
        },
        (error: unknown) => {
          dirtySince = Math.min(inFlightSince!, dirtySince ?? Infinity);
          inFlightSince = null;
          options.onRefreshError?.(error);
          if (!closed && retryTimer === null) {
            retryTimer = setTimeout(() => {
              retryTimer = null;
              refresh();
            }, retryMs);
            retryTimer.unref();
          }
        },
      )
      // why: a change announced while the read was in flight needs another read
      .finally(() => refresh());
  };
  const changed = (): void => {
    dirtySince ??= now();
    refresh();
  };

  const unsubscribe = [
    store.onTokensChanged((ids) => tokenCache.evictTokenIds(ids)),
    // why: notifications may have been missed while the feed was away; nothing cached can be trusted
    store.onFeedReset(() => tokenCache.clear()),
    store.onAdministrativeStateChanged(changed),
  ];
  refresh();

  const isLive = (nowMs: number = now()): boolean => {
    if (store.feed !== null && !store.feed.isLive(nowMs, maxStalenessMs)) return false;
    if (snapshot === null) return false;
    const pendingSince = Math.min(dirtySince ?? Infinity, inFlightSince ?? Infinity);
    return nowMs - pendingSince <= maxStalenessMs;
  };
  const blind = (): StoreError => {
    const since = store.feed?.blindSince() ?? null;
    return new StoreError(
      "unavailable",
      since === null ? "the tenant state is not current" : `PostgreSQL changes cannot be confirmed since ${new Date(since).toISOString()}`,
    );
  };
  const current = (): AdministrativeState => {
    if (snapshot === null) throw blind();
    return snapshot;
  };

  return {
    tokens: {
      find(token) {
        if (!isLive()) throw blind();
        return tokenCache.find(token);
      },
    },
    tokenCache,
    tenantState: {
      tenantSuspended: (tenant) => current().suspendedTenants.has(tenant),
      workspaceRestricted: (tenant, workspace): WorkspaceRestrictionFact => current().restrictedWorkspaces.get(workspaceKey(tenant, workspace)) ?? false,
    },
    isLive,
    ready,
    close() {
      closed = true;
      if (retryTimer) clearTimeout(retryTimer);
      for (const stop of unsubscribe) stop();
    },
  };
}

/** Whether `error` is the refusal of a blind replica (logged once, not per request). */
export function isBlindRefusal(error: unknown): boolean {
  return error instanceof StoreError && error.kind === "unavailable";
}
