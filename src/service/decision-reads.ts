/**
 * The decision path's reads for the store the server opened: tokens through
 * a cache and tenant and workspace state through a snapshot, kept right the
 * way each store allows. SQLite: entries trusted for 1 s (other processes
 * sharing the file are not heard), evicted at once for changes made through
 * this process. PostgreSQL: the change feed keeps them right across the fleet
 * ({@link createFleetReads}).
 */
import type { TokenLifecycle } from "../lifecycle/token-lifecycle.js";
import type { OpenedStore } from "../store/open-store.js";
import { StoreError } from "../store/store-error.js";
import { createFleetReads } from "./fleet-reads.js";
import { createTenantStateCache, type TenantStateLookup } from "./tenant-state-cache.js";
import { createTokenCache, type TokenCache, type TokenLookup } from "./token-cache.js";

/** What the authorizer and the explainer read, and whether they may. */
export interface DecisionReads {
  readonly tokens: TokenLookup;
  /** Cleared on a policy reload and when the store file is replaced. */
  readonly tokenCache: TokenCache;
  readonly tenantState: TenantStateLookup;
  /** `false` while decisions that need a token are refused (a blind PostgreSQL replica); always `true` on SQLite. */
  isLive(): boolean;
  /**
   * Runs a read another credential needs (a JWT's token, by id) only while
   * {@link isLive}; else throws the same `unavailable` refusal as {@link tokens}.
   */
  guard<T>(read: () => T): T;
  close(): void;
}

/** Options of {@link createDecisionReads}. */
export interface DecisionReadsOptions {
  /** Told when a PostgreSQL replica could not reread tenant state (it retries). */
  readonly onRefreshError?: (error: unknown) => void;
  /** How long to wait for PostgreSQL's first tenant state snapshot at start, ms; default 5,000. */
  readonly startTimeoutMs?: number;
}

/** Builds the reads for `opened`; for PostgreSQL, resolves once the first snapshot is in. */
export async function createDecisionReads(opened: OpenedStore, lifecycle: Pick<TokenLifecycle, "findByToken">, options: DecisionReadsOptions = {}): Promise<DecisionReads> {
  if (opened.kind === "postgres") {
    const reads = createFleetReads({ store: opened.store, find: (token) => lifecycle.findByToken(token), onRefreshError: options.onRefreshError });
    const timeoutMs = options.startTimeoutMs ?? 5_000;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        reads.ready,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no tenant state from PostgreSQL within ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
    } catch (error) {
      reads.close();
      throw error;
    } finally {
      clearTimeout(timer);
    }
    return {
      ...reads,
      guard(read) {
        if (!reads.isLive()) throw new StoreError("unavailable", "PostgreSQL changes cannot be confirmed; refusing until they are");
        return read();
      },
    };
  }
  const store = opened.store;
  const tokenCache = createTokenCache({ find: (token) => lifecycle.findByToken(token) });
  // why: a change made through this process (the token API, or anything holding `store`) is seen by its next decision; other processes' within the cache's 1 s
  const stop = store.onTokensChanged((tokenIds) => tokenCache.evictTokenIds(tokenIds));
  const tenantState = createTenantStateCache({
    readAdministrativeState: () => store.tenantState.readAdministrativeState(),
    get administrativeStateVersion() {
      return store.administrativeStateVersion;
    },
  });
  return { tokens: tokenCache, tokenCache, tenantState, isLive: () => true, guard: (read) => read(), close: () => void stop() };
}
