/**
 * The narrow interfaces every token store implements (SQLite embedded,
 * PostgreSQL for a fleet): tokens, the lifecycle audit log and tenant and
 * workspace state, plus one way to run several of them in one transaction.
 *
 * They hold data, not rules: which token may be rotated, what a limit allows,
 * what an emergency revoke selects are decided by `src/lifecycle/` and handed
 * here as finished rows. Every method is asynchronous except where the
 * decision path reads (a token by hash, the administrative snapshot), which an
 * implementation may answer synchronously (SQLite does; a promise is accepted).
 *
 * Failures are {@link StoreError}s: `conflict` for a duplicate id or hash,
 * `unavailable` when a retry may succeed (a lock held elsewhere, a lost
 * connection, a missing file); anything else is a bug.
 *
 * Stability: this file is what both implementations build against. Change it
 * additively; a changed signature is named in its commit message.
 */
import type { AdministrativeEvent, AuditEvent, LifecycleEvent } from "../engine/codes.js";
import type { TokenControls, TokenRecord } from "../engine/types.js";
import type { WorkspaceRestrictionMode } from "../engine/workspace-restriction-mode.js";

export { StoreError, type StoreErrorKind } from "./store-error.js";

/** A value now (SQLite) or later (PostgreSQL): what the decision path's reads may return. */
export type MaybePromise<T> = T | Promise<T>;

/** A token as listed to operators: the record plus bookkeeping, never the hash or plaintext. */
export interface TokenListing extends TokenRecord {
  readonly prefix: string;
  readonly creator: string | null;
  readonly revokedBy: string | null;
  /** Last successful use as stamped by {@link TokenRepository.recordUse}; `null` if never used. */
  readonly lastUsedAtMs: number | null;
  readonly useCount: number;
  /** Id of the token this one was rotated from; `null` for the first of a lineage. */
  readonly predecessorId: string | null;
  /** When this token was rotated; `null` unless rotated. */
  readonly rotatedAtMs: number | null;
  /** Why it was revoked (`emergency: …` for an emergency revoke); `null` when not given or not revoked. */
  readonly revokedReason: string | null;
}

/**
 * A whole stored token: what {@link TokenRepository.insert} writes. `hash` is
 * the keyed hash of the plaintext (never the plaintext). Ordering of listings
 * is insertion order; implementations keep their own sequence for it.
 */
export interface StoredToken extends TokenListing {
  readonly hash: string;
}

/** One token's usage since the last flush, for {@link TokenRepository.recordUse}. */
export interface TokenUse {
  readonly lastUsedAtMs: number;
  readonly count: number;
}

/** Which tokens {@link TokenRepository.list} returns; every field given must match. */
export interface TokenListFilter {
  readonly tenant?: string;
  readonly workspace?: string;
  /** Include revoked tokens; default `false`. */
  readonly includeRevoked?: boolean;
}

/**
 * What the policy set's limits count: active tokens (unrevoked, unexpired at
 * `nowMs`, and the newest of their lineage, i.e. without a successor) of a
 * tenant and type, and of one creator when `creator` is given (not `null`).
 */
export interface ActiveTokenFilter {
  readonly tenant: string;
  readonly type: "user" | "service";
  readonly creator?: string | null;
}

/** The revocation {@link TokenRepository.revoke} writes. */
export interface Revocation {
  readonly atMs: number;
  readonly by: string;
  readonly reason: string | null;
}

/** What {@link TokenRepository.markRotated} writes on the predecessor. */
export interface RotationMark {
  readonly successorId: string;
  readonly rotatedAtMs: number;
  /** The predecessor's window end; an earlier end already set is kept (a window is capped, never extended). */
  readonly overlapEndsAtMs: number;
}

/**
 * Tokens: rows, look-ups and the few updates the lifecycle makes. Rows are
 * handed in finished (the lifecycle computed them); the repository does not
 * judge them.
 */
