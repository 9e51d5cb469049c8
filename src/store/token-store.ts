/**
 * The embedded SQLite token store: the only module that opens the database.
 * Tokens are kept as keyed hashes; the plaintext is returned once by
 * {@link TokenStore.create} and never written or logged.
 */
import { accessSync, chmodSync, closeSync, constants as fsConstants, existsSync, mkdirSync, openSync, statSync } from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import type { AdministrativeEvent, LifecycleEvent } from "../engine/codes.js";
import { isWorkspaceRestrictionMode, WORKSPACE_RESTRICTION_MODES, type WorkspaceRestrictionMode } from "../engine/workspace-restriction-mode.js";
import type { TokenControls, TokenRecord } from "../engine/types.js";
import { compileControls } from "../policy/controls.js";
import { validateControlsShape } from "../policy/schema.js";
import { generateToken, newTokenId } from "../token/format.js";
import { constantTimeEqual, hashToken } from "../token/hash.js";
import { MIGRATIONS } from "./migrations.js";
import { resolveSecret } from "./resolve-secret.js";
import { StoreError } from "./store-error.js";
import {
  prepareTenantStatements,
  toTenantSuspension,
  toWorkspaceRestriction,
  type AdministrativeState,
  type TenantSuspension,
  type WorkspaceRestriction,
} from "./tenant-state.js";

// Re-exported so callers that open a store can catch its errors with one import.
export { StoreError, type StoreErrorKind } from "./store-error.js";
export { workspaceKey, type AdministrativeState, type TenantSuspension, type WorkspaceRestriction } from "./tenant-state.js";

/** Name of the database file inside the data folder. */
export const DATABASE_FILE_NAME = "portcullis.db";

/** Options of {@link TokenStore.open}. */
export interface TokenStoreOptions {
  /** Folder for `portcullis.db` and `secret.key`; created (recursively) when missing. */
  readonly dataDir: string;
  /** Key for token hashes; defaults to {@link resolveSecret} over `dataDir` and `process.env`. */
  readonly secret?: Buffer;
  /** Clock for `created_at`, `revoked_at` and audit rows, in ms; defaults to `Date.now`. */
  readonly now?: () => number;
  /**
   * How long a write waits for another process's write lock, ms; default
   * 5,000 (the CLI may wait). The server passes 0: its writes run on the
   * event loop, so a wait there would stall every decision; a busy write
   * fails at once with `unavailable` and is retried later, off the loop.
   */
  readonly busyTimeoutMs?: number;
  /**
   * Refuse, with a `missing` {@link StoreError}, when the folder or its
   * `portcullis.db` does not exist yet, instead of creating them: for
   * commands that only read, where a mistyped `--data-dir` must not answer
   * with an empty new store. Default `false`.
   */
  readonly mustExist?: boolean;
  /**
   * Told when this open created something new: the database, or the server
   * secret file (`secretFile`), so that the caller can announce it (tokens
   * hashed with one secret only verify with it).
   */
  readonly onCreated?: (created: { readonly databaseFile: string | null; readonly secretFile: string | null }) => void;
}

/** What {@link TokenStore.checkFile} found. */
export type StoreFileCheck =
  /** The open database is still the file at `portcullis.db`. */
  | "unchanged"
  /** Another file took its place (a restored backup); the store now reads that one. */
  | "reopened"
  /** No usable database at `portcullis.db`: every call fails with `unavailable` until one returns. */
  | "missing";

/** The open database and what was prepared on it; replaced as a whole when the file is. */
interface Connection {
  readonly db: Database.Database;
  readonly statements: ReturnType<typeof prepareStatements>;
  readonly tenantStatements: ReturnType<typeof prepareTenantStatements>;
  /** Device and inode of the file when it was opened, to notice a replacement. */
  readonly identity: string;
}

/** What {@link TokenStore.create} needs. Role and scope names must already be checked against the policy. */
export interface CreateTokenSpec {
  readonly tenant: string;
  readonly workspace: string;
  /** Environment the prefix names; the caller maps one to the other from the policy. */
  readonly environment: string;
  readonly prefix: string;
  readonly type: "user" | "service";
  readonly name: string;
  readonly role?: string | null;
  readonly keyLevel?: string | null;
  /** Explicit scopes; when given, at least one. A token needs a role, scopes or both. */
  readonly scopes?: readonly string[] | null;
  /** Who the token acts for; required for user tokens. */
  readonly creator?: string | null;
  readonly creatorRole?: string | null;
  /** `null` or absent for a token that never expires; else in the future. */
  readonly expiresAtMs?: number | null;
  /** Who is issuing it, for the audit trail; defaults to `creator`, then `system`. */
  readonly actor?: string;
  /** Label policy `controls` entries can select on (`selector.service`); `null` or absent for none. */
  readonly service?: string | null;
  /** The token's own controls; checked with {@link checkTokenControls}. Absent or `null` for none. */
  readonly controls?: TokenControls | null;
  /**
   * The policy set's caps, checked inside the insert's transaction so that two
   * concurrent creations cannot both take the last place. Absent: no caps.
   */
  readonly limits?: TokenLimits | null;
}

/**
 * Caps on active tokens, from the policy set's `tokens.limits`. A token is
 * active while it is unrevoked, unexpired and the newest of its lineage (a
 * rotation replaces a token; it does not add one). `null` means no cap.
 */
export interface TokenLimits {
  /** Active user tokens one creator may hold in a tenant. */
  readonly userTokensPerCreator: number | null;
  /** Active service tokens one tenant may hold. */
  readonly serviceTokensPerTenant: number | null;
}

/** Options of {@link TokenStore.rotate}. */
export interface RotateOptions {
  /** How long the predecessor stays valid, ms; 0 ends it at once. The caller checks it against the policy set's maximum. */
  readonly overlapMs: number;
  /** Who rotates, for the audit trail. */
  readonly actor: string;
  /** The instant of the rotation; defaults to the store's clock. */
  readonly nowMs?: number;
}

/** What {@link TokenStore.emergencyRevoke} revokes: a token's whole lineage, or explicit ids. */
export type EmergencyTarget = { readonly lineageOf: string } | { readonly ids: readonly string[] };

