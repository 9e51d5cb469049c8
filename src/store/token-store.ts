/**
 * The embedded SQLite token store: the only module that opens the database.
 * Tokens are kept as keyed hashes; the plaintext is returned once by
 * {@link TokenStore.create} and never written or logged.
 */
import { accessSync, constants as fsConstants, mkdirSync } from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import type { AdministrativeEvent, LifecycleEvent } from "../engine/codes.js";
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
}

/** A token as listed to operators: the record plus bookkeeping, never the hash or plaintext. */
export interface TokenListing extends TokenRecord {
  readonly prefix: string;
  readonly creator: string | null;
  readonly revokedBy: string | null;
  /** Last successful use as stamped by {@link TokenStore.recordUse}; `null` if never used. */
  readonly lastUsedAtMs: number | null;
  readonly useCount: number;
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
 * Synchronous, like better-sqlite3; a look-up is one indexed read.
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
  private readonly statements: ReturnType<typeof prepareStatements>;
  private readonly tenantStatements: ReturnType<typeof prepareTenantStatements>;
  private administrativeVersion = 0;

  private constructor(
    private readonly db: Database.Database,
    private readonly secret: Buffer,
    private readonly now: () => number,
  ) {
    this.statements = prepareStatements(db);
    this.tenantStatements = prepareTenantStatements(db);
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
    try {
      mkdirSync(dir, { recursive: true });
      accessSync(dir, fsConstants.W_OK);
    } catch (error) {
      throw new StoreError("unwritable", `data folder \`${dir}\` cannot be created or written: ${describe(error)}`, {
        cause: error,
      });
    }
    const secret = options.secret ?? resolveSecret(dir);
    const file = path.join(dir, DATABASE_FILE_NAME);

    let db: Database.Database | undefined;
    try {
      db = new Database(file);
      db.pragma("journal_mode = WAL");
      db.pragma("synchronous = NORMAL");
      db.pragma("busy_timeout = 5000");
      db.pragma("foreign_keys = ON");
      migrate(db, file);
      return new TokenStore(db, secret, options.now ?? Date.now);
    } catch (error) {
      db?.close();
      throw translateOpenError(error, file);
    }
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
    const row: TokenRow = {
      id: newTokenId(),
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
      this.db.transaction(() => {
        this.statements.insertToken.run(row);
        this.audit("api_token.created", spec.actor ?? spec.creator ?? "system", row, data, nowMs);
      })();
    } catch (error) {
      if (sqliteCode(error)?.startsWith("SQLITE_CONSTRAINT")) {
        // Only a random id or hash collision can get here, which is astronomically rare.
        throw new StoreError("conflict", `token id \`${row.id}\` or its hash already exists`, { cause: error });
      }
      throw error;
    }
    return { token, record };
  }

  /**
   * Looks a presented token up by its keyed hash: one read on the unique hash
   * index. Revoked and expired tokens are returned too; the engine decides.
   * Never throws on a damaged row: bad scope JSON grants no scopes.
   */
  findByToken(token: string): TokenRecord | undefined {
    const hash = hashToken(this.secret, token);
    const row = this.statements.byHash.get(hash) as TokenRow | undefined;
    // The index look-up already matched; DESIGN.md asks for a constant-time
    // comparison of hashes, and this one costs nothing next to the HMAC.
    if (row === undefined || !constantTimeEqual(row.hash, hash)) return undefined;
    return toRecord(row);
  }

  /** Looks a token up by an already computed hash (e.g. from a cache key). */
  findByHash(hash: string): TokenRecord | undefined {
    const row = this.statements.byHash.get(hash) as TokenRow | undefined;
    return row === undefined ? undefined : toRecord(row);
  }