export interface TokenRepository {
  /**
   * The decision path's look-up, by keyed hash; revoked and expired tokens are
   * returned too (the engine decides). May answer synchronously. Never throws
   * on a damaged row: bad scope JSON reads as `[]` (no scopes), bad controls
   * as an empty IP allowlist (every request `unavailable`), both fail closed.
   */
  findByHash(hash: string): MaybePromise<TokenRecord | undefined>;
  /** A token by public id, with its bookkeeping; `undefined` for an unknown id. */
  byId(id: string): Promise<TokenListing | undefined>;
  /** Every token of the lineage `id` belongs to (revoked ones too), oldest first; `[]` for an unknown id. */
  lineage(id: string): Promise<TokenListing[]>;
  /** Tokens in insertion order (creation time, then insertion), filtered. */
  list(filter: TokenListFilter): Promise<TokenListing[]>;
  /** Counts active tokens as {@link ActiveTokenFilter} defines them. */
  countActive(filter: ActiveTokenFilter, nowMs: number): Promise<number>;
  /** Inserts a finished row; `conflict` {@link StoreError} when its id or hash exists. */
  insert(token: StoredToken): Promise<void>;
  /** Revokes `id` unless already revoked. @returns whether this call revoked it (`false` for unknown or revoked) */
  revoke(id: string, revocation: Revocation): Promise<boolean>;
  /** Records on `id` that it was rotated to `successorId`, capping its window end as {@link RotationMark} says. */
  markRotated(id: string, mark: RotationMark): Promise<void>;
  /**
   * Caps, never extends, the windows of the lineage's tokens still inside one
   * at `nowMs`: their `overlapEndsAtMs` becomes at most `endsAtMs`.
   */
  capOverlaps(lineageId: string, endsAtMs: number, nowMs: number): Promise<void>;
  /** Replaces a token's own controls (`{}` for none). @returns whether the token exists */
  updateControls(id: string, controls: TokenControls): Promise<boolean>;
  /**
   * Applies a batch of use stamps keyed by token id, in one transaction:
   * `lastUsedAtMs` only moves forward (batches flushed out of order are
   * harmless), counts add up, unknown ids are skipped.
   */
  recordUse(batch: ReadonlyMap<string, TokenUse>): Promise<void>;
}

/** A lifecycle or administrative audit row to append. */
export interface AuditEntry {
  readonly atMs: number;
  readonly event: LifecycleEvent | AdministrativeEvent;
  readonly actor: string;
  /** The token concerned; `null` for tenant and workspace events. */
  readonly tokenId: string | null;
  readonly tenant: string | null;
  /** Event details, stored as JSON. */
  readonly data: Readonly<Record<string, unknown>>;
}

/** An audit row as read back, with its id (ascending in append order). */
export interface LifecycleAuditRecord extends AuditEntry {
  readonly id: number;
}

/**
 * Denials of one token (or of no known token), one audit event and one UTC
 * minute, counted: what {@link SecurityEventLog} stores instead of a row per
 * denial, so that a flood of denials adds to a count rather than to the table.
 */
export interface SecurityEventCount {
  /** Start of the UTC minute, ms since the epoch (a multiple of 60,000). */
  readonly minuteMs: number;
  readonly event: AuditEvent;
  /** The token judged; `null` when none was identified (an unknown or malformed credential). */
  readonly tokenId: string | null;
  readonly tenant: string | null;
  readonly count: number;
  /** The latest denial counted in this row. */
  readonly lastAtMs: number;
}

/** Which rows {@link SecurityEventLog.list} returns. */
export interface SecurityEventFilter {
  readonly event?: string;
  /** Rows whose latest denial is at or after this time. */
  readonly sinceMs?: number;
  readonly tenant?: string;
  /** At most this many rows. */
  readonly limit: number;
}

/** Stored security events, aggregated per (token, event, minute). */
export interface SecurityEventLog {
  /**
   * Adds each count to its (token, event, minute) row, creating it when new,
   * in one transaction; counts of one key in `batch` are summed. A row's
   * tenant is the first one named; its `lastAtMs` the latest. A row created
   * by this call also enqueues its webhook event in the same transaction
   * (`securityWebhookEvent`: one per row, never one per denial).
   */
  record(batch: readonly SecurityEventCount[]): Promise<void>;
  /** Rows newest first (by minute, then latest denial). */
  list(filter: SecurityEventFilter): Promise<SecurityEventCount[]>;
  /**
   * Deletes at most `maxRows` rows whose minute started before `beforeMs`, in
   * one short statement, and returns how many it deleted; a caller with a
   * backlog calls again while it gets `maxRows` back. Safe to run from several
   * replicas at once: each row is deleted once.
   */
  prune(beforeMs: number, maxRows: number): Promise<number>;
}