/** A token as listed to operators: the record plus bookkeeping, never the hash or plaintext. */
export interface TokenListing extends TokenRecord {
  readonly prefix: string;
  readonly creator: string | null;
  readonly revokedBy: string | null;
  /** Last successful use as stamped by {@link TokenStore.recordUse}; `null` if never used. */
  readonly lastUsedAtMs: number | null;
  readonly useCount: number;
  /** Id of the token this one was rotated from; `null` for the first of a lineage. */
  readonly predecessorId: string | null;
  /** When this token was rotated; `null` unless rotated. */
  readonly rotatedAtMs: number | null;
  /** Why it was revoked (`emergency: …` for an emergency revoke); `null` when not given or not revoked. */
  readonly revokedReason: string | null;
}

/** One token's usage since the last flush, for {@link TokenStore.recordUse}. */
export interface TokenUse {
  readonly lastUsedAtMs: number;
  readonly count: number;
}

/** A token lifecycle audit row. */
export interface LifecycleAuditRecord {
  readonly id: number;
  readonly atMs: number;
  readonly event: LifecycleEvent | AdministrativeEvent;
  readonly actor: string;
  readonly tokenId: string | null;
  readonly tenant: string | null;
  readonly data: Readonly<Record<string, unknown>>;
}

/** Snake-case row of `tokens`, as SQLite returns it. */
interface TokenRow {
  id: string;
  hash: string;
  prefix: string;
  tenant: string;
  workspace: string;
  environment: string;
  type: "user" | "service";
  name: string;
  role: string | null;
  key_level: string | null;
  scopes: string | null;
  creator: string | null;
  creator_role: string | null;
  created_at: number;
  expires_at: number | null;
  revoked_at: number | null;
  revoked_by: string | null;
  last_used_at: number | null;
  use_count: number;
  service: string | null;
  controls: string;
  lineage_id: string | null;
  predecessor_id: string | null;
  successor_id: string | null;
  rotated_at: number | null;
  overlap_ends_at: number | null;
  revoked_reason: string | null;
}

interface AuditRow {
  id: number;
  at: number;
  event: LifecycleEvent | AdministrativeEvent;
  actor: string;
  token_id: string | null;
  tenant: string | null;
  data: string;
}

const DEFAULT_AUDIT_LIMIT = 100;
// Tenant, workspace and service names travel in upstream headers and logs, so they stay printable and short.
const IDENTIFIER = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
const MAX_AUDIT_LIMIT = 10_000;

/**
 * The token store: one SQLite database in WAL mode, prepared statements built
 * once, every lifecycle write paired with its audit row in one transaction.
 * Synchronous, like better-sqlite3; a look-up is one primary-key read (tokens are keyed by hash).
 *
 * @example
 * ```ts
 * const store = TokenStore.open({ dataDir: "/var/lib/portcullis" });
 * const { token, record } = store.create({
 *   tenant: "acme", workspace: "main", environment: "live", prefix: "sk_live_",
 *   type: "service", name: "billing sync", role: "billing_reader",
 * });
 * store.findByToken(token)?.id === record.id; // true
 * store.close();
 * ```
 */
export class TokenStore {
  private connection: Connection | null;
  private administrativeVersion = 0;
  private readonly tokenListeners = new Set<(tokenIds: readonly string[]) => void>();
  private closed = false;

  private constructor(
    connection: Connection,
    private readonly file: string,
    private readonly secret: Buffer,
    private readonly now: () => number,
    private readonly busyTimeoutMs: number,
  ) {
    this.connection = connection;
  }

  private get live(): Connection {
    if (this.connection === null) {
      throw new StoreError("unavailable", `the token store \`${this.file}\` is missing or unreadable; restore it`);
    }
    return this.connection;
  }

  private get db(): Database.Database {
    return this.live.db;
  }

  private get statements(): ReturnType<typeof prepareStatements> {
    return this.live.statements;
  }

  private get tenantStatements(): ReturnType<typeof prepareTenantStatements> {
    return this.live.tenantStatements;
  }

  /** Whether a database is open; `false` after {@link checkFile} found none. */
  get available(): boolean {
    return this.connection !== null;
  }

  /**
   * Compares the file at `portcullis.db` with the one this store has open
   * (device and inode), so that a file moved over it (a restored backup) or a
   * deleted one is noticed: a replaced file is opened in place of the old one
   * (migrated if older), and a missing or unreadable one leaves the store
   * failing every call with `unavailable` until a good file is back. A stat
   * and no SQLite work when nothing changed: the server calls it a few times a
   * second. The secret stays the one resolved at open.
   */
  checkFile(): StoreFileCheck {
    if (this.closed) return "missing";
    const identity = fileIdentity(this.file);
    if (identity !== null && identity === this.connection?.identity) return "unchanged";
    const old = this.connection;
    this.connection = null;
    this.administrativeVersion++;
    if (old !== null) retireConnection(old);
    if (identity === null) return "missing";
    try {
      this.connection = openConnection(this.file, this.busyTimeoutMs, true);
    } catch {
      // A half-copied or foreign file: stay unavailable and look again on the next check.
      return "missing";
    }
    return "reopened";
  }

