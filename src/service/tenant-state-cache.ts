/**
 * A snapshot of suspended tenants and restricted workspaces in front of the
 * store, so that a decision never queries SQLite for them while the snapshot
 * is fresh.
 *
 * The snapshot is trusted for at most `ttlMs` (default 1 s): the bound on how
 * long a change made by another process sharing the store file (the CLI) can
 * go unseen. A change made through this node's store object bumps the store's
 * `administrativeStateVersion`, which the cache compares on every call (one
 * integer), so the very next decision on this node sees it.
 */
import type { WorkspaceRestrictionFact } from "../engine/workspace-restriction-mode.js";
import { workspaceKey, type AdministrativeState } from "../store/store-interfaces.js";

/** Reads tenant suspension and workspace restriction. */
export interface TenantStateLookup {
  tenantSuspended(tenant: string): boolean;
  /** The workspace's restriction mode, or `false` when it is not restricted. */
  workspaceRestricted(tenant: string, workspace: string): WorkspaceRestrictionFact;
}

/** What the cache needs of the store; {@link TokenStore} provides it. */
export interface AdministrativeStateSource {
  readAdministrativeState(): AdministrativeState;
  readonly administrativeStateVersion: number;
}

export interface TenantStateCache extends TenantStateLookup {
  /** Drops the snapshot; the next look-up reads the store. */
  invalidate(): void;
}

export interface TenantStateCacheOptions {
  /** How long a snapshot is trusted, milliseconds; default 1,000. */
  readonly ttlMs?: number;
  /** Monotonic clock in ms for the TTL; default `performance.now`. */
  readonly clock?: () => number;
}

/** Wraps the store's administrative state in a snapshot bounded in age. */
export function createTenantStateCache(store: AdministrativeStateSource, options: TenantStateCacheOptions = {}): TenantStateCache {
  const ttlMs = options.ttlMs ?? 1_000;
  const clock = options.clock ?? (() => performance.now());
  let snapshot: AdministrativeState | null = null;
  let readAt = 0;
  let version = -1;
  const current = (): AdministrativeState => {
    const now = clock();
    if (snapshot === null || version !== store.administrativeStateVersion || now - readAt >= ttlMs) {
      // why: read the version first, so a change racing the read is seen next time
      version = store.administrativeStateVersion;
      snapshot = store.readAdministrativeState();
      readAt = now;
    }
    return snapshot;
  };
  return {
    tenantSuspended: (tenant) => current().suspendedTenants.has(tenant),
    workspaceRestricted: (tenant, workspace) => current().restrictedWorkspaces.get(workspaceKey(tenant, workspace)) ?? false,
    invalidate() {
      snapshot = null;
    },
  };
}
