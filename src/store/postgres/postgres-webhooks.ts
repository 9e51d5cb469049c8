/**
 * The webhook outbox on PostgreSQL (`webhook_events`, `webhook_deliveries`),
 * shared by every replica: fan-out and claims take rows with
 * `FOR UPDATE SKIP LOCKED`, and a claim moves the row's due time to the end
 * of its lease, so two replicas never try one delivery at once.
 */
import type pg from "pg";
import type { WebhookOutbox, WebhookOutboxWriter } from "../store-interfaces.js";
import { deliveryOf, type DeliveryRow } from "../webhook-rows.js";


/** What the outbox needs of a pool or a client. */
interface Queryable {
  query<R extends pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
}

/** The writer on `db`: a transaction's client, so an event commits or rolls back with the change it records. */
export function postgresWebhookWriter(db: Queryable): WebhookOutboxWriter {
  return {
    async enqueue(event) {
      await db.query("INSERT INTO webhook_events (id, type, at, body) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING", [event.id, event.type, event.atMs, event.body]);
    },
  };
}

/**
 * The outbox on `db` (the pool); `transaction` runs the fan-out on one
 * client in one transaction.
 */
export function postgresWebhookOutbox(db: Queryable, transaction: <T>(work: (client: Queryable) => Promise<T>) => Promise<T>): WebhookOutbox {
  return {
    ...postgresWebhookWriter(db),
    fanOut: (routes, options) =>
      transaction(async (client) => {
        const { rows: events } = await client.query<{ id: string; type: string; body: string }>(
          "SELECT id, type, body FROM webhook_events ORDER BY at, id LIMIT $1 FOR UPDATE SKIP LOCKED",
          [options.limit],
        );
        if (events.length === 0) return { events: 0, deliveries: 0, dropped: 0 };
        const { rows } = await client.query<{ n: string }>("SELECT count(*) AS n FROM webhook_deliveries WHERE status = 'pending'");
        let pending = Number(rows[0]?.n ?? 0);
        let dropped = 0;
        const eventIds: string[] = [];
        const endpointIds: string[] = [];
        const types: string[] = [];
        const bodies: string[] = [];
        for (const event of events) {
          for (const route of routes) {
            if (!route.events.has(event.type)) continue;
            if (pending >= options.capacity) {
              dropped++;
              continue;
            }
            pending++;
            eventIds.push(event.id);
            endpointIds.push(route.id);
            types.push(event.type);
            bodies.push(event.body);
          }
        }
        let deliveries = 0;
        if (eventIds.length > 0) {
          const inserted = await client.query(
            `INSERT INTO webhook_deliveries (event_id, endpoint_id, type, body, created_at, status, attempts, next_attempt_at, updated_at)
             SELECT e, p, t, b, $5, 'pending', 0, $5, $5 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS x(e, p, t, b)
             ON CONFLICT (event_id, endpoint_id) DO NOTHING`,
            [eventIds, endpointIds, types, bodies, options.nowMs],
          );
          deliveries = inserted.rowCount ?? 0;
        }
        await client.query("DELETE FROM webhook_events WHERE id = ANY($1::text[])", [events.map((event) => event.id)]);
        return { events: events.length, deliveries, dropped };
      }),
    async claim(options) {
      if (options.endpointIds.length === 0) return [];
      const { rows } = await db.query<DeliveryRow>(
        `UPDATE webhook_deliveries d SET lease_id = $1, next_attempt_at = $2
         FROM (SELECT event_id, endpoint_id FROM webhook_deliveries
               WHERE status = 'pending' AND next_attempt_at <= $3 AND endpoint_id = ANY($4::text[])
               ORDER BY next_attempt_at LIMIT $5 FOR UPDATE SKIP LOCKED) c
         WHERE d.event_id = c.event_id AND d.endpoint_id = c.endpoint_id
         RETURNING d.*`,
        [options.leaseId, options.leaseUntilMs, options.nowMs, options.endpointIds, options.limit],
      );
      return rows.map(deliveryOf);
    },
    async complete(eventId, endpointId, leaseId, outcome) {
      const where = "WHERE event_id = $1 AND endpoint_id = $2 AND lease_id = $3 AND status = 'pending'";
      const key = [eventId, endpointId, leaseId, outcome.atMs];
      if (outcome.kind === "delivered") {
        await db.query(`UPDATE webhook_deliveries SET status = 'delivered', attempts = attempts + 1, delivered_at = $4, updated_at = $4, lease_id = NULL, last_error = NULL ${where}`, key);
      } else if (outcome.kind === "retry") {
        await db.query(`UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = $5, updated_at = $4, lease_id = NULL, last_error = $6 ${where}`, [...key, outcome.nextAttemptAtMs, outcome.error]);
      } else {
        await db.query(`UPDATE webhook_deliveries SET status = 'failed', attempts = attempts + 1, updated_at = $4, lease_id = NULL, last_error = $5 ${where}`, [...key, outcome.error]);
      }
    },
    async sweep(options) {
      const expired = await db.query(
        `UPDATE webhook_deliveries SET status = 'failed', updated_at = $1, lease_id = NULL, last_error = coalesce(last_error || '; ', '') || 'given up: too old'
         WHERE status = 'pending' AND created_at < $2 AND next_attempt_at <= $1`,
        [options.nowMs, options.createdBeforeMs],
      );
      await db.query("DELETE FROM webhook_deliveries WHERE status <> 'pending' AND updated_at < $1", [options.finishedBeforeMs]);
      return expired.rowCount ?? 0;
    },
    async list(filter) {
      const { rows } = await db.query<DeliveryRow>(
        `SELECT * FROM webhook_deliveries WHERE ($1::text IS NULL OR endpoint_id = $1) AND ($2::text IS NULL OR status = $2)
         ORDER BY created_at DESC, event_id DESC LIMIT $3`,
        [filter.endpointId ?? null, filter.status ?? null, filter.limit],
      );
      return rows.map(deliveryOf);
    },
    async depth() {
      const { rows } = await db.query<{ pending: string; waiting: string }>(
        "SELECT (SELECT count(*) FROM webhook_deliveries WHERE status = 'pending') AS pending, (SELECT count(*) FROM webhook_events) AS waiting",
      );
      return { pending: Number(rows[0]?.pending ?? 0), waitingEvents: Number(rows[0]?.waiting ?? 0) };
    },
  };
}