  /**
   * Opens (creating when needed) the store in `options.dataDir` and brings its
   * schema up to date.
   *
   * @throws {@link StoreError}: `unwritable` when the folder or file cannot be
   * created or written, `corrupt` when `portcullis.db` is not a database or
   * cannot be migrated, `too_new` when a newer build wrote it, `secret` for a
   * bad server secret
   */
  static open(options: TokenStoreOptions): TokenStore {
    const dir = path.resolve(options.dataDir);
    const file = path.join(dir, DATABASE_FILE_NAME);
    if (options.mustExist === true && !existsSync(file)) {
      throw new StoreError("missing", `no token store at \`${dir}\` (no ${DATABASE_FILE_NAME}); check --data-dir, or create one with \`portcullis serve\` or \`portcullis tokens create\``);
    }
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      accessSync(dir, fsConstants.W_OK);
    } catch (error) {
      throw new StoreError("unwritable", `data folder \`${dir}\` cannot be created or written: ${describe(error)}`, {
        cause: error,
      });
    }
    let secretFile: string | null = null;
    const secret = options.secret ?? resolveSecret(dir, process.env, (created) => (secretFile = created));
    const databaseFile = createPrivateFile(file) ? file : null;
    const connection = openConnection(file, busyTimeoutOf(options), false);
    if (databaseFile !== null || secretFile !== null) options.onCreated?.({ databaseFile, secretFile });
    return new TokenStore(connection, file, secret, options.now ?? Date.now, busyTimeoutOf(options));
  }

  /**
   * Issues a token: validates `spec`, stores its hash and writes the
   * `api_token.created` audit row in one transaction.
   *
   * @returns the plaintext `token`, to show once, and its `record`
   * @throws {@link StoreError} of kind `invalid` for bad input
   */
  create(spec: CreateTokenSpec): { token: string; record: TokenRecord } {
    const nowMs = this.now();
    validateSpec(spec, nowMs);
    const token = generateToken(spec.prefix);
    const id = newTokenId();
    const row: TokenRow = {
      id,
      hash: hashToken(this.secret, token),
      prefix: spec.prefix,
      tenant: spec.tenant,
      workspace: spec.workspace,
      environment: spec.environment,
      type: spec.type,
      name: spec.name,
      role: spec.role ?? null,
      key_level: spec.keyLevel ?? null,
      scopes: spec.scopes == null ? null : JSON.stringify(spec.scopes),
      creator: spec.creator ?? null,
      creator_role: spec.creatorRole ?? null,
      created_at: nowMs,
      expires_at: spec.expiresAtMs ?? null,
      revoked_at: null,
      revoked_by: null,
      last_used_at: null,
      use_count: 0,
      service: spec.service ?? null,
      controls: JSON.stringify(spec.controls ?? {}),
      lineage_id: id,
      predecessor_id: null,
      successor_id: null,
      rotated_at: null,
      overlap_ends_at: null,
      revoked_reason: null,
    };
    const record = toRecord(row);
    const data = {
      name: row.name,
      type: row.type,
      prefix: row.prefix,
      workspace: row.workspace,
      environment: row.environment,
      role: row.role,
      keyLevel: row.key_level,
      scopes: record.scopes,
      expiresAtMs: row.expires_at,
      service: row.service,
      controls: record.controls,
    };
    try {
      // Immediate: the limit count and the insert must see one state, also across processes.
      this.db.transaction(() => {
        if (spec.limits != null) this.checkLimits(spec, spec.limits, nowMs);
        this.statements.insertToken.run(row);
        this.audit("api_token.created", spec.actor ?? spec.creator ?? "system", row, data, nowMs);
      }).immediate();
    } catch (error) {
      if (error instanceof StoreError) throw error;
      if (sqliteCode(error)?.startsWith("SQLITE_CONSTRAINT")) {
        // Only a random id or hash collision can get here, which is astronomically rare.
        throw new StoreError("conflict", `token id \`${row.id}\` or its hash already exists`, { cause: error });
      }
      throw error;
    }
    // why: a cache that remembers unknown tokens must forget them once one becomes known
    this.notifying([id], () => undefined);
    return { token, record };
  }

  /**
   * Looks a presented token up by its keyed hash: one read on the unique hash
   * index. Revoked and expired tokens are returned too; the engine decides.
   * Never throws on a damaged row: bad scope JSON grants no scopes.
   */
  findByToken(token: string): TokenRecord | undefined {
    const hash = hashToken(this.secret, token);
    const columns = this.statements.recordByHash.get(hash) as RecordColumns | undefined;
    // The index look-up already matched; DESIGN.md asks for a constant-time
    // comparison of hashes, and this one costs nothing next to the HMAC.
    if (columns === undefined || !constantTimeEqual(columns[0], hash)) return undefined;
    return recordFromColumns(columns);
  }

  /** Looks a token up by an already computed hash (e.g. from a cache key). */
  findByHash(hash: string): TokenRecord | undefined {
    const columns = this.statements.recordByHash.get(hash) as RecordColumns | undefined;
    return columns === undefined ? undefined : recordFromColumns(columns);
  }

  /** Looks a token up by its public id. */
  get(id: string): TokenRecord | undefined {
    const row = this.statements.byId.get(id) as TokenRow | undefined;
    return row === undefined ? undefined : toRecord(row);
  }

  /**
   * Tells `listener` the ids of tokens whose record changed through this store
   * object (created, revoked, rotated, emergency-revoked, new controls), after the
   * change committed, so that a cache in front of the store can forget them at
   * once. Changes by other processes are not seen here; caches bound those by
   * age. Returns a function that removes the listener.
   */
  onTokensChanged(listener: (tokenIds: readonly string[]) => void): () => void {
    this.tokenListeners.add(listener);
    return () => this.tokenListeners.delete(listener);
  }

  /** Looks a token up by its public id, with its bookkeeping (last use, lineage, revocation reason). */
  getListing(id: string): TokenListing | undefined {
    const row = this.statements.byId.get(id) as TokenRow | undefined;
    return row === undefined ? undefined : toListing(row);
  }

  /** Every token of the rotation lineage `id` belongs to, revoked ones too, oldest first; `[]` for an unknown id. */
  lineageOf(id: string): TokenListing[] {
    return (this.statements.lineage.all({ id }) as TokenRow[]).map(toListing);
  }

  /**
   * Counts active tokens (unrevoked, unexpired, newest of their lineage) of a
   * tenant and type, optionally of one creator: what the policy set's limits cap.
   */
  countActive(filter: { tenant: string; type: "user" | "service"; creator?: string | null }, nowMs: number = this.now()): number {
    const row = this.statements.countActive.get({ tenant: filter.tenant, type: filter.type, creator: filter.creator ?? null, now: nowMs }) as { n: number };
    return row.n;
  }

  /** Lists tokens, oldest first, optionally of one tenant and workspace; revoked ones only when asked. */
  list(filter: { tenant?: string; workspace?: string; includeRevoked?: boolean } = {}): TokenListing[] {
    const rows = this.statements.list.all({
      tenant: filter.tenant ?? null,
      workspace: filter.workspace ?? null,
      includeRevoked: filter.includeRevoked ? 1 : 0,
    }) as TokenRow[];
    return rows.map(toListing);
  }

  /**
   * Revokes a token for good and writes `api_token.revoked` in the same
   * transaction. Revoking a revoked token changes nothing and writes no second
   * audit row, so retries are safe.
   *
   * @param reason - why, kept with the token and in the audit row
   * @throws {@link StoreError} of kind `not_found` for an unknown id
   */
  revoke(id: string, actor: string, reason?: string | null): TokenRecord {
    return this.notifying([id], () => this.db.transaction((): TokenRecord => {
      const row = this.statements.byId.get(id) as TokenRow | undefined;
      if (row === undefined) throw new StoreError("not_found", `no token with id \`${id}\``);
      if (row.revoked_at !== null) return toRecord(row);
      const nowMs = this.now();
      this.statements.revoke.run({ id, revokedAt: nowMs, revokedBy: actor, reason: reason ?? null });
      const revoked = { ...row, revoked_at: nowMs, revoked_by: actor, revoked_reason: reason ?? null };
      this.audit("api_token.revoked", actor, revoked, { name: row.name, ...(reason == null ? {} : { reason }) }, nowMs);
      return toRecord(revoked);
    }).immediate());
  }

  /**
   * Rotates a token in one transaction: issues a successor that inherits
   * everything but the secret (tenant, workspace, environment and prefix, type,
   * name, role, key level, scopes, controls, service label, creator and creator
   * role, expiry), and ends the predecessor's validity `overlapMs` from now.
   * Older tokens of the lineage still inside a window are capped to the same
   * end (a later rotation never extends an older window). Writes
   * `api_token.rotated` (predecessor) and `api_token.created` (successor).
   *
   * @returns the successor's plaintext `token`, to show once, its `record`, and the updated `predecessor`
   * @throws {@link StoreError}: `not_found` for an unknown id; `conflict` for a
   * revoked or expired token, one past its overlap, or one that already has a
   * usable successor (rotate the newest token of a lineage); a token whose
   * successor was revoked or expired may be rotated again while its overlap
   * lasts; `invalid` for a bad overlap
   */
  rotate(id: string, options: RotateOptions): { token: string; record: TokenRecord; predecessor: TokenRecord } {
    const { overlapMs, actor } = options;
    if (!Number.isSafeInteger(overlapMs) || overlapMs < 0) throw new StoreError("invalid", `overlap must be zero or more milliseconds, got \`${overlapMs}\``);
    // why: the whole lineage's windows may have moved, so every cached member is stale
    return this.notifying(() => this.lineageOf(id).map((row) => row.id), () => this.db.transaction(() => {
      const nowMs = options.nowMs ?? this.now();
      const row = this.statements.byId.get(id) as TokenRow | undefined;
      if (row === undefined) throw new StoreError("not_found", `no token with id \`${id}\``);
      const refusal = this.rotationRefusal(row, nowMs);
      if (refusal !== null) throw new StoreError("conflict", refusal);

      const token = generateToken(row.prefix);
      const lineageId = row.lineage_id ?? row.id;
      const successor: TokenRow = {
        ...row,
        id: newTokenId(),
        hash: hashToken(this.secret, token),
        created_at: nowMs,
        revoked_at: null,
        revoked_by: null,
        revoked_reason: null,
        last_used_at: null,
        use_count: 0,
        lineage_id: lineageId,
        predecessor_id: row.id,
        successor_id: null,
        rotated_at: null,
        overlap_ends_at: null,
      };
      const endsAtMs = nowMs + overlapMs;
      this.statements.insertToken.run(successor);
      this.statements.capLineageOverlap.run({ lineageId, endsAt: endsAtMs, now: nowMs });
      this.statements.markRotated.run({ id, successorId: successor.id, rotatedAt: nowMs, endsAt: endsAtMs });
      const predecessor = this.statements.byId.get(id) as TokenRow;
      this.audit("api_token.rotated", actor, predecessor, { name: row.name, successorId: successor.id, overlapEndsAtMs: predecessor.overlap_ends_at, overlapMs }, nowMs);
      this.audit("api_token.created", actor, successor, { name: row.name, type: row.type, prefix: row.prefix, workspace: row.workspace, environment: row.environment, predecessorId: row.id, lineageId }, nowMs);
      return { token, record: toRecord(successor), predecessor: toRecord(predecessor) };
    }).immediate());
  }

  /**
   * Why `row` cannot be rotated now, as advice an operator can follow, or
   * `null`. A token whose successor is unusable (revoked, e.g. leaked, or
   * expired) may be rotated again while its own overlap lasts: otherwise the
   * only advice, "rotate the successor", could not be followed.
   */
  private rotationRefusal(row: TokenRow, nowMs: number): string | null {
    const id = row.id;
    if (row.revoked_at !== null) return `token \`${id}\` is revoked; a revoked token cannot be rotated: create a new token`;
    if (row.expires_at !== null && nowMs >= row.expires_at) return `token \`${id}\` has expired; an expired token cannot be rotated: create a new token`;
    if (row.successor_id === null) return null;
    const successor = this.statements.byId.get(row.successor_id) as TokenRow | undefined;
    const successorProblem =
      successor === undefined ? "is gone" : successor.revoked_at !== null ? "is revoked" : successor.expires_at !== null && nowMs >= successor.expires_at ? "has expired" : null;
    if (successorProblem === null) return `token \`${id}\` was already rotated to \`${row.successor_id}\`; rotate that one instead`;
    if (row.overlap_ends_at !== null && nowMs >= row.overlap_ends_at) {
      return `token \`${id}\` was rotated out at ${new Date(row.overlap_ends_at).toISOString()} and its successor \`${row.successor_id}\` ${successorProblem}: create a new token`;
    }
    return null;
  }

  /**
   * Revokes at once, in one transaction, every unrevoked token of a lineage
   * (`lineageOf`: any token of it) or of explicit ids, each with its own
   * `api_token.emergency_revoked` audit row. With `tenant`, tokens of other
   * tenants are neither revoked nor reported, and a lineage token of another
   * tenant is `not_found`. Ids that are unknown or already revoked are skipped.
   *
   * @returns the ids revoked by this call
   */
  emergencyRevoke(target: EmergencyTarget, options: { tenant?: string; actor: string; reason: string }): string[] {
    return this.notifying((ids) => ids, () => this.db.transaction((): string[] => {
      const nowMs = this.now();
      let rows: TokenRow[];
      if ("lineageOf" in target) {
        const anchor = this.statements.byId.get(target.lineageOf) as TokenRow | undefined;
        if (anchor === undefined || (options.tenant !== undefined && anchor.tenant !== options.tenant)) {
          throw new StoreError("not_found", `no token with id \`${target.lineageOf}\``);
        }
        rows = this.statements.lineage.all({ id: anchor.id }) as TokenRow[];
      } else {
        rows = target.ids.map((id) => this.statements.byId.get(id) as TokenRow | undefined).filter((row): row is TokenRow => row !== undefined);
      }
      const revoked: string[] = [];
      for (const row of rows) {
        if (row.revoked_at !== null || revoked.includes(row.id)) continue;
        if (options.tenant !== undefined && row.tenant !== options.tenant) continue;
        this.statements.revoke.run({ id: row.id, revokedAt: nowMs, revokedBy: options.actor, reason: options.reason });
        this.audit("api_token.emergency_revoked", options.actor, row, { name: row.name, reason: options.reason, lineageId: row.lineage_id ?? row.id }, nowMs);
        revoked.push(row.id);
      }
      return revoked;
    }).immediate());
  }

  /**
   * Applies a batch of use stamps, keyed by token id, in one transaction.
   * `last_used_at` only moves forward, so batches flushed out of order are
   * harmless; unknown ids (e.g. a token purged meanwhile) are skipped.
   */
  recordUse(batch: ReadonlyMap<string, TokenUse>): void {
    if (batch.size === 0) return;
    this.db.transaction(() => {
      for (const [id, use] of batch) {
        this.statements.recordUse.run({ id, lastUsedAt: use.lastUsedAtMs, count: use.count });
      }
    })();
  }

  /**
   * Lists lifecycle audit rows, newest first.
   *
   * @param filter.limit - at most this many rows; default 100, at most 10000
   */
  listAudit(filter: { tenant?: string; limit?: number } = {}): LifecycleAuditRecord[] {
    const limit = filter.limit ?? DEFAULT_AUDIT_LIMIT;
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_AUDIT_LIMIT) {
      throw new StoreError("invalid", `audit limit must be a whole number from 1 to ${MAX_AUDIT_LIMIT}, got \`${limit}\``);
    }
    const rows = this.statements.listAudit.all({ tenant: filter.tenant ?? null, limit }) as AuditRow[];
    return rows.map((row) => ({
      id: row.id,
      atMs: row.at,
      event: row.event,
      actor: row.actor,
      tokenId: row.token_id,
      tenant: row.tenant,
      data: parseObject(row.data),
    }));
  }

  /**
   * Replaces a token's own controls (`null` or `{}` clears them) and writes
   * `api_token.controls_updated` in the same transaction. Policy controls for
   * the kinds the new value leaves out apply again.
   *
   * @throws {@link StoreError}: `invalid` for controls {@link checkTokenControls} refuses, `not_found` for an unknown id
   */
  updateControls(id: string, controls: unknown, actor: string): TokenRecord {
    const value = controls ?? {};
    const problem = checkTokenControls(value);
    if (problem !== null) throw new StoreError("invalid", problem);
    return this.notifying([id], () => this.db.transaction((): TokenRecord => {
      const row = this.statements.byId.get(id) as TokenRow | undefined;
      if (row === undefined) throw new StoreError("not_found", `no token with id \`${id}\``);
      const text = JSON.stringify(value);
      this.statements.updateControls.run({ id, controls: text });
      this.audit("api_token.controls_updated", actor, row, { controls: value }, this.now());
      return toRecord({ ...row, controls: text });
    }).immediate());
  }

  /**
   * Counts changes to tenant suspension and workspace restriction made through
   * this store object; a cache that sees it move knows its snapshot is stale
   * without asking SQLite.
   */
  get administrativeStateVersion(): number {
    return this.administrativeVersion;
  }

  /** Every suspended tenant and restricted workspace: two small reads, for the service's cache. */
  readAdministrativeState(): AdministrativeState {
    return {
      suspendedTenants: new Set(this.tenantStatements.tenantNames.all() as string[]),
      restrictedWorkspaces: new Map(this.tenantStatements.workspaceModes.all() as [string, WorkspaceRestrictionMode][]),
    };
  }

  /**
   * Suspends a tenant: its tokens get `tenant_suspended` until
   * {@link resumeTenant}. Suspending a suspended tenant changes nothing.
   * @returns whether this call suspended it
   */
  suspendTenant(tenant: string, options: { actor: string; reason?: string | null }): boolean {
    checkIdentifier("tenant", tenant);
    return this.administrativeChange(() => {
      const at = this.now();
      const changed = this.tenantStatements.suspend.run({ tenant, at, by: options.actor, reason: options.reason ?? null }).changes > 0;
      if (changed) this.auditAdministrative("tenant.suspended", options.actor, tenant, { reason: options.reason ?? null }, at);
      return changed;
    });
  }

  /** Lifts a tenant's suspension. @returns whether it was suspended */
  resumeTenant(tenant: string, options: { actor: string }): boolean {
    return this.administrativeChange(() => {
      const changed = this.tenantStatements.resume.run(tenant).changes > 0;
      if (changed) this.auditAdministrative("tenant.resumed", options.actor, tenant, {}, this.now());
      return changed;
    });
  }

  /** Suspended tenants, by name. */
  listSuspendedTenants(): TenantSuspension[] {
    return this.tenantStatements.tenants.all().map(toTenantSuspension);
  }

  /**
   * Restricts a workspace until {@link unrestrictWorkspace}: in mode `writes`
   * (the default) its protected operations get `workspace_restricted` (423), in
   * mode `all` every operation does. Restricting again in the same mode changes
   * nothing; in the other mode it replaces the mode and the reason, and the
   * audit event names the previous mode.
   * @returns whether this call changed the workspace's restriction
   */
  restrictWorkspace(tenant: string, workspace: string, options: { actor: string; reason?: string | null; mode?: WorkspaceRestrictionMode }): boolean {
    checkIdentifier("tenant", tenant);
    checkIdentifier("workspace", workspace);
    const mode = options.mode ?? "writes";
    if (!isWorkspaceRestrictionMode(mode)) throw new StoreError("invalid", `unknown workspace restriction mode \`${String(mode)}\`; expected one of ${WORKSPACE_RESTRICTION_MODES.join(", ")}`);
    return this.administrativeChange(() => {
      const at = this.now();
      const previousMode = this.tenantStatements.workspaceMode.get(tenant, workspace) as WorkspaceRestrictionMode | undefined;
      const reason = options.reason ?? null;
      const changed = this.tenantStatements.restrict.run({ tenant, workspace, at, by: options.actor, reason, mode }).changes > 0;
      if (changed) {
        this.auditAdministrative("workspace.restricted", options.actor, tenant, { workspace, mode, reason, ...(previousMode === undefined ? {} : { previousMode }) }, at);
      }
      return changed;
    });
  }

  /** Lifts a workspace restriction. @returns whether it was restricted */
  unrestrictWorkspace(tenant: string, workspace: string, options: { actor: string }): boolean {
    return this.administrativeChange(() => {
      const changed = this.tenantStatements.unrestrict.run(tenant, workspace).changes > 0;
      if (changed) this.auditAdministrative("workspace.unrestricted", options.actor, tenant, { workspace }, this.now());
      return changed;
    });
  }

  /** Restricted workspaces, optionally of one tenant. */
  listRestrictedWorkspaces(filter: { tenant?: string } = {}): WorkspaceRestriction[] {
    return this.tenantStatements.workspaces.all({ tenant: filter.tenant ?? null }).map(toWorkspaceRestriction);
  }

  private administrativeChange(run: () => boolean): boolean {
    const changed = this.db.transaction(run).immediate();
    // why: bump even when nothing changed here; another process may have changed it meanwhile
    this.administrativeVersion++;
    return changed;
  }

  private auditAdministrative(event: AdministrativeEvent, actor: string, tenant: string, data: object, atMs: number): void {
    this.statements.insertAudit.run({ at: atMs, event, actor, tokenId: null, tenant, data: JSON.stringify(data) });
  }

  /** Closes the database; later calls on this store throw. Safe to call twice. */
  close(): void {
    this.closed = true;
    const connection = this.connection;
    this.connection = null;
    if (connection?.db.open === true) connection.db.close();
  }

  /**
   * Runs a committed change, then tells the listeners which tokens changed:
   * fixed ids, ids from the result, or ids read after the commit.
   */
  private notifying<T>(ids: readonly string[] | ((result: T) => readonly string[]), change: () => T): T {
    const result = change();
    if (this.tokenListeners.size > 0) {
      const changed = typeof ids === "function" ? ids(result) : ids;
      if (changed.length > 0) for (const listener of this.tokenListeners) listener(changed);
    }
    return result;
  }

  /** Throws `conflict` when creating `spec` would pass a cap; runs inside the create transaction. */
  private checkLimits(spec: CreateTokenSpec, limits: TokenLimits, nowMs: number): void {
    if (spec.type === "service" && limits.serviceTokensPerTenant !== null) {
      const count = this.countActive({ tenant: spec.tenant, type: "service" }, nowMs);
      if (count >= limits.serviceTokensPerTenant) {
        throw new StoreError("conflict", `tenant \`${spec.tenant}\` already has ${count} active service token${count === 1 ? "" : "s"}, the policy set's limit`);
      }
    }
    if (spec.type === "user" && limits.userTokensPerCreator !== null) {
      const count = this.countActive({ tenant: spec.tenant, type: "user", creator: spec.creator ?? null }, nowMs);
      if (count >= limits.userTokensPerCreator) {
        throw new StoreError("conflict", `creator \`${spec.creator ?? ""}\` already has ${count} active user token${count === 1 ? "" : "s"} in tenant \`${spec.tenant}\`, the policy set's limit`);
      }
    }
  }

  private audit(event: LifecycleEvent, actor: string, row: TokenRow, data: object, atMs: number): void {
    this.statements.insertAudit.run({
      at: atMs,
      event,
      actor,
      tokenId: row.id,
      tenant: row.tenant,
      data: JSON.stringify(data),
    });
  }
}

