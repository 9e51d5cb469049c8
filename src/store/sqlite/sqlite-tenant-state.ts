/**
 * Tenant suspension and workspace restriction on SQLite: prepared statements,
 * row mapping and the {@link TenantStateRepository} over one connection.
 */
import type Database from "better-sqlite3";
import type { WorkspaceRestrictionMode } from "../../engine/workspace-restriction-mode.js";
import type { AdministrativeState, TenantStateRepository, TenantSuspension, WorkspaceRestriction } from "../store-interfaces.js";

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

/** The SQLite {@link TenantStateRepository}: its snapshot is read synchronously. */
export type SqliteTenantStateRepository = Omit<TenantStateRepository, "readAdministrativeState"> & { readAdministrativeState(): AdministrativeState };

/** Prepares the statements once per connection. */
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

/**
 * The repository over the statements `live()` returns; writes join the
 * connection's open transaction, and the snapshot is read synchronously (two
 * small reads) for the decision path's cache.
 */
export function createSqliteTenantStateRepository(live: () => ReturnType<typeof prepareTenantStatements>): SqliteTenantStateRepository {
  return {
    async suspendTenant(s) {
      return live().suspend.run({ tenant: s.tenant, at: s.suspendedAtMs, by: s.suspendedBy, reason: s.reason }).changes > 0;
    },
    async resumeTenant(tenant) {
      return live().resume.run(tenant).changes > 0;
    },
    async workspaceMode(tenant, workspace) {
      return live().workspaceMode.get(tenant, workspace) as WorkspaceRestrictionMode | undefined;
    },
    async restrictWorkspace(r) {
      return live().restrict.run({ tenant: r.tenant, workspace: r.workspace, at: r.restrictedAtMs, by: r.restrictedBy, reason: r.reason, mode: r.mode }).changes > 0;
    },
    async unrestrictWorkspace(tenant, workspace) {
      return live().unrestrict.run(tenant, workspace).changes > 0;
    },
    async listSuspendedTenants() {
      return (live().tenants.all() as TenantRow[]).map(toTenantSuspension);
    },
    async listRestrictedWorkspaces(filter) {
      return (live().workspaces.all({ tenant: filter.tenant ?? null }) as WorkspaceRow[]).map(toWorkspaceRestriction);
    },
    readAdministrativeState() {
      const statements = live();
      return {
        suspendedTenants: new Set(statements.tenantNames.all() as string[]),
        restrictedWorkspaces: new Map(statements.workspaceModes.all() as [string, WorkspaceRestrictionMode][]),
      };
    },
  };
}

function toTenantSuspension(r: TenantRow): TenantSuspension {
  return { tenant: r.tenant, suspendedAtMs: r.suspended_at, suspendedBy: r.suspended_by, reason: r.reason };
}

function toWorkspaceRestriction(r: WorkspaceRow): WorkspaceRestriction {
  return { tenant: r.tenant, workspace: r.workspace, restrictedAtMs: r.restricted_at, restrictedBy: r.restricted_by, reason: r.reason, mode: r.mode };
}
