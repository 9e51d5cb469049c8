/**
 * The embedded token store as one object: a {@link SqliteStore} opened from a
 * data folder with the {@link TokenLifecycle} over it. For the CLI and tests,
 * which open a folder and run a few operations; the server composes the two
 * pieces itself (`src/main.ts`). No SQL and no lifecycle rule lives here.
 */
import type { TokenRecord } from "../engine/types.js";
import { createTokenLifecycle, type TokenLifecycle } from "../lifecycle/token-lifecycle.js";
import { SqliteStore, type SqliteStoreOptions, type StoreFileCheck } from "./sqlite/sqlite-store.js";
import type { AdministrativeState } from "./store-interfaces.js";
import { hashToken } from "../token/hash.js";

// Re-exported so callers that open a store find its types and errors with one import.
export { StoreError, type StoreErrorKind } from "./store-error.js";
export {
  workspaceKey,
  type AdministrativeState,
  type LifecycleAuditRecord,
  type TenantSuspension,
  type TokenListing,
  type TokenUse,
  type WorkspaceRestriction,
} from "./store-interfaces.js";
export { DATABASE_FILE_NAME, type StoreFileCheck } from "./sqlite/sqlite-store.js";
export type { CreateTokenSpec, TokenLimits } from "../lifecycle/create-spec.js";
export type { EmergencyTarget } from "../lifecycle/emergency.js";
export type { RotateOptions } from "../lifecycle/token-lifecycle.js";
export { checkTokenControls } from "../lifecycle/token-controls.js";

/** Options of {@link TokenStore.open}. */
export interface TokenStoreOptions extends SqliteStoreOptions {
  /** Clock for `created_at`, `revoked_at` and audit rows, in ms; defaults to `Date.now`. */
  readonly now?: () => number;
}

/**
 * The lifecycle operations (asynchronous) plus what the SQLite store answers
 * at once: the decision path's look-ups, the administrative snapshot, the
 * file check.
 */
export type TokenStore = Omit<TokenLifecycle, "findByToken"> & {
  /** Looks a presented token up by its keyed hash; revoked and expired tokens too (the engine decides). */
  findByToken(token: string): TokenRecord | undefined;
  /** Looks a token up by an already computed hash. */
  findByHash(hash: string): TokenRecord | undefined;
  readAdministrativeState(): AdministrativeState;
  readonly administrativeStateVersion: number;
  readonly available: boolean;
  checkFile(): StoreFileCheck;
  /** Tells `listener` the ids of tokens changed through this object, after the commit; returns a remover. */
  onTokensChanged(listener: (tokenIds: readonly string[]) => void): () => void;
  /** The SQLite store underneath, for composing other pieces over it. */
  readonly sqlite: SqliteStore;
  /**
   * Closes the database: at once when no transaction is queued, else once the
   * queued ones (the usage recorder's last batch) have ended. Safe to call twice.
   */
  close(): Promise<void>;
};

/**
 * Opens (creating when needed) the store in `options.dataDir`; see
 * {@link SqliteStore.open} for what it refuses.
 *
 * @example
 * ```ts
 * const store = TokenStore.open({ dataDir: "/var/lib/portcullis" });
 * const { token, record } = await store.create({
 *   tenant: "acme", workspace: "main", environment: "live", prefix: "sk_live_",
 *   type: "service", name: "billing sync", role: "billing_reader",
 * });
 * store.findByToken(token)?.id === record.id; // true
 * store.close();
 * ```
 */
export const TokenStore = {
  open(options: TokenStoreOptions): TokenStore {
    const sqlite = SqliteStore.open(options);
    const lifecycle = createTokenLifecycle({ store: sqlite, secret: sqlite.secret, now: options.now ?? Date.now });
    return {
      ...lifecycle,
      findByToken: (token) => sqlite.tokens.findByHash(hashToken(sqlite.secret, token)),
      findByHash: (hash) => sqlite.tokens.findByHash(hash),
      readAdministrativeState: () => sqlite.tenantState.readAdministrativeState(),
      get administrativeStateVersion() {
        return sqlite.administrativeStateVersion;
      },
      get available() {
        return sqlite.available;
      },
      checkFile: () => sqlite.checkFile(),
      onTokensChanged: (listener) => sqlite.onTokensChanged(listener),
      sqlite,
      close: () => sqlite.close(),
    };
  },
};
