/**
 * Tenant suspension and workspace restriction in the store: prepared
 * statements and row mapping, used by {@link TokenStore}. Only rows of
 * currently paused tenants and workspaces exist; resuming deletes the row and
 * the audit trail keeps the history.
 */
import type Database from "better-sqlite3";
import type { WorkspaceRestrictionMode } from "../engine/workspace-restriction-mode.js";

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
 * service's cache; workspaces are keyed `tenant/workspace`.
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

interface TenantRow {
  tenant: string;
  suspended_at: number;
  suspended_by: string;
  reason: string | null;
}

interface WorkspaceRow {
  tenant: string;
  workspace: string;
  restricted_at: number;
  restricted_by: string;
  reason: string | null;
  mode: WorkspaceRestrictionMode;
}

/** Prepares the statements once, when the store opens. */
export function prepareTenantStatements(db: Database.Database) {
  return {
    suspend: db.prepare(`
      INSERT INTO tenants (tenant, suspended_at, suspended_by, reason) VALUES (@tenant, @at, @by, @reason)
      ON CONFLICT (tenant) DO NOTHING`),
    resume: db.prepare(`DELETE FROM tenants WHERE tenant = ?`),
    tenants: db.prepare(`SELECT * FROM tenants ORDER BY tenant`),
    // why: restricting again in another mode replaces the row (e.g. writes, then all during an incident); in the same mode it changes nothing
    restrict: db.prepare(`
      INSERT INTO workspaces (tenant, workspace, restricted_at, restricted_by, reason, mode) VALUES (@tenant, @workspace, @at, @by, @reason, @mode)
      ON CONFLICT (tenant, workspace) DO UPDATE SET restricted_at = excluded.restricted_at, restricted_by = excluded.restricted_by,
        reason = excluded.reason, mode = excluded.mode
      WHERE workspaces.mode <> excluded.mode`),
    workspaceMode: db.prepare(`SELECT mode FROM workspaces WHERE tenant = ? AND workspace = ?`).pluck(),
    unrestrict: db.prepare(`DELETE FROM workspaces WHERE tenant = ? AND workspace = ?`),
    workspaces: db.prepare(`SELECT * FROM workspaces WHERE (@tenant IS NULL OR tenant = @tenant) ORDER BY tenant, workspace`),
    tenantNames: db.prepare(`SELECT tenant FROM tenants`).pluck(),
    workspaceModes: db.prepare(`SELECT tenant || '/' || workspace AS key, mode FROM workspaces`).raw(),
  };
}

export function toTenantSuspension(row: unknown): TenantSuspension {
  const r = row as TenantRow;
  return { tenant: r.tenant, suspendedAtMs: r.suspended_at, suspendedBy: r.suspended_by, reason: r.reason };
}

export function toWorkspaceRestriction(row: unknown): WorkspaceRestriction {
  const r = row as WorkspaceRow;
  return { tenant: r.tenant, workspace: r.workspace, restrictedAtMs: r.restricted_at, restrictedBy: r.restricted_by, reason: r.reason, mode: r.mode };
}
