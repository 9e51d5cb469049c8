/** The `security_events` table on PostgreSQL: the {@link SecurityEventLog}, one statement per batch. */
import type pg from "pg";
import type { AuditEvent } from "../../engine/codes.js";
import { securityWebhookEvent } from "../../webhooks/webhook-events.js";
import { postgresWebhookWriter } from "./postgres-webhooks.js";
import { mergeSecurityEventCounts, type SecurityEventCount, type SecurityEventLog } from "../store-interfaces.js";

interface SecurityEventRow {
  minute: string;
  event: AuditEvent;
  token_id: string;
  tenant: string | null;
  count: string;
  last_at: string;
}

/** What the log needs of a pool or a client. */
interface Queryable {
  query<R extends pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
}

/**
 * The security event log on `db`. A batch is one `INSERT … SELECT FROM unnest
 * … ON CONFLICT` statement, so every replica adds to the same rows
 * atomically; keys repeated in the batch are summed first (PostgreSQL refuses
 * to update one row twice in a statement). In the same transaction
 * (`transaction`), the rows the statement created (`xmax = 0`: inserted, not
 * updated) enqueue their webhook events.
 */
export function postgresSecurityEventLog(db: Queryable, transaction: <T>(work: (client: Queryable) => Promise<T>) => Promise<T>): SecurityEventLog {
  return {
    async record(batch) {
      const rows = mergeSecurityEventCounts(batch);
      if (rows.length === 0) return;
      await transaction(async (client) => {
        const { rows: created } = await client.query<{ minute: string; event: string; token_id: string; inserted: boolean }>(
          `INSERT INTO security_events (minute, event, token_id, tenant, count, last_at)
           SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[])
           ON CONFLICT (minute, event, token_id) DO UPDATE SET
             count = security_events.count + excluded.count,
             last_at = GREATEST(security_events.last_at, excluded.last_at),
             tenant = COALESCE(security_events.tenant, excluded.tenant)
           RETURNING minute, event, token_id, (xmax = 0) AS inserted`,
          [
            rows.map((row) => row.minuteMs),
            rows.map((row) => row.event),
            rows.map((row) => row.tokenId ?? ""),
            rows.map((row) => row.tenant),
            rows.map((row) => row.count),
            rows.map((row) => row.lastAtMs),
          ],
        );
        const isNew = new Set(created.filter((row) => row.inserted).map((row) => `${row.minute}\u0000${row.event}\u0000${row.token_id}`));
        const writer = postgresWebhookWriter(client);
        for (const row of rows) {
          if (isNew.has(`${row.minuteMs}\u0000${row.event}\u0000${row.tokenId ?? ""}`)) await writer.enqueue(securityWebhookEvent(row));
        }
      });
    },
    async prune(beforeMs, maxRows) {
      // why: a bounded batch holds its row locks briefly; SKIP LOCKED lets replicas pruning at once take different rows instead of waiting on each other
      const { rowCount } = await db.query(
        `DELETE FROM security_events WHERE (minute, event, token_id) IN (
           SELECT minute, event, token_id FROM security_events WHERE minute < $1 ORDER BY minute LIMIT $2 FOR UPDATE SKIP LOCKED)`,
        [beforeMs, maxRows],
      );
      return rowCount ?? 0;
    },
    async list(filter) {
      const { rows } = await db.query<SecurityEventRow>(
        `SELECT * FROM security_events
         WHERE ($1::text IS NULL OR event = $1) AND ($2::bigint IS NULL OR last_at >= $2) AND ($3::text IS NULL OR tenant = $3)
         ORDER BY minute DESC, last_at DESC LIMIT $4`,
        [filter.event ?? null, filter.sinceMs ?? null, filter.tenant ?? null, filter.limit],
      );
      return rows.map(
        (row): SecurityEventCount => ({
          minuteMs: Number(row.minute),
          event: row.event,
          tokenId: row.token_id === "" ? null : row.token_id,
          tenant: row.tenant,
          count: Number(row.count),
          lastAtMs: Number(row.last_at),
        }),
      );
    },
  };
}