/** Prepares every statement once, when the store opens. */
function prepareStatements(db: Database.Database) {
  return {
    insertToken: db.prepare(`
      INSERT INTO tokens (id, hash, seq, prefix, tenant, workspace, environment, type, name, role, key_level,
        scopes, creator, creator_role, created_at, expires_at, revoked_at, revoked_by, last_used_at, use_count, service, controls,
        lineage_id, predecessor_id, successor_id, rotated_at, overlap_ends_at, revoked_reason)
      VALUES (@id, @hash, (SELECT coalesce(max(seq), 0) + 1 FROM tokens), @prefix, @tenant, @workspace, @environment, @type, @name, @role, @key_level,
        @scopes, @creator, @creator_role, @created_at, @expires_at, @revoked_at, @revoked_by, @last_used_at, @use_count, @service, @controls,
        @lineage_id, @predecessor_id, @successor_id, @rotated_at, @overlap_ends_at, @revoked_reason)`),
    updateControls: db.prepare(`UPDATE tokens SET controls = @controls WHERE id = @id`),
    recordByHash: db.prepare(`SELECT ${RECORD_COLUMNS.join(", ")} FROM tokens WHERE hash = ?`).raw(true),
    byId: db.prepare(`SELECT * FROM tokens WHERE id = ?`),
    list: db.prepare(`
      SELECT * FROM tokens
      WHERE (@tenant IS NULL OR tenant = @tenant)
        AND (@workspace IS NULL OR workspace = @workspace)
        AND (@includeRevoked = 1 OR revoked_at IS NULL)
      ORDER BY created_at, seq`),
    revoke: db.prepare(`UPDATE tokens SET revoked_at = @revokedAt, revoked_by = @revokedBy, revoked_reason = @reason WHERE id = @id`),
    lineage: db.prepare(`
      SELECT * FROM tokens WHERE lineage_id = (SELECT coalesce(lineage_id, id) FROM tokens WHERE id = @id) ORDER BY created_at, seq`),
    // A later rotation caps, never extends, the windows of older tokens of the lineage still inside one.
    capLineageOverlap: db.prepare(`
      UPDATE tokens SET overlap_ends_at = min(overlap_ends_at, @endsAt)
      WHERE lineage_id = @lineageId AND overlap_ends_at IS NOT NULL AND overlap_ends_at > @now`),
    markRotated: db.prepare(`
      UPDATE tokens SET successor_id = @successorId, rotated_at = @rotatedAt,
        overlap_ends_at = CASE WHEN overlap_ends_at IS NULL THEN @endsAt ELSE min(overlap_ends_at, @endsAt) END
      WHERE id = @id`),
    countActive: db.prepare(`
      SELECT count(*) AS n FROM tokens
      WHERE tenant = @tenant AND type = @type AND (@creator IS NULL OR creator = @creator)
        AND revoked_at IS NULL AND successor_id IS NULL AND (expires_at IS NULL OR expires_at > @now)`),
    recordUse: db.prepare(`
      UPDATE tokens
      SET last_used_at = max(coalesce(last_used_at, 0), @lastUsedAt), use_count = use_count + @count
      WHERE id = @id`),
    insertAudit: db.prepare(`
      INSERT INTO audit_events (at, event, actor, token_id, tenant, data)
      VALUES (@at, @event, @actor, @tokenId, @tenant, @data)`),
    listAudit: db.prepare(`
      SELECT * FROM audit_events WHERE (@tenant IS NULL OR tenant = @tenant) ORDER BY id DESC LIMIT @limit`),
  };
}

