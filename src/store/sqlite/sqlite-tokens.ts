/**
 * The `tokens` table on SQLite: prepared statements, row mapping and the
 * {@link TokenRepository} over one connection.
 */
import type Database from "better-sqlite3";
import type { TokenRecord } from "../../engine/types.js";
import type { ActiveTokenFilter, StoredToken, TokenListFilter, TokenListing, TokenRepository, TokenUse } from "../store-interfaces.js";
import { constantTimeEqual } from "../../token/hash.js";
import { StoreError } from "../store-error.js";
import { parseControls, parseScopes } from "../stored-columns.js";

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

/** Prepares the token statements once per connection. */
export function prepareTokenStatements(db: Database.Database) {
  return {
    insert: db.prepare(`
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
    revoke: db.prepare(`
      UPDATE tokens SET revoked_at = @revokedAt, revoked_by = @revokedBy, revoked_reason = @reason WHERE id = @id AND revoked_at IS NULL`),
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
  };
}

type TokenStatements = ReturnType<typeof prepareTokenStatements>;

/** The SQLite {@link TokenRepository}: its decision-path look-up answers synchronously. */
export type SqliteTokenRepository = Omit<TokenRepository, "findByHash"> & { findByHash(hash: string): TokenRecord | undefined };

/**
 * The token repository over the statements `live()` returns (the store's
 * current connection). Every method runs synchronously and answers with a
 * settled promise; `findByHash` answers directly, for the decision path.
 * Writes run in whatever transaction the connection has open.
 */
export function createSqliteTokenRepository(live: () => TokenStatements): SqliteTokenRepository {
  const run = <T>(work: () => T): Promise<T> => {
    try {
      return Promise.resolve(work());
    } catch (error) {
      return Promise.reject(error);
    }
  };
  return {
    findByHash(hash) {
      const columns = live().recordByHash.get(hash) as RecordColumns | undefined;
      // The index look-up already matched; DESIGN.md asks for a constant-time
      // comparison of hashes, and this one costs nothing next to the HMAC.
      if (columns === undefined || !constantTimeEqual(columns[0], hash)) return undefined;
      return recordFromColumns(columns);
    },
    byId: (id) => run(() => {
      const row = live().byId.get(id) as TokenRow | undefined;
      return row === undefined ? undefined : toListing(row);
    }),
    lineage: (id) => run(() => (live().lineage.all({ id }) as TokenRow[]).map(toListing)),
    list: (filter: TokenListFilter) => run(() =>
      (live().list.all({
        tenant: filter.tenant ?? null,
        workspace: filter.workspace ?? null,
        includeRevoked: filter.includeRevoked === true ? 1 : 0,
      }) as TokenRow[]).map(toListing)),
    countActive: (filter: ActiveTokenFilter, nowMs) => run(() =>
      (live().countActive.get({ tenant: filter.tenant, type: filter.type, creator: filter.creator ?? null, now: nowMs }) as { n: number }).n),
    insert: (token) => run(() => {
      try {
        live().insert.run(toRow(token));
      } catch (error) {
        if (sqliteCode(error)?.startsWith("SQLITE_CONSTRAINT")) {
          // Only a random id or hash collision can get here, which is astronomically rare.
          throw new StoreError("conflict", `token id \`${token.id}\` or its hash already exists`, { cause: error });
        }
        throw error;
      }
    }),
    revoke: (id, revocation) => run(() =>
      live().revoke.run({ id, revokedAt: revocation.atMs, revokedBy: revocation.by, reason: revocation.reason }).changes > 0),
    markRotated: (id, mark) => run(() => {
      live().markRotated.run({ id, successorId: mark.successorId, rotatedAt: mark.rotatedAtMs, endsAt: mark.overlapEndsAtMs });
    }),
    capOverlaps: (lineageId, endsAtMs, nowMs) => run(() => {
      live().capLineageOverlap.run({ lineageId, endsAt: endsAtMs, now: nowMs });
    }),
    updateControls: (id, controls) => run(() => live().updateControls.run({ id, controls: JSON.stringify(controls) }).changes > 0),
    recordUse: (batch: ReadonlyMap<string, TokenUse>) => run(() => {
      const statements = live();
      for (const [id, use] of batch) statements.recordUse.run({ id, lastUsedAt: use.lastUsedAtMs, count: use.count });
    }),
  };
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

function toRow(token: StoredToken): TokenRow {
  return {
    id: token.id,
    hash: token.hash,
    prefix: token.prefix,
    tenant: token.tenant,
    workspace: token.workspace,
    environment: token.environment,
    type: token.type,
    name: token.name,
    role: token.role,
    key_level: token.keyLevel,
    scopes: token.scopes === null ? null : JSON.stringify(token.scopes),
    creator: token.creator,
    creator_role: token.creatorRole,
    created_at: token.createdAtMs,
    expires_at: token.expiresAtMs,
    revoked_at: token.revokedAtMs,
    revoked_by: token.revokedBy,
    last_used_at: token.lastUsedAtMs,
    use_count: token.useCount,
    service: token.service,
    controls: JSON.stringify(token.controls),
    lineage_id: token.lineageId,
    predecessor_id: token.predecessorId,
    successor_id: token.successorId,
    rotated_at: token.rotatedAtMs,
    overlap_ends_at: token.overlapEndsAtMs,
    revoked_reason: token.revokedReason,
  };
}

export function sqliteCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}
