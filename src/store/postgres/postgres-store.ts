/**
 * The fleet store: the store interfaces on PostgreSQL, shared by every
 * replica. Writes run in transactions at READ COMMITTED, serialized where the
 * lifecycle asks ({@link StoreTransaction.lock}) by transaction-scoped
 * advisory locks, which hold across processes and hosts; every change a
 * decision may depend on is announced on the change feed in the same
 * transaction.
 */
import { createHmac } from "node:crypto";
import type pg from "pg";
import type { TokenRecord } from "../../engine/types.js";
import type { WorkspaceRestrictionMode } from "../../engine/workspace-restriction-mode.js";
import { StoreError } from "../store-error.js";
import type {
  ActiveTokenFilter,
  AdministrativeState,
  AuditEntry,
  AuditFilter,
  AuditLog,
  LifecycleAuditRecord,
  Revocation,
  RotationMark,
  SecurityEventLog,
  Store,
  StoredToken,
  StoreTransaction,
  TenantStateRepository,
  TenantSuspension,
  TokenListFilter,
  TokenListing,
  TokenRepository,
  TokenUse,
  WebhookOutbox,
  WorkspaceRestriction,
} from "../store-interfaces.js";
import { workspaceKey } from "../store-interfaces.js";
import { ChangeFeed, notifyChange, type ChangeFeedOptions, type StoreChange } from "./change-feed.js";
import { migratePostgres, type PostgresMigrationResult } from "./migrations.js";
import { postgresSecurityEventLog } from "./postgres-security-events.js";
import { postgresSigningKeyStore } from "./postgres-signing-key-store.js";
import { postgresWebhookOutbox, postgresWebhookWriter } from "./postgres-webhooks.js";
import { createPostgresPool, inTransaction, redactPostgresUrl, transientPostgresError } from "./pool.js";
import {
  RECORD_COLUMNS,
  TOKEN_COLUMNS,
  tokenValues,
  toAuditRecord,
  toListing,
  toRecord,
  toTenantSuspension,
  toWorkspaceRestriction,
  type AuditRow,
  type TokenRow,
} from "./rows.js";

/** Options of {@link PostgresStore.open}. */
export interface PostgresStoreOptions {
  /** `postgres://…` URL of the database. */
  readonly url: string;
  /**
   * The server secret token hashes are keyed with. When given, the store
   * records a fingerprint of it on first use and refuses (kind `secret`) a
   * replica that brings another one: its tokens would never verify.
   */
  readonly secret?: Buffer;
  /**
   * Listen to the change feed (a dedicated connection): a server does, so that
   * other replicas' changes evict its caches; a one-shot CLI command need not.
   * Default `false`. `true` or feed options.
   */
  readonly changeFeed?: boolean | Omit<ChangeFeedOptions, "url">;
  /** Pool size; default 10. */
  readonly poolSize?: number;
  /** Connection and statement timeout, ms; default 5,000. */
  readonly timeoutMs?: number;
  /** Told about errors of idle pooled connections, for the log. */
  readonly onIdleError?: (error: Error) => void;
}

/** What the repositories query through: the pool (each call its own transaction) or one transaction's client. */
interface Queryable {
  query: pg.Pool["query"];
}

/** How often a transaction that lost a deadlock or serialization race is run again. */
const TRANSACTION_ATTEMPTS = 3;

/**
 * The PostgreSQL implementation of {@link Store}.
 *
 * @example
 * ```ts
 * const store = await PostgresStore.open({ url: "postgres://portcullis@db/portcullis", secret, changeFeed: true });
 * store.onTokensChanged((ids) => cache.evictTokenIds(ids));
 * ```
 */
export class PostgresStore implements Store {
  readonly tokens: TokenRepository;
  readonly audit: AuditLog;
  readonly tenantState: TenantStateRepository;
  readonly securityEvents: SecurityEventLog;
  readonly webhooks: WebhookOutbox;
  /** JWT signing keys, shared by the fleet; closed with the store. */
  readonly signingKeys: ReturnType<typeof postgresSigningKeyStore>;
  /** The change feed this replica listens to, or `null` when opened without one. */
  readonly feed: ChangeFeed | null;
  private readonly tokenListeners = new Set<(tokenIds: readonly string[]) => void>();
  private readonly administrativeListeners = new Set<() => void>();
  private readonly resetListeners = new Set<() => void>();
  private version = 0;
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;
  private lastQueryFailed = false;