/**
 * Applies pending {@link MIGRATIONS}. The version is re-read inside an
 * immediate transaction, so two processes opening a fresh database at once
 * do not both apply the same step.
 */
function migrate(db: Database.Database, file: string): void {
  const known = MIGRATIONS.length;
  db.transaction(() => {
    const version = db.pragma("user_version", { simple: true }) as number;
    if (version > known) {
      throw new StoreError(
        "too_new",
        `database \`${file}\` has schema version ${version} but this build knows up to ${known}; upgrade portcullis`,
      );
    }
    for (let step = version; step < known; step++) {
      try {
        db.exec(MIGRATIONS[step]!);
      } catch (error) {
        throw new StoreError(
          "corrupt",
          `cannot migrate database \`${file}\` to schema version ${step + 1}: ${describe(error)}`,
          { cause: error },
        );
      }
      db.pragma(`user_version = ${step + 1}`);
    }
  }).immediate();
}

/**
 * Opens `file` in WAL mode, brings its schema up to date and prepares every
 * statement. With `mustExist`, a missing file is an error rather than a new
 * empty database (a reopen must never create one).
 */
function openConnection(file: string, busyTimeoutMs: number, mustExist: boolean): Connection {
  let db: Database.Database | undefined;
  try {
    db = new Database(file, { fileMustExist: mustExist });
    db.pragma("journal_mode = WAL");
    db.pragma("synchronous = NORMAL");
    // why: opening may wait for another process's migration; serving must not wait (set below)
    db.pragma("busy_timeout = 5000");
    db.pragma("foreign_keys = ON");
    migrate(db, file);
    // 4 MB of page cache (better-sqlite3's default is 16): it holds the interior B-tree
    // pages of a 1,000,000-token store, which is what a look-up reuses; the leaf pages
    // of random tokens would not stay cached anyway, and the OS caches the file.
    db.pragma("cache_size = -4000");
    db.pragma(`busy_timeout = ${busyTimeoutMs}`);
    restrictStoreFiles(file);
    const identity = fileIdentity(file);
    if (identity === null) throw new StoreError("unavailable", `database \`${file}\` vanished while it was opened`);
    return { db, statements: prepareStatements(db), tenantStatements: prepareTenantStatements(db), identity };
  } catch (error) {
    db?.close();
    throw translateOpenError(error, file);
  }
}