/** Sums the counts of `batch` that share a (token, event, minute) key; first-seen order. */
export function mergeSecurityEventCounts(batch: readonly SecurityEventCount[]): SecurityEventCount[] {
  const merged = new Map<string, SecurityEventCount>();
  for (const row of batch) {
    const key = `${row.minuteMs}\u0000${row.event}\u0000${row.tokenId ?? ""}`;
    const seen = merged.get(key);
    merged.set(
      key,
      seen === undefined
        ? row
        : { ...seen, tenant: seen.tenant ?? row.tenant, count: seen.count + row.count, lastAtMs: Math.max(seen.lastAtMs, row.lastAtMs) },
    );
  }
  return [...merged.values()];
}

/**
 * An event waiting in the webhook outbox to be fanned out to the endpoints
 * that subscribe to it: its stable id (the receivers' idempotency key), its
 * name, when it happened and the JSON body every endpoint receives.
 */
export interface WebhookOutboxEvent {
  readonly id: string;
  readonly type: string;
  readonly atMs: number;
  readonly body: string;
}

/** Where a webhook delivery stands: waiting (or being tried), made (a 2xx answer), or given up. */
export type WebhookDeliveryStatus = "pending" | "delivered" | "failed";

/** One (event, endpoint) delivery as the outbox holds it. */
export interface WebhookDelivery {
  readonly eventId: string;
  readonly endpointId: string;
  readonly type: string;
  readonly body: string;
  readonly createdAtMs: number;
  readonly status: WebhookDeliveryStatus;
  /** Attempts made and finished (a delivery being tried now is not counted yet). */
  readonly attempts: number;
  /** When a pending delivery is due (or its lease ends, while one replica is trying it). */
  readonly nextAttemptAtMs: number;
  /** Why the last attempt failed (an HTTP status, a timeout, a refused connection); `null` when none did. */
  readonly lastError: string | null;
  readonly deliveredAtMs: number | null;
  /** When its status last changed or an attempt finished. */
  readonly updatedAtMs: number;
}

/** What one endpoint subscribes to, for {@link WebhookOutbox.fanOut}. */
export interface WebhookRoute {
  readonly id: string;
  readonly events: ReadonlySet<string>;
}

/** What {@link WebhookOutbox.fanOut} did. */
export interface WebhookFanOut {
  /** Waiting events taken (each deleted, whether it became deliveries or not). */
  readonly events: number;
  /** Deliveries created. */
  readonly deliveries: number;
  /** Deliveries not created because the outbox held `capacity` pending ones. */
  readonly dropped: number;
}

/** How an attempt of a claimed delivery ended, for {@link WebhookOutbox.complete}. */
export type WebhookAttemptOutcome =
  | { readonly kind: "delivered"; readonly atMs: number }
  | { readonly kind: "retry"; readonly atMs: number; readonly nextAttemptAtMs: number; readonly error: string }
  | { readonly kind: "failed"; readonly atMs: number; readonly error: string };

/** Which deliveries {@link WebhookOutbox.list} returns. */
export interface WebhookDeliveryFilter {
  readonly endpointId?: string;
  readonly status?: WebhookDeliveryStatus;
  readonly limit: number;
}

/** The part of the outbox a transaction writes: events enqueued with the change they record. */
export interface WebhookOutboxWriter {
  /** Adds an event to fan out; an id already waiting is ignored. Inside a transaction it commits or rolls back with it. */
  enqueue(event: WebhookOutboxEvent): Promise<void>;
}

/**
 * The webhook outbox: events enqueued in the transactions that make them
 * (lifecycle changes; security event rows when first written), fanned out
 * into one delivery per (event, endpoint), claimed under a lease by one
 * deliverer at a time (several replicas never try one delivery at once),
 * and completed. The rules (backoff, giving up) are the deliverer's.
 */