  private constructor(
    private readonly pool: pg.Pool,
    feed: ChangeFeed | null,
    /** What migrations did when the store opened. */
    readonly migration: PostgresMigrationResult,
  ) {
    const tracked = trackFailures(pool, (failed) => (this.lastQueryFailed = failed));
    this.signingKeys = postgresSigningKeyStore(tracked);
    this.tokens = tokenRepository(tracked, pool);
    this.audit = auditLog(tracked);
    this.tenantState = tenantStateRepository(tracked);
    // why: a batch and the webhook events of the rows it creates commit together
    this.securityEvents = postgresSecurityEventLog(tracked, (work) => inTransaction(pool, work).catch((error: unknown) => Promise.reject(transientPostgresError(error) ?? error)));
    this.webhooks = postgresWebhookOutbox(tracked, (work) => inTransaction(pool, work).catch((error: unknown) => Promise.reject(transientPostgresError(error) ?? error)));
    this.feed = feed;
    feed?.subscribe((change) => this.heard(change));
  }

  /**
   * Connects, migrates (safe with several replicas at once; `too_new` for a
   * database of a newer build), checks the secret's fingerprint, and starts
   * the change feed when asked. An unreachable server fails with `unavailable`.
   */
  static async open(options: PostgresStoreOptions): Promise<PostgresStore> {
    const target = `\`${redactPostgresUrl(options.url)}\``;
    const pool = createPostgresPool({ url: options.url, max: options.poolSize, timeoutMs: options.timeoutMs, onIdleError: options.onIdleError });
    let feed: ChangeFeed | null = null;
    try {
      const migration = await migratePostgres(pool, target);
      if (options.secret) await checkSecret(pool, options.secret, target);
      if (options.changeFeed) {
        feed = ChangeFeed.start({ ...(options.changeFeed === true ? {} : options.changeFeed), url: options.url });
        await feed.whenLive(options.timeoutMs ?? 5_000);
      }
      return new PostgresStore(pool, feed, migration);
    } catch (error) {
      await feed?.close();
      await pool.end().catch(() => undefined);
      if (error instanceof StoreError) throw error;
      throw transientPostgresError(error) ?? new StoreError("unavailable", `cannot open the PostgreSQL store ${target}: ${(error as Error).message}`, { cause: error });
    }
  }

  get administrativeStateVersion(): number {
    return this.version;
  }

  /** With a change feed: whether it is live (changes of other replicas surely seen within 1 s). Without: whether the last query worked. */
  get available(): boolean {
    if (this.closed) return false;
    return this.feed ? this.feed.isLive() : !this.lastQueryFailed;
  }

  async transaction<T>(run: (tx: StoreTransaction) => Promise<T>): Promise<T> {
    const result = this.queue.then(() => this.runTransaction(run));
    this.queue = result.catch(() => undefined);
    return result;
  }

  onTokensChanged(listener: (tokenIds: readonly string[]) => void): () => void {
    this.tokenListeners.add(listener);
    return () => this.tokenListeners.delete(listener);
  }

  onAdministrativeStateChanged(listener: () => void): () => void {
    this.administrativeListeners.add(listener);
    return () => this.administrativeListeners.delete(listener);
  }

  /**
   * Tells `listener` when the change feed (re)connected: notifications may
   * have been missed while it was away, so every cache must be dropped.
   */
  onFeedReset(listener: () => void): () => void {
    this.resetListeners.add(listener);
    return () => this.resetListeners.delete(listener);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.feed?.close();
    await this.queue;
    await this.pool.end();
  }

  private async runTransaction<T>(run: (tx: StoreTransaction) => Promise<T>): Promise<T> {
    if (this.closed) throw new StoreError("unavailable", "the PostgreSQL store is closed");
    for (let attempt = 1; ; attempt++) {
      const changedIds: string[] = [];
      const createdIds: string[] = [];
      let administrative = false;
      try {
        const result = await inTransaction(this.pool, async (client) => {
          const tx: StoreTransaction = {
            tokens: tokenRepository(client, null, (id) => createdIds.push(id)),
            audit: auditLog(client),
            tenantState: tenantStateRepository(client),
            webhooks: postgresWebhookWriter(client),
            async lock(key) {
              // hashtextextended gives the 64-bit key; a collision only serializes two unrelated writes
              await client.query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", [key]);
            },
            tokensChanged(ids) {
              changedIds.push(...ids);
            },
            administrativeStateChanged() {
              administrative = true;
            },
          };
          const value = await run(tx);
          const changed = unique(changedIds);
          // why: NOTIFY inside the transaction is delivered exactly when it commits, never if it rolls back
          await notifyChange(client, { kind: "tokens", ids: changed });
          await notifyChange(client, { kind: "created", ids: unique(createdIds) });
          if (administrative) await notifyChange(client, { kind: "administrative" });
          return value;
        });
        this.lastQueryFailed = false;
        // This replica hears its own notifications too, a few ms later; telling listeners now keeps its own writes immediate.
        const changed = unique(changedIds);
        if (changed.length > 0) for (const listener of this.tokenListeners) listener(changed);
        if (administrative) this.administrativeChanged();
        return result;
      } catch (error) {
        if (attempt < TRANSACTION_ATTEMPTS && isRetryable(error)) continue;
        throw this.translate(error);
      }
    }
  }

