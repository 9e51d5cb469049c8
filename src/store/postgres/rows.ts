/**
 * Rows of the PostgreSQL store to and from the store interfaces' values. The
 * columns are SQLite's, so damaged JSON reads the same fail-closed way.
 */
import type { TokenRecord } from "../../engine/types.js";
import type { LifecycleAuditRecord, StoredToken, TenantSuspension, TokenListing, WorkspaceRestriction } from "../store-interfaces.js";
import { parseControls, parseObject, parseScopes } from "../stored-columns.js";

/** A row of `tokens` as node-postgres returns it (BIGINT parsed as numbers, see pool.ts). */
export interface TokenRow {
  hash: string;
  id: string;
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
  controls: string;
  service: string | null;
  lineage_id: string | null;
  predecessor_id: string | null;
  successor_id: string | null;
  rotated_at: number | null;
  overlap_ends_at: number | null;
  revoked_reason: string | null;
}

/** Columns of `tokens` an insert writes (all but `seq`), in {@link tokenValues} order. */
export const TOKEN_COLUMNS = [
  "hash", "id", "prefix", "tenant", "workspace", "environment", "type", "name", "role", "key_level", "scopes", "creator",
  "creator_role", "created_at", "expires_at", "revoked_at", "revoked_by", "last_used_at", "use_count", "controls", "service",
  "lineage_id", "predecessor_id", "successor_id", "rotated_at", "overlap_ends_at", "revoked_reason",
] as const satisfies readonly (keyof TokenRow)[];

/** The columns the decision path reads, fewer than `*`. */
export const RECORD_COLUMNS = [
  "id", "tenant", "workspace", "environment", "type", "name", "role", "key_level", "scopes", "creator_role", "created_at",
  "expires_at", "revoked_at", "service", "controls", "lineage_id", "successor_id", "overlap_ends_at",
] as const satisfies readonly (keyof TokenRow)[];

/** Parameter values of a stored token, in {@link TOKEN_COLUMNS} order. */
export function tokenValues(token: StoredToken): unknown[] {
  const row: TokenRow = {
    hash: token.hash,
    id: token.id,
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
    controls: JSON.stringify(token.controls ?? {}),
    service: token.service,
    lineage_id: token.lineageId,
    predecessor_id: token.predecessorId,
    successor_id: token.successorId,
    rotated_at: token.rotatedAtMs,
    overlap_ends_at: token.overlapEndsAtMs,
    revoked_reason: token.revokedReason,
  };
  return TOKEN_COLUMNS.map((column) => row[column]);
}

/** The record the engine reads, from a row with at least {@link RECORD_COLUMNS}. */
export function toRecord(row: Pick<TokenRow, (typeof RECORD_COLUMNS)[number]>): TokenRecord {
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
    lineageId: row.lineage_id ?? row.id,
    successorId: row.successor_id,
    overlapEndsAtMs: row.overlap_ends_at,
  };
}

export function toListing(row: TokenRow): TokenListing {
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

export interface AuditRow {
  id: number;
  at: number;
  event: LifecycleAuditRecord["event"];
  actor: string;
  token_id: string | null;
  tenant: string | null;
  data: string;
}

export function toAuditRecord(row: AuditRow): LifecycleAuditRecord {
  return { id: row.id, atMs: row.at, event: row.event, actor: row.actor, tokenId: row.token_id, tenant: row.tenant, data: parseObject(row.data) };
}

export function toTenantSuspension(row: { tenant: string; suspended_at: number; suspended_by: string; reason: string | null }): TenantSuspension {
  return { tenant: row.tenant, suspendedAtMs: row.suspended_at, suspendedBy: row.suspended_by, reason: row.reason };
}

export function toWorkspaceRestriction(row: {
  tenant: string;
  workspace: string;
  restricted_at: number;
  restricted_by: string;
  reason: string | null;
  mode: WorkspaceRestriction["mode"];
}): WorkspaceRestriction {
  return { tenant: row.tenant, workspace: row.workspace, restrictedAtMs: row.restricted_at, restrictedBy: row.restricted_by, reason: row.reason, mode: row.mode };
}