/**
 * Closes a connection whose file was moved or deleted. SQLite neither
 * checkpoints nor deletes the WAL of a moved database on close, and the next
 * connection to open the new file under the same name would replay those old
 * frames over it (https://sqlite.org/howtocorrupt.html, section 1.4). So the
 * old frames are first checkpointed into the old file and the WAL truncated
 * to nothing. Best effort: a reader in another process can keep it from
 * completing, which is why the safe live restore is SQLite's own `.restore`.
 */
function retireConnection(connection: Connection): void {
  try {
    connection.db.pragma("wal_checkpoint(TRUNCATE)");
  } catch {
    // Nothing more can be done from here; closing still releases the old file.
  }
  connection.db.close();
}

/** Device and inode of `file`, or `null` when there is none (or no regular file) at that path. */
function fileIdentity(file: string): string | null {
  try {
    const stat = statSync(file, { bigint: true });
    return stat.isFile() ? `${stat.dev}:${stat.ino}` : null;
  } catch {
    return null;
  }
}

/**
 * Creates an empty `file` readable by its owner only, unless it exists.
 * SQLite gives the -wal and -shm files the database file's mode, so all three
 * stay private: they hold token hashes, tenants, names and controls.
 * @returns whether it created the file
 */
function createPrivateFile(file: string): boolean {
  try {
    closeSync(openSync(file, "wx", 0o600));
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw new StoreError("unwritable", `cannot create database \`${file}\`: ${describe(error)}`, { cause: error });
  }
}