  private heard(change: StoreChange): void {
    switch (change.kind) {
      case "tokens":
        for (const listener of this.tokenListeners) listener(change.ids);
        return;
      case "created":
        // why: caches keep no "unknown token" entries, so a new token evicts nothing; telling listeners would
        // only make token caches drop the reads in flight at that moment
        return;
      case "administrative":
        this.administrativeChanged();
        return;
      case "reset":
        for (const listener of this.resetListeners) listener();
        this.administrativeChanged();
        return;
    }
  }

  private administrativeChanged(): void {
    this.version++;
    for (const listener of this.administrativeListeners) listener();
  }

  private translate(error: unknown): unknown {
    if (error instanceof StoreError) return error;
    const transient = transientPostgresError(error);
    if (transient) {
      this.lastQueryFailed = true;
      return transient;
    }
    return error;
  }
}

/** Records, with the secret itself never leaving the process, which secret keyed this store's hashes. */
async function checkSecret(pool: pg.Pool, secret: Buffer, target: string): Promise<void> {
  const fingerprint = createHmac("sha256", secret).update("portcullis secret fingerprint v1").digest("hex");
  await pool.query("INSERT INTO portcullis_settings (name, value) VALUES ('secret_fingerprint', $1) ON CONFLICT (name) DO NOTHING", [fingerprint]);
  const { rows } = await pool.query<{ value: string }>("SELECT value FROM portcullis_settings WHERE name = 'secret_fingerprint'");
  if (rows[0]?.value !== fingerprint) {
    throw new StoreError(
      "secret",
      `the token secret of this process differs from the one the tokens in ${target} were hashed with; give every replica the same PORTCULLIS_TOKEN_SECRET`,
    );
  }
}

/**
 * Wraps the pool so that each query's outcome says whether PostgreSQL
 * answered, and transient errors come out as `unavailable` StoreErrors.
 */
function trackFailures(pool: pg.Pool, onOutcome: (failed: boolean) => void): Queryable {
  const query = (async (...args: Parameters<pg.Pool["query"]>) => {
    try {
      const result = await (pool.query as (...a: unknown[]) => Promise<unknown>)(...args);
      onOutcome(false);
      return result;
    } catch (error) {
      const transient = transientPostgresError(error);
      if (transient) {
        onOutcome(true);
        throw transient;
      }
      throw error;
    }
  }) as pg.Pool["query"];
  return { query };
}

