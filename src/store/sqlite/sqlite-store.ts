/**
 * The embedded SQLite store: the only module that opens a SQLite database.
 * One file in WAL mode, private to its owner, migrated with `user_version`,
 * watched for replacement; its repositories implement the interfaces of
 * `store-interfaces.ts` and hold no lifecycle rules.
 */
import { accessSync, chmodSync, closeSync, constants as fsConstants, existsSync, mkdirSync, openSync, statSync } from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { MIGRATIONS } from "../migrations.js";
import { resolveSecret } from "../resolve-secret.js";
import { StoreError } from "../store-error.js";
import type { AuditLog, SecurityEventLog, Store, StoreTransaction, WebhookOutbox, WebhookOutboxWriter } from "../store-interfaces.js";
import { createSqliteAuditLog, prepareAuditStatements } from "./sqlite-audit.js";
import { createSqliteSecurityEventLog, prepareSecurityEventStatements } from "./sqlite-security-events.js";
import { createSqliteTenantStateRepository, prepareTenantStatements, type SqliteTenantStateRepository } from "./sqlite-tenant-state.js";
import { createSqliteWebhookOutbox, createSqliteWebhookWriter, prepareWebhookStatements } from "./sqlite-webhooks.js";
import { createSqliteTokenRepository, prepareTokenStatements, sqliteCode, type SqliteTokenRepository } from "./sqlite-tokens.js";

/** Name of the database file inside the data folder. */
export const DATABASE_FILE_NAME = "portcullis.db";

/** Options of {@link SqliteStore.open}. */
export interface SqliteStoreOptions {
  /** Folder for `portcullis.db` and `secret.key`; created (recursively) when missing. */
  readonly dataDir: string;
  /** Key for token hashes; defaults to {@link resolveSecret} over `dataDir` and `process.env`. */
  readonly secret?: Buffer;
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

/** What {@link SqliteStore.checkFile} found. */
export type StoreFileCheck =
  /** The open database is still the file at `portcullis.db`. */
  | "unchanged"
  /** Another file took its place (a restored backup); the store now reads that one. */
  | "reopened"
  /** No usable database at `portcullis.db`: every call fails with `unavailable` until one returns. */
  | "missing";

/**
 * The last transaction queued on each database file in this process. A
 * transaction holds SQLite's write lock across awaits, and another connection
 * of the same process asking for it would wait synchronously (the busy
 * timeout), blocking the very thread that must finish the first one; so
 * every store object of one file in one process takes its turn here instead.
 * Other processes wait on SQLite's own lock.
 */
const transactionQueues = new Map<string, Promise<void>>();

/** The open database and what was prepared on it; replaced as a whole when the file is. */
interface Connection {
  readonly db: Database.Database;
  readonly tokens: ReturnType<typeof prepareTokenStatements>;
  readonly audit: ReturnType<typeof prepareAuditStatements>;
  readonly tenants: ReturnType<typeof prepareTenantStatements>;
  readonly securityEvents: ReturnType<typeof prepareSecurityEventStatements>;
  readonly webhooks: ReturnType<typeof prepareWebhookStatements>;
  /** Device and inode of the file when it was opened, to notice a replacement. */
  readonly identity: string;
}

/**
 * The SQLite store. Synchronous underneath, like better-sqlite3: a repository
 * call finishes before it returns its (settled) promise, and the decision
 * path's reads ({@link SqliteTokenRepository.findByHash},
 * `readAdministrativeState`) answer directly.
 *
 * @example
 * ```ts
 * const store = SqliteStore.open({ dataDir: "/var/lib/portcullis", busyTimeoutMs: 0 });
 * const lifecycle = createTokenLifecycle({ store, secret: store.secret, now: Date.now });
 * ```
 */
export class SqliteStore implements Store {
  private connection: Connection | null;
  private version = 0;
  private readonly tokenListeners = new Set<(tokenIds: readonly string[]) => void>();
  private readonly administrativeListeners = new Set<() => void>();
  private closed = false;