export interface WebhookOutbox extends WebhookOutboxWriter {
  /**
   * In one transaction: takes up to `limit` waiting events, oldest first,
   * creates a pending delivery (due at once) for each route subscribing to
   * its type unless `capacity` deliveries are pending already (those are
   * dropped and counted), and deletes the events. PostgreSQL: events taken
   * by another replica's fan-out are skipped (`FOR UPDATE SKIP LOCKED`).
   */
  fanOut(routes: readonly WebhookRoute[], options: { readonly nowMs: number; readonly capacity: number; readonly limit: number }): Promise<WebhookFanOut>;
  /**
   * Claims up to `limit` pending deliveries due at `nowMs` for the given
   * endpoints, oldest due first: each gets `leaseId` and is not due again
   * until `leaseUntilMs`, so no other claim takes it meanwhile (and a
   * deliverer that died holding it is replaced once the lease ends).
   */
  claim(options: { readonly endpointIds: readonly string[]; readonly nowMs: number; readonly leaseUntilMs: number; readonly leaseId: string; readonly limit: number }): Promise<WebhookDelivery[]>;
  /** Records an attempt's outcome on a delivery still held under `leaseId`; a lost lease changes nothing. */
  complete(eventId: string, endpointId: string, leaseId: string, outcome: WebhookAttemptOutcome): Promise<void>;
  /**
   * Gives up (status `failed`) pending deliveries created before
   * `createdBeforeMs` that no claim finishes (their endpoint was removed,
   * say), and deletes delivered and failed ones last updated before
   * `finishedBeforeMs`. @returns how many were given up
   */
  sweep(options: { readonly nowMs: number; readonly createdBeforeMs: number; readonly finishedBeforeMs: number }): Promise<number>;
  /** Deliveries newest first, filtered. */
  list(filter: WebhookDeliveryFilter): Promise<WebhookDelivery[]>;
  /** Pending deliveries and events still to fan out, for the queue depth gauge. */
  depth(): Promise<{ readonly pending: number; readonly waitingEvents: number }>;
}

/** Which audit rows {@link AuditLog.list} returns. */
export interface AuditFilter {
  readonly tenant?: string;
  /** Only rows of this event. */
  readonly event?: string;
  /** Only rows at or after this time (ms since the epoch). */
  readonly sinceMs?: number;
  /** At most this many rows; the lifecycle checks its range (1 to 10,000) before asking. */
  readonly limit: number;
}

/** The lifecycle audit trail: append-only, read newest first. */
export interface AuditLog {
  /** Appends one row; inside a transaction it commits or rolls back with the change it records. */
  append(entry: AuditEntry): Promise<void>;
  /** The newest `limit` rows (of `tenant` when given), newest first. A payload that is not a JSON object reads as `{}`. */
  list(filter: AuditFilter): Promise<LifecycleAuditRecord[]>;
}

/** A suspended tenant. */
export interface TenantSuspension {
  readonly tenant: string;
  readonly suspendedAtMs: number;
  readonly suspendedBy: string;
  readonly reason: string | null;
}

/** A restricted workspace. */
export interface WorkspaceRestriction {
  readonly tenant: string;
  readonly workspace: string;
  readonly restrictedAtMs: number;
  readonly restrictedBy: string;
  readonly reason: string | null;
  /** What the restriction refuses; rows from before modes existed are `writes`. */
  readonly mode: WorkspaceRestrictionMode;
}

/**
 * Every suspended tenant and restricted workspace at one moment, for the
 * service's cache; workspaces are keyed `tenant/workspace` ({@link workspaceKey}).
 */
export interface AdministrativeState {
  readonly suspendedTenants: ReadonlySet<string>;
  /** The mode of each restricted workspace. */
  readonly restrictedWorkspaces: ReadonlyMap<string, WorkspaceRestrictionMode>;
}

/** Key of a workspace in {@link AdministrativeState.restrictedWorkspaces}. */
export function workspaceKey(tenant: string, workspace: string): string {
  return `${tenant}/${workspace}`;
}

/**
 * Tenant suspension and workspace restriction. Only rows of currently paused
 * tenants and workspaces exist; lifting one deletes its row (the audit trail
 * keeps the history).
 */
export interface TenantStateRepository {
  /** Suspends `tenant` unless it already is. @returns whether this call suspended it */
  suspendTenant(suspension: TenantSuspension): Promise<boolean>;
  /** @returns whether the tenant was suspended */
  resumeTenant(tenant: string): Promise<boolean>;
  /** The workspace's current mode, or `undefined` when it is not restricted. */
  workspaceMode(tenant: string, workspace: string): Promise<WorkspaceRestrictionMode | undefined>;
  /**
   * Restricts a workspace; restricting again in the same mode changes nothing,
   * in another mode replaces mode, reason, time and actor.
   * @returns whether this call changed the workspace's restriction
   */
  restrictWorkspace(restriction: WorkspaceRestriction): Promise<boolean>;
  /** @returns whether the workspace was restricted */
  unrestrictWorkspace(tenant: string, workspace: string): Promise<boolean>;
  /** Suspended tenants, by name. */
  listSuspendedTenants(): Promise<TenantSuspension[]>;
  /** Restricted workspaces (of one tenant when given), by tenant then workspace. */
  listRestrictedWorkspaces(filter: { readonly tenant?: string }): Promise<WorkspaceRestriction[]>;
  /** The whole snapshot, for the decision path's cache; may answer synchronously. */
  readAdministrativeState(): MaybePromise<AdministrativeState>;
}