  /** Looks a token up by its public id. */
  get(id: string): TokenRecord | undefined {
    const row = this.statements.byId.get(id) as TokenRow | undefined;
    return row === undefined ? undefined : toRecord(row);
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
   * @throws {@link StoreError} of kind `not_found` for an unknown id
   */
  revoke(id: string, actor: string): TokenRecord {
    return this.db.transaction((): TokenRecord => {
      const row = this.statements.byId.get(id) as TokenRow | undefined;
      if (row === undefined) throw new StoreError("not_found", `no token with id \`${id}\``);
      if (row.revoked_at !== null) return toRecord(row);
      const nowMs = this.now();
      this.statements.revoke.run({ id, revokedAt: nowMs, revokedBy: actor });
      const revoked = { ...row, revoked_at: nowMs, revoked_by: actor };
      this.audit("api_token.revoked", actor, revoked, { name: row.name }, nowMs);
      return toRecord(revoked);
    }).immediate();
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
    return this.db.transaction((): TokenRecord => {
      const row = this.statements.byId.get(id) as TokenRow | undefined;
      if (row === undefined) throw new StoreError("not_found", `no token with id \`${id}\``);
      const text = JSON.stringify(value);
      this.statements.updateControls.run({ id, controls: text });
      this.audit("api_token.controls_updated", actor, row, { controls: value }, this.now());
      return toRecord({ ...row, controls: text });
    }).immediate();
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
      restrictedWorkspaces: new Set(this.tenantStatements.workspaceKeys.all() as string[]),
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
   * Restricts a workspace: its protected operations get `workspace_restricted`
   * (423) until {@link unrestrictWorkspace}. Restricting twice changes nothing.
   * @returns whether this call restricted it
   */
  restrictWorkspace(tenant: string, workspace: string, options: { actor: string; reason?: string | null }): boolean {
    checkIdentifier("tenant", tenant);
    checkIdentifier("workspace", workspace);
    return this.administrativeChange(() => {
      const at = this.now();
      const changed = this.tenantStatements.restrict.run({ tenant, workspace, at, by: options.actor, reason: options.reason ?? null }).changes > 0;
      if (changed) this.auditAdministrative("workspace.restricted", options.actor, tenant, { workspace, reason: options.reason ?? null }, at);
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
    if (this.db.open) this.db.close();
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
      INSERT INTO tokens (id, hash, prefix, tenant, workspace, environment, type, name, role, key_level,
        scopes, creator, creator_role, created_at, expires_at, revoked_at, revoked_by, last_used_at, use_count, service, controls)
      VALUES (@id, @hash, @prefix, @tenant, @workspace, @environment, @type, @name, @role, @key_level,
        @scopes, @creator, @creator_role, @created_at, @expires_at, @revoked_at, @revoked_by, @last_used_at, @use_count, @service, @controls)`),
    updateControls: db.prepare(`UPDATE tokens SET controls = @controls WHERE id = @id`),
    byHash: db.prepare(`SELECT * FROM tokens WHERE hash = ?`),
    byId: db.prepare(`SELECT * FROM tokens WHERE id = ?`),
    list: db.prepare(`
      SELECT * FROM tokens
      WHERE (@tenant IS NULL OR tenant = @tenant)
        AND (@workspace IS NULL OR workspace = @workspace)
        AND (@includeRevoked = 1 OR revoked_at IS NULL)
      ORDER BY created_at, id`),
    revoke: db.prepare(`UPDATE tokens SET revoked_at = @revokedAt, revoked_by = @revokedBy WHERE id = @id`),
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

function toRecord(row: TokenRow): TokenRecord {
  return {
    id: row.id,
    tenant: row.tenant,
    workspace: row.workspace,
    environment: row.environment,
    type: row.type,
    name: row.name,
    role: row.role,
    keyLevel: row.key_level,
    scopes: parseScopes(row.scopes),
    creatorRole: row.creator_role,
    createdAtMs: row.created_at,
    expiresAtMs: row.expires_at,
    revokedAtMs: row.revoked_at,
    service: row.service,
    controls: parseControls(row.controls),
  };
}

function toListing(row: TokenRow): TokenListing {
  return {
    ...toRecord(row),
    prefix: row.prefix,
    creator: row.creator,
    revokedBy: row.revoked_by,
    lastUsedAtMs: row.last_used_at,
    useCount: row.use_count,
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

/**
 * Reads the controls column. Damaged JSON fails closed: an empty allowlist,
 * which the engine cannot compile, so every request of the token is answered
 * `unavailable` (and logged) instead of passing without its controls.
 */
function parseControls(text: string | null): TokenControls {
  if (text === null) return {};
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