/**
 * Takes group and other access away from the database and its -wal and -shm
 * files (stores created by earlier versions were 0644). Best effort: a file
 * owned by another account is left as it is.
 */
function restrictStoreFiles(file: string): void {
  for (const name of [file, `${file}-wal`, `${file}-shm`]) {
    try {
      const mode = statSync(name).mode;
      if ((mode & 0o077) !== 0) chmodSync(name, mode & 0o700);
    } catch {
      // Absent (no -wal yet) or not ours: nothing to tighten.
    }
  }
}

function busyTimeoutOf(options: TokenStoreOptions): number {
  const ms = options.busyTimeoutMs ?? 5_000;
  if (!Number.isSafeInteger(ms) || ms < 0) throw new StoreError("invalid", `busy timeout must be zero or more milliseconds, got \`${ms}\``);
  return ms;
}

function translateOpenError(error: unknown, file: string): unknown {
  if (error instanceof StoreError) return error;
  const code = sqliteCode(error);
  if (code === "SQLITE_NOTADB" || code?.startsWith("SQLITE_CORRUPT")) {
    return new StoreError("corrupt", `\`${file}\` is not a portcullis database: ${describe(error)}`, { cause: error });
  }
  if (
    code?.startsWith("SQLITE_CANTOPEN") ||
    code?.startsWith("SQLITE_READONLY") ||
    code === "SQLITE_PERM" ||
    code?.startsWith("SQLITE_IOERR")
  ) {
    return new StoreError("unwritable", `cannot open database \`${file}\` for writing: ${describe(error)}`, {
      cause: error,
    });
  }
  return error;
}