  /** Repositories bound to whatever connection is live; writes join an open transaction. */
  private readonly direct: {
    readonly tokens: SqliteTokenRepository;
    readonly audit: AuditLog;
    readonly tenantState: SqliteTenantStateRepository;
    readonly webhooks: WebhookOutboxWriter;
  };

  readonly tokens: SqliteTokenRepository;
  readonly audit: AuditLog;
  readonly tenantState: SqliteTenantStateRepository;
  readonly securityEvents: SecurityEventLog;
  readonly webhooks: WebhookOutbox;

  private constructor(
    connection: Connection,
    private readonly file: string,
    /** The key token hashes are made with, resolved from the data folder at open. */
    readonly secret: Buffer,
    private readonly busyTimeoutMs: number,
  ) {
    this.connection = connection;
    this.direct = {
      tokens: createSqliteTokenRepository(() => this.live.tokens),
      audit: createSqliteAuditLog(() => this.live.audit),
      tenantState: createSqliteTenantStateRepository(() => this.live.tenants),
      webhooks: createSqliteWebhookWriter(() => this.live.webhooks),
    };
    const d = this.direct;
    // why: a write outside a transaction still goes through the queue, so it never lands inside another caller's open transaction
    const write = <T>(work: (tx: StoreTransaction) => Promise<T>): Promise<T> => this.transaction(work);
    this.tokens = {
      findByHash: (hash) => d.tokens.findByHash(hash),
      byId: (id) => d.tokens.byId(id),
      lineage: (id) => d.tokens.lineage(id),
      list: (filter) => d.tokens.list(filter),
      countActive: (filter, nowMs) => d.tokens.countActive(filter, nowMs),
      insert: (token) => write((tx) => tx.tokens.insert(token)),
      revoke: (id, revocation) => write((tx) => tx.tokens.revoke(id, revocation)),
      markRotated: (id, mark) => write((tx) => tx.tokens.markRotated(id, mark)),
      capOverlaps: (lineageId, endsAtMs, nowMs) => write((tx) => tx.tokens.capOverlaps(lineageId, endsAtMs, nowMs)),
      updateControls: (id, controls) => write((tx) => tx.tokens.updateControls(id, controls)),
      recordUse: (batch) => (batch.size === 0 ? Promise.resolve() : write((tx) => tx.tokens.recordUse(batch))),
    };
    this.audit = {
      append: (entry) => write((tx) => tx.audit.append(entry)),
      list: (filter) => d.audit.list(filter),
    };
    const securityEvents = createSqliteSecurityEventLog(() => this.live.securityEvents, d.webhooks);
    this.securityEvents = {
      // why: one transaction per batch, so a flush of many rows is one commit
      record: (batch) => (batch.length === 0 ? Promise.resolve() : write(() => securityEvents.record(batch))),
      list: (filter) => securityEvents.list(filter),
      // why: through the write queue like `record`, one short transaction per batch
      prune: (beforeMs, maxRows) => write(() => securityEvents.prune(beforeMs, maxRows)),
    };
    // why: every outbox call is one transaction on the file's queue, so a claim is atomic also against other processes (BEGIN IMMEDIATE)
    this.webhooks = createSqliteWebhookOutbox(() => this.live.webhooks, (work) => write(async () => work()));
    this.tenantState = {
      suspendTenant: (s) => write((tx) => tx.tenantState.suspendTenant(s)),
      resumeTenant: (tenant) => write((tx) => tx.tenantState.resumeTenant(tenant)),
      workspaceMode: (tenant, workspace) => d.tenantState.workspaceMode(tenant, workspace),
      restrictWorkspace: (r) => write((tx) => tx.tenantState.restrictWorkspace(r)),
      unrestrictWorkspace: (tenant, workspace) => write((tx) => tx.tenantState.unrestrictWorkspace(tenant, workspace)),
      listSuspendedTenants: () => d.tenantState.listSuspendedTenants(),
      listRestrictedWorkspaces: (filter) => d.tenantState.listRestrictedWorkspaces(filter),
      readAdministrativeState: () => d.tenantState.readAdministrativeState(),
    };
  }

