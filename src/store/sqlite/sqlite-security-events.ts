/** The `security_events` table on SQLite: the {@link SecurityEventLog} over one connection. */
import type Database from "better-sqlite3";
import type { AuditEvent } from "../../engine/codes.js";
import { mergeSecurityEventCounts, type SecurityEventCount, type SecurityEventLog } from "../store-interfaces.js";

interface SecurityEventRow {
  minute: number;
  event: AuditEvent;
  token_id: string;
  tenant: string | null;
  count: number;
  last_at: number;
}

/** Prepares the security event statements once per connection. */
export function prepareSecurityEventStatements(db: Database.Database) {
  return {
    upsert: db.prepare(`
      INSERT INTO security_events (minute, event, token_id, tenant, count, last_at)
      VALUES (@minute, @event, @tokenId, @tenant, @count, @lastAt)
      ON CONFLICT (minute, event, token_id) DO UPDATE SET
        count = count + excluded.count,
        last_at = max(last_at, excluded.last_at),
        tenant = coalesce(tenant, excluded.tenant)`),
    list: db.prepare(`
      SELECT * FROM security_events
      WHERE (@event IS NULL OR event = @event) AND (@since IS NULL OR last_at >= @since) AND (@tenant IS NULL OR tenant = @tenant)
      ORDER BY minute DESC, last_at DESC LIMIT @limit`),
    // why: the primary key leads with minute, so the oldest rows are found in index order and a batch touches only them
    prune: db.prepare(`
      DELETE FROM security_events WHERE (minute, event, token_id) IN (
        SELECT minute, event, token_id FROM security_events WHERE minute < @before ORDER BY minute LIMIT @maxRows)`),
  };
}

/** The security event log over the statements `live()` returns; `record` must run inside a transaction. */
export function createSqliteSecurityEventLog(live: () => ReturnType<typeof prepareSecurityEventStatements>): SecurityEventLog {
  return {
    async record(batch) {
      const { upsert } = live();
      for (const row of mergeSecurityEventCounts(batch)) {
        upsert.run({ minute: row.minuteMs, event: row.event, tokenId: row.tokenId ?? "", tenant: row.tenant, count: row.count, lastAt: row.lastAtMs });
      }
    },
    async prune(beforeMs, maxRows) {
      return live().prune.run({ before: beforeMs, maxRows }).changes;
    },
    async list(filter) {
      const rows = live().list.all({ event: filter.event ?? null, since: filter.sinceMs ?? null, tenant: filter.tenant ?? null, limit: filter.limit }) as SecurityEventRow[];
      return rows.map(
        (row): SecurityEventCount => ({
          minuteMs: row.minute,
          event: row.event,
          tokenId: row.token_id === "" ? null : row.token_id,
          tenant: row.tenant,
          count: row.count,
          lastAtMs: row.last_at,
        }),
      );
    },
  };
}