/**
 * The repositories of one transaction, plus what it tells the world after
 * commit. Nothing written through them is visible to other connections before
 * the transaction commits, and nothing is written at all if it rolls back.
 */
export interface StoreTransaction {
  readonly tokens: TokenRepository;
  readonly audit: AuditLog;
  readonly tenantState: TenantStateRepository;
  /** The webhook outbox: lifecycle events enqueued here commit or roll back with the change they record. */
  readonly webhooks: WebhookOutboxWriter;
  /**
   * Serializes this transaction, until it ends, with every other transaction
   * (in any process or replica) that locks the same `key`; call it before the
   * reads a write depends on. The lifecycle locks `tenant:<name>` before
   * counting a limit and inserting, and `lineage:<id>` before judging and
   * writing a rotation or revocation, so that two creations at the cap or two
   * rotations of one token cannot both succeed.
   *
   * SQLite: a no-op, because every transaction is `BEGIN IMMEDIATE` (one
   * writer per database file, across processes). PostgreSQL: must take
   * `pg_advisory_xact_lock` on a 64-bit hash of `key` (released at commit or
   * rollback), so that READ COMMITTED reads made after it see every commit of
   * the transactions it waited for.
   */
  lock(key: string): Promise<void>;
  /**
   * Names tokens whose records this transaction changed; after commit (never
   * on rollback) the store tells its {@link Store.onTokensChanged} listeners,
   * in every process sharing the store (PostgreSQL: NOTIFY, which is delivered
   * at commit), ids deduplicated in first-named order.
   */
  tokensChanged(ids: readonly string[]): void;
  /** Says tenant or workspace state changed; after commit the store tells its listeners and bumps its version. */
  administrativeStateChanged(): void;
}

/**
 * A token store: its repositories outside any transaction (each call commits
 * on its own), transactions, change notifications and lifetime.
 *
 * @example
 * ```ts
 * const revoked = await store.transaction(async (tx) => {
 *   await tx.lock(`lineage:${lineageId}`);
 *   const changed = await tx.tokens.revoke(id, { atMs, by: actor, reason: null });
 *   if (changed) { await tx.audit.append(entry); tx.tokensChanged([id]); }
 *   return changed;
 * });
 * ```
 */
export interface Store {
  readonly tokens: TokenRepository;
  readonly audit: AuditLog;
  readonly tenantState: TenantStateRepository;
  /** Aggregated security events (denials); not part of transactions, written in batches off the decision path. */
  readonly securityEvents: SecurityEventLog;
  /** The webhook outbox, read and worked by the deliverer; each call commits on its own. */
  readonly webhooks: WebhookOutbox;
  /**
   * Runs `run` in one transaction: committed when its promise resolves, rolled
   * back when it rejects (the rejection is passed on). Transactions of one
   * store object run one at a time, in call order. `run` may be called again
   * after a transient failure, so it must do nothing but store work.
   *
   * SQLite: `BEGIN IMMEDIATE` on the store's one connection; `run` must await
   * only this transaction's repositories (the decision path's synchronous
   * reads share the connection). PostgreSQL: a pooled client held for the
   * transaction, `BEGIN` at READ COMMITTED plus {@link StoreTransaction.lock}.
   */
  transaction<T>(run: (tx: StoreTransaction) => Promise<T>): Promise<T>;
  /**
   * Tells `listener` the ids named by {@link StoreTransaction.tokensChanged},
   * after the commit, so that a cache can forget them at once. SQLite tells
   * only listeners of this store object (other processes are bounded by the
   * cache's age); PostgreSQL tells every replica. Returns a function that
   * removes the listener.
   */
  onTokensChanged(listener: (tokenIds: readonly string[]) => void): () => void;
  /** Like {@link onTokensChanged}, for {@link StoreTransaction.administrativeStateChanged}. */
  onAdministrativeStateChanged(listener: () => void): () => void;
  /**
   * Moves whenever administrative state changed through this store (or, for
   * PostgreSQL, was announced by another replica): a cache that sees it move
   * knows its snapshot is stale without asking the database.
   */
  readonly administrativeStateVersion: number;
  /** Whether the store can serve now: `false` while the SQLite file is missing or PostgreSQL is unreachable. */
  readonly available: boolean;
  /** Releases connections; later calls fail. Safe to call twice. */
  close(): Promise<void>;
}
