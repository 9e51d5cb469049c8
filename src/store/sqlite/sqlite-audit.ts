/** The `audit_events` table on SQLite: the {@link AuditLog} over one connection. */
import type Database from "better-sqlite3";
import type { AdministrativeEvent, LifecycleEvent } from "../../engine/codes.js";
import type { AuditLog, LifecycleAuditRecord } from "../store-interfaces.js";
import { parseObject } from "../stored-columns.js";

interface AuditRow {
  id: number;
  at: number;
  event: LifecycleEvent | AdministrativeEvent;
  actor: string;
  token_id: string | null;
  tenant: string | null;
  data: string;
}

/** Prepares the audit statements once per connection. */
export function prepareAuditStatements(db: Database.Database) {
  return {
    insert: db.prepare(`
      INSERT INTO audit_events (at, event, actor, token_id, tenant, data)
      VALUES (@at, @event, @actor, @tokenId, @tenant, @data)`),
    list: db.prepare(`
      SELECT * FROM audit_events WHERE (@tenant IS NULL OR tenant = @tenant) AND (@event IS NULL OR event = @event) AND (@since IS NULL OR at >= @since)
      ORDER BY id DESC LIMIT @limit`),
  };
}

/** The audit log over the statements `live()` returns; writes join the connection's open transaction. */
export function createSqliteAuditLog(live: () => ReturnType<typeof prepareAuditStatements>): AuditLog {
  return {
    async append(entry) {
      live().insert.run({ at: entry.atMs, event: entry.event, actor: entry.actor, tokenId: entry.tokenId, tenant: entry.tenant, data: JSON.stringify(entry.data) });
    },
    async list(filter) {
      const rows = live().list.all({ tenant: filter.tenant ?? null, event: filter.event ?? null, since: filter.sinceMs ?? null, limit: filter.limit }) as AuditRow[];
      return rows.map((row): LifecycleAuditRecord => ({
        id: row.id,
        atMs: row.at,
        event: row.event,
        actor: row.actor,
        tokenId: row.token_id,
        tenant: row.tenant,
        data: parseObject(row.data),
      }));
    },
  };
}