/** `pool` is given outside a transaction, for the writes that need one of their own. */
function tokenRepository(db: Queryable, pool: pg.Pool | null, onInsert?: (id: string) => void): TokenRepository {
  return {
    async findByHash(hash: string): Promise<TokenRecord | undefined> {
      const { rows } = await db.query<TokenRow>({ name: "portcullis_find_by_hash", text: `SELECT ${RECORD_COLUMNS.join(", ")} FROM tokens WHERE hash = $1`, values: [hash] });
      return rows[0] === undefined ? undefined : toRecord(rows[0]);
    },
    async byId(id: string): Promise<TokenListing | undefined> {
      const { rows } = await db.query<TokenRow>("SELECT * FROM tokens WHERE id = $1", [id]);
      return rows[0] === undefined ? undefined : toListing(rows[0]);
    },
    async lineage(id: string): Promise<TokenListing[]> {
      const { rows } = await db.query<TokenRow>(
        "SELECT * FROM tokens WHERE lineage_id = (SELECT coalesce(lineage_id, id) FROM tokens WHERE id = $1) ORDER BY created_at, seq",
        [id],
      );
      return rows.map(toListing);
    },
    async list(filter: TokenListFilter): Promise<TokenListing[]> {
      const { rows } = await db.query<TokenRow>(
        `SELECT * FROM tokens
         WHERE ($1::text IS NULL OR tenant = $1) AND ($2::text IS NULL OR workspace = $2) AND ($3 OR revoked_at IS NULL)
         ORDER BY created_at, seq`,
        [filter.tenant ?? null, filter.workspace ?? null, filter.includeRevoked ?? false],
      );
      return rows.map(toListing);
    },
    async countActive(filter: ActiveTokenFilter, nowMs: number): Promise<number> {
      const { rows } = await db.query<{ n: number }>(
        `SELECT count(*) AS n FROM tokens
         WHERE tenant = $1 AND type = $2 AND ($3::text IS NULL OR creator = $3)
           AND revoked_at IS NULL AND successor_id IS NULL AND (expires_at IS NULL OR expires_at > $4)`,
        [filter.tenant, filter.type, filter.creator ?? null, nowMs],
      );
      return Number(rows[0]?.n ?? 0);
    },
    async insert(token: StoredToken): Promise<void> {
      const placeholders = TOKEN_COLUMNS.map((_, index) => `$${index + 1}`).join(", ");
      try {
        await db.query(`INSERT INTO tokens (${TOKEN_COLUMNS.join(", ")}) VALUES (${placeholders})`, tokenValues(token));
      } catch (error) {
        if ((error as { code?: string }).code === "23505") {
          throw new StoreError("conflict", `a token with id \`${token.id}\` or the same hash is already stored`, { cause: error });
        }
        throw error;
      }
      onInsert?.(token.id);
    },
    async revoke(id: string, revocation: Revocation): Promise<boolean> {
      const result = await db.query(
        "UPDATE tokens SET revoked_at = $2, revoked_by = $3, revoked_reason = $4 WHERE id = $1 AND revoked_at IS NULL",
        [id, revocation.atMs, revocation.by, revocation.reason],
      );
      return (result.rowCount ?? 0) > 0;
    },
    async markRotated(id: string, mark: RotationMark): Promise<void> {
      await db.query(
        `UPDATE tokens SET successor_id = $2, rotated_at = $3,
           overlap_ends_at = CASE WHEN overlap_ends_at IS NULL THEN $4 ELSE LEAST(overlap_ends_at, $4) END
         WHERE id = $1`,
        [id, mark.successorId, mark.rotatedAtMs, mark.overlapEndsAtMs],
      );
    },
    async capOverlaps(lineageId: string, endsAtMs: number, nowMs: number): Promise<void> {
      await db.query(
        "UPDATE tokens SET overlap_ends_at = LEAST(overlap_ends_at, $2) WHERE lineage_id = $1 AND overlap_ends_at IS NOT NULL AND overlap_ends_at > $3",
        [lineageId, endsAtMs, nowMs],
      );
    },
    async updateControls(id, controls): Promise<boolean> {
      const result = await db.query("UPDATE tokens SET controls = $2 WHERE id = $1", [id, JSON.stringify(controls ?? {})]);
      return (result.rowCount ?? 0) > 0;
    },
    async recordUse(batch: ReadonlyMap<string, TokenUse>): Promise<void> {
      if (batch.size === 0) return;
      // why: replicas flush the same hot tokens; locking rows in id order keeps two flushes from deadlocking
      const ids = [...batch.keys()].sort();
      const write = async (client: Queryable) => {
        await client.query("SELECT 1 FROM tokens WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE", [ids]);
        await client.query(
          `UPDATE tokens AS t
           SET last_used_at = GREATEST(coalesce(t.last_used_at, 0), u.last_used_at), use_count = t.use_count + u.count
           FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS u(id, last_used_at, count)
           WHERE t.id = u.id`,
          [ids, ids.map((id) => batch.get(id)!.lastUsedAtMs), ids.map((id) => batch.get(id)!.count)],
        );
      };
      if (pool) await inTransaction(pool, write).catch((error: unknown) => Promise.reject(transientPostgresError(error) ?? error));
      else await write(db);
    },
  };
}