function checkIdentifier(field: string, value: string): void {
  if (typeof value !== "string" || !IDENTIFIER.test(value)) {
    throw new StoreError("invalid", `${field} \`${String(value)}\` must be 1-128 letters, digits, \`.\`, \`_\`, \`:\` or \`-\``);
  }
}

function validateSpec(spec: CreateTokenSpec, nowMs: number): void {
  const invalid = (message: string): never => {
    throw new StoreError("invalid", message);
  };
  for (const field of ["tenant", "workspace", "environment", "prefix", "name"] as const) {
    const value: unknown = spec[field];
    if (typeof value !== "string" || value.trim() === "") invalid(`token ${field} must not be empty`);
  }
  if (spec.type !== "user" && spec.type !== "service") {
    invalid(`token type must be \`user\` or \`service\`, got \`${String(spec.type)}\``);
  }
  if (spec.role != null && spec.role.trim() === "") invalid("token role must not be empty when given");
  if (spec.scopes != null) {
    if (spec.scopes.length === 0) invalid("token scopes must list at least one scope when given");
    for (const scope of spec.scopes) {
      if (typeof scope !== "string" || scope.trim() === "") invalid("token scopes must not contain an empty scope");
    }
  }
  if (spec.role == null && spec.scopes == null) invalid("a token needs a role, scopes or both");
  if (spec.type === "user" && (spec.creator == null || spec.creator.trim() === "")) {
    invalid("a user token needs a creator");
  }
  if (spec.service != null && !IDENTIFIER.test(spec.service)) {
    invalid(`service label \`${spec.service}\` must be 1-128 letters, digits, \`.\`, \`_\`, \`:\` or \`-\``);
  }
  if (spec.controls != null) {
    const problem = checkTokenControls(spec.controls);
    if (problem !== null) invalid(problem);
  }
  if (spec.expiresAtMs != null && (!Number.isSafeInteger(spec.expiresAtMs) || spec.expiresAtMs <= nowMs)) {
    invalid(`token expiry \`${spec.expiresAtMs}\` must be a time in the future, in ms since the epoch`);
  }
}

/**
 * The columns a {@link TokenRecord} is built from, in the order
 * {@link recordFromColumns} reads them. The hot look-up selects just these as
 * an array (better-sqlite3's raw mode): naming 27 columns on a fresh object per
 * row cost more than the B-tree search itself.
 */
const RECORD_COLUMNS = [
  "hash", "id", "tenant", "workspace", "environment", "type", "name", "role", "key_level", "scopes", "creator_role",
  "created_at", "expires_at", "revoked_at", "service", "controls", "lineage_id", "successor_id", "overlap_ends_at",
] as const satisfies readonly (keyof TokenRow)[];

type ColumnValues<Names extends readonly (keyof TokenRow)[]> = { -readonly [I in keyof Names]: TokenRow[Names[I]] };
type RecordColumns = ColumnValues<typeof RECORD_COLUMNS>;

function recordFromColumns(columns: RecordColumns): TokenRecord {
  const [, id, tenant, workspace, environment, type, name, role, keyLevel, scopes, creatorRole,
    createdAtMs, expiresAtMs, revokedAtMs, service, controls, lineageId, successorId, overlapEndsAtMs] = columns;
  return {
    id,
    tenant,
    workspace,
    environment,
    type,
    name,
    role,
    keyLevel,
    scopes: parseScopes(scopes),
    creatorRole,
    createdAtMs,
    expiresAtMs,
    revokedAtMs,
    service,
    controls: parseControls(controls),
    lineageId: lineageId ?? id,
    successorId,
    overlapEndsAtMs,
  };
}

function toRecord(row: TokenRow): TokenRecord {
  return recordFromColumns(RECORD_COLUMNS.map((column) => row[column]) as unknown as RecordColumns);
}

function toListing(row: TokenRow): TokenListing {
  return {
    ...toRecord(row),
    prefix: row.prefix,
    creator: row.creator,
    revokedBy: row.revoked_by,
    lastUsedAtMs: row.last_used_at,
    useCount: row.use_count,
    predecessorId: row.predecessor_id,
    rotatedAtMs: row.rotated_at,
    revokedReason: row.revoked_reason,
  };
}

/**
 * Reads the scopes column. Damaged JSON fails closed: `[]` narrows the token to
 * nothing rather than widening it to the whole role (which `null` would mean),
 * and the request path never throws on it.
 */
function parseScopes(text: string | null): readonly string[] | null {
  if (text === null) return null;
  try {
    const value: unknown = JSON.parse(text);
    if (Array.isArray(value) && value.every((scope) => typeof scope === "string")) return value as string[];
  } catch {
    // Fall through to the fail-closed answer.
  }
  return [];
}

const NO_CONTROLS: TokenControls = Object.freeze({});

/**
 * Reads the controls column. Damaged JSON fails closed: an empty allowlist,
 * which the engine cannot compile, so every request of the token is answered
 * `unavailable` (and logged) instead of passing without its controls.
 */
function parseControls(text: string | null): TokenControls {
  // Most tokens carry none: one shared frozen object instead of a parse and an object per look-up.
  if (text === null || text === "{}") return NO_CONTROLS;
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value === "object" && value !== null && !Array.isArray(value)) return value as TokenControls;
  } catch {
    // Fall through to the fail-closed answer.
  }
  return { ipAllowlist: [] };
}

/**
 * Checks a token's controls: the policy schema's `tokenControls` shape, then
 * every value (CIDRs without host bits, fingerprints, time zones, windows).
 * Returns one message naming every problem with its pointer, or `null`.
 */
export function checkTokenControls(controls: unknown): string | null {
  const shape = validateControlsShape(controls);
  const problems = shape.length > 0 ? shape : (() => {
    const compiled = compileControls(controls as TokenControls, "token");
    return compiled.ok ? [] : compiled.errors;
  })();
  if (problems.length === 0) return null;
  return problems
    .map((p) => `controls${p.pointer === "" ? "" : ` ${p.pointer}`}: ${p.message}${p.hint === undefined ? "" : ` (${p.hint})`}`)
    .join("; ");
}

function parseObject(text: string): Readonly<Record<string, unknown>> {
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value === "object" && value !== null && !Array.isArray(value)) return value as Record<string, unknown>;
  } catch {
    // An unreadable audit payload is shown as empty rather than hiding the row.
  }
  return {};
}

function sqliteCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
