/** The `security_events` table on SQLite: the {@link SecurityEventLog} over one connection. */
import type Database from "better-sqlite3";
import type { AuditEvent } from "../../engine/codes.js";
import { mergeSecurityEventCounts, type SecurityEventCount, type SecurityEventLog, type WebhookOutboxWriter } from "../store-interfaces.js";
import { securityWebhookEvent } from "../../webhooks/webhook-events.js";

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
    // why: an insert and an update apart, so that a row's first write is known and enqueues its one webhook event
    insert: db.prepare(`
      INSERT INTO security_events (minute, event, token_id, tenant, count, last_at)
      VALUES (@minute, @event, @tokenId, @tenant, @count, @lastAt)
      ON CONFLICT (minute, event, token_id) DO NOTHING`),
    addTo: db.prepare(`
      UPDATE security_events SET count = count + @count, last_at = max(last_at, @lastAt), tenant = coalesce(tenant, @tenant)
      WHERE minute = @minute AND event = @event AND token_id = @tokenId`),
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

/**
 * The security event log over the statements `live()` returns; `record` must
 * run inside a transaction, which `outbox` (the same connection's) joins.
 */
export function createSqliteSecurityEventLog(live: () => ReturnType<typeof prepareSecurityEventStatements>, outbox: WebhookOutboxWriter): SecurityEventLog {
  return {
    async record(batch) {
      const { insert, addTo } = live();
      for (const row of mergeSecurityEventCounts(batch)) {
        const values = { minute: row.minuteMs, event: row.event, tokenId: row.tokenId ?? "", tenant: row.tenant, count: row.count, lastAt: row.lastAtMs };
        if (insert.run(values).changes > 0) await outbox.enqueue(securityWebhookEvent(row));
        else addTo.run(values);
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