function auditLog(db: Queryable): AuditLog {
  return {
    async append(entry: AuditEntry): Promise<void> {
      await db.query("INSERT INTO audit_events (at, event, actor, token_id, tenant, data) VALUES ($1, $2, $3, $4, $5, $6)", [
        entry.atMs,
        entry.event,
        entry.actor,
        entry.tokenId,
        entry.tenant,
        JSON.stringify(entry.data),
      ]);
    },
    async list(filter: AuditFilter): Promise<LifecycleAuditRecord[]> {
      const { rows } = await db.query<AuditRow>(
        "SELECT * FROM audit_events WHERE ($1::text IS NULL OR tenant = $1) AND ($3::text IS NULL OR event = $3) AND ($4::bigint IS NULL OR at >= $4) ORDER BY id DESC LIMIT $2",
        [filter.tenant ?? null, filter.limit, filter.event ?? null, filter.sinceMs ?? null],
      );
      return rows.map(toAuditRecord);
    },
  };
}

function tenantStateRepository(db: Queryable): TenantStateRepository {
  return {
    async suspendTenant(suspension: TenantSuspension): Promise<boolean> {
      const result = await db.query(
        "INSERT INTO tenants (tenant, suspended_at, suspended_by, reason) VALUES ($1, $2, $3, $4) ON CONFLICT (tenant) DO NOTHING",
        [suspension.tenant, suspension.suspendedAtMs, suspension.suspendedBy, suspension.reason],
      );
      return (result.rowCount ?? 0) > 0;
    },
    async resumeTenant(tenant: string): Promise<boolean> {
      const result = await db.query("DELETE FROM tenants WHERE tenant = $1", [tenant]);
      return (result.rowCount ?? 0) > 0;
    },
    async workspaceMode(tenant: string, workspace: string): Promise<WorkspaceRestrictionMode | undefined> {
      const { rows } = await db.query<{ mode: WorkspaceRestrictionMode }>("SELECT mode FROM workspaces WHERE tenant = $1 AND workspace = $2", [tenant, workspace]);
      return rows[0]?.mode;
    },
    async restrictWorkspace(restriction: WorkspaceRestriction): Promise<boolean> {
      // why: restricting again in another mode replaces the row; in the same mode it changes nothing
      const result = await db.query(
        `INSERT INTO workspaces (tenant, workspace, restricted_at, restricted_by, reason, mode) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (tenant, workspace) DO UPDATE SET restricted_at = excluded.restricted_at, restricted_by = excluded.restricted_by,
           reason = excluded.reason, mode = excluded.mode
         WHERE workspaces.mode <> excluded.mode`,
        [restriction.tenant, restriction.workspace, restriction.restrictedAtMs, restriction.restrictedBy, restriction.reason, restriction.mode],
      );
      return (result.rowCount ?? 0) > 0;
    },
    async unrestrictWorkspace(tenant: string, workspace: string): Promise<boolean> {
      const result = await db.query("DELETE FROM workspaces WHERE tenant = $1 AND workspace = $2", [tenant, workspace]);
      return (result.rowCount ?? 0) > 0;
    },
    async listSuspendedTenants(): Promise<TenantSuspension[]> {
      const { rows } = await db.query("SELECT * FROM tenants ORDER BY tenant");
      return rows.map(toTenantSuspension);
    },
    async listRestrictedWorkspaces(filter: { readonly tenant?: string }): Promise<WorkspaceRestriction[]> {
      const { rows } = await db.query("SELECT * FROM workspaces WHERE ($1::text IS NULL OR tenant = $1) ORDER BY tenant, workspace", [filter.tenant ?? null]);
      return rows.map(toWorkspaceRestriction);
    },
    async readAdministrativeState(): Promise<AdministrativeState> {
      // One statement, so the two sets come from one snapshot.
      const { rows } = await db.query<{ tenant: string; workspace: string | null; mode: WorkspaceRestrictionMode | null }>(
        "SELECT tenant, NULL AS workspace, NULL AS mode FROM tenants UNION ALL SELECT tenant, workspace, mode FROM workspaces",
      );
      const suspendedTenants = new Set<string>();
      const restrictedWorkspaces = new Map<string, WorkspaceRestrictionMode>();
      for (const row of rows) {
        if (row.workspace === null) suspendedTenants.add(row.tenant);
        else restrictedWorkspaces.set(workspaceKey(row.tenant, row.workspace), row.mode!);
      }
      return { suspendedTenants, restrictedWorkspaces };
    },
  };
}

function unique(ids: readonly string[]): string[] {
  return [...new Set(ids)];
}

/** Deadlock detected, or a serialization failure: running the transaction again may succeed. */
function isRetryable(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === "40P01" || code === "40001";
}