  private get live(): Connection {
    if (this.connection === null) {
      throw new StoreError("unavailable", `the token store \`${this.file}\` is missing or unreadable; restore it`);
    }
    return this.connection;
  }

  /** Whether a database is open; `false` after {@link checkFile} found none. */
  get available(): boolean {
    return this.connection !== null;
  }

  get administrativeStateVersion(): number {
    return this.version;
  }

  /**
   * Opens (creating when needed) the store in `options.dataDir` and brings its
   * schema up to date.
   *
   * @throws {@link StoreError}: `unwritable` when the folder or file cannot be
   * created or written, `corrupt` when `portcullis.db` is not a database or
   * cannot be migrated, `too_new` when a newer build wrote it, `secret` for a
   * bad server secret, `missing` with `mustExist` and no database
   */
  static open(options: SqliteStoreOptions): SqliteStore {
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
    const busyTimeoutMs = busyTimeoutOf(options);
    const connection = openConnection(file, busyTimeoutMs, false);
    if (databaseFile !== null || secretFile !== null) options.onCreated?.({ databaseFile, secretFile });
    return new SqliteStore(connection, file, secret, busyTimeoutMs);
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
    this.version++;
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

  async transaction<T>(run: (tx: StoreTransaction) => Promise<T>): Promise<T> {
    const previous = transactionQueues.get(this.file) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    transactionQueues.set(this.file, mine);
    await previous;
    try {
      const { db } = this.live;
      // Immediate: the write lock is taken before the first read, so a limit count and its insert see one state, also across processes.
      db.exec("BEGIN IMMEDIATE");
      const changedIds: string[] = [];
      let administrative = false;
      const tx: StoreTransaction = {
        tokens: this.direct.tokens,
        audit: this.direct.audit,
        tenantState: this.direct.tenantState,
        webhooks: this.direct.webhooks,
        // why: BEGIN IMMEDIATE already serializes every writer of the file
        lock: () => Promise.resolve(),
        tokensChanged: (ids) => {
          for (const id of ids) if (!changedIds.includes(id)) changedIds.push(id);
        },
        administrativeStateChanged: () => {
          administrative = true;
        },
      };
      let result: T;
      try {
        result = await run(tx);
        db.exec("COMMIT");
      } catch (error) {
        if (db.inTransaction) db.exec("ROLLBACK");
        throw error;
      }
      if (administrative) {
        this.version++;
        for (const listener of this.administrativeListeners) listener();
      }
      if (changedIds.length > 0) for (const listener of this.tokenListeners) listener(changedIds);
      return result;
    } finally {
      if (transactionQueues.get(this.file) === mine) transactionQueues.delete(this.file);
      release();
    }
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
   * Closes the database once the transactions already queued on its file have
   * ended (the last batch of use stamps, say); later calls fail with
   * `unavailable`. Safe to call twice.
   */
  close(): Promise<void> {
    this.closed = true;
    const pending = transactionQueues.get(this.file);
    // why: with nothing queued the file is closed before this returns, as callers that do not await expect
    if (pending === undefined) {
      this.closeNow();
      return Promise.resolve();
    }
    return pending.then(() => this.closeNow());
  }

  /** Closes the database at once, rolling back a transaction still open; for callers that awaited their own work. */
  closeNow(): void {
    this.closed = true;
    const connection = this.connection;
    this.connection = null;
    if (connection?.db.open === true) connection.db.close();
  }
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
    return { db, tokens: prepareTokenStatements(db), audit: prepareAuditStatements(db), tenants: prepareTenantStatements(db), securityEvents: prepareSecurityEventStatements(db), webhooks: prepareWebhookStatements(db), identity };
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

function busyTimeoutOf(options: SqliteStoreOptions): number {
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

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
