/**
 * Tenant suspension and workspace restriction in the store: prepared
 * statements and row mapping, used by {@link TokenStore}. Only rows of
 * currently paused tenants and workspaces exist; resuming deletes the row and
 * the audit trail keeps the history.
 */
import type Database from "better-sqlite3";

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
}

/**
 * Every suspended tenant and restricted workspace at one moment, for the
 * service's cache; workspaces are keyed `tenant/workspace`.
 */
export interface AdministrativeState {
  readonly suspendedTenants: ReadonlySet<string>;
  readonly restrictedWorkspaces: ReadonlySet<string>;
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
}

/** Prepares the statements once, when the store opens. */
export function prepareTenantStatements(db: Database.Database) {
  return {
    suspend: db.prepare(`
      INSERT INTO tenants (tenant, suspended_at, suspended_by, reason) VALUES (@tenant, @at, @by, @reason)
      ON CONFLICT (tenant) DO NOTHING`),
    resume: db.prepare(`DELETE FROM tenants WHERE tenant = ?`),
    tenants: db.prepare(`SELECT * FROM tenants ORDER BY tenant`),
    restrict: db.prepare(`
      INSERT INTO workspaces (tenant, workspace, restricted_at, restricted_by, reason) VALUES (@tenant, @workspace, @at, @by, @reason)
      ON CONFLICT (tenant, workspace) DO NOTHING`),
    unrestrict: db.prepare(`DELETE FROM workspaces WHERE tenant = ? AND workspace = ?`),
    workspaces: db.prepare(`SELECT * FROM workspaces WHERE (@tenant IS NULL OR tenant = @tenant) ORDER BY tenant, workspace`),
    tenantNames: db.prepare(`SELECT tenant FROM tenants`).pluck(),
    workspaceKeys: db.prepare(`SELECT tenant || '/' || workspace FROM workspaces`).pluck(),
  };
}

export function toTenantSuspension(row: unknown): TenantSuspension {
  const r = row as TenantRow;
  return { tenant: r.tenant, suspendedAtMs: r.suspended_at, suspendedBy: r.suspended_by, reason: r.reason };
}

export function toWorkspaceRestriction(row: unknown): WorkspaceRestriction {
  const r = row as WorkspaceRow;
  return { tenant: r.tenant, workspace: r.workspace, restrictedAtMs: r.restricted_at, restrictedBy: r.restricted_by, reason: r.reason };
}
