/** The webhook outbox on SQLite (`webhook_events`, `webhook_deliveries`): the {@link WebhookOutbox} over one connection. */
import type Database from "better-sqlite3";
import type { WebhookFanOut, WebhookOutbox, WebhookOutboxEvent, WebhookOutboxWriter } from "../store-interfaces.js";
import { deliveryOf, type DeliveryRow } from "../webhook-rows.js";


/** Prepares the outbox statements once per connection. */
export function prepareWebhookStatements(db: Database.Database) {
  return {
    enqueue: db.prepare(`INSERT INTO webhook_events (id, type, at, body) VALUES (@id, @type, @at, @body) ON CONFLICT (id) DO NOTHING`),
    waiting: db.prepare(`SELECT * FROM webhook_events ORDER BY at, id LIMIT @limit`),
    deleteEvent: db.prepare(`DELETE FROM webhook_events WHERE id = ?`),
    pendingCount: db.prepare(`SELECT count(*) AS n FROM webhook_deliveries WHERE status = 'pending'`).pluck(),
    waitingCount: db.prepare(`SELECT count(*) AS n FROM webhook_events`).pluck(),
    anyWaiting: db.prepare(`SELECT 1 FROM webhook_events LIMIT 1`).pluck(),
    anyDue: db.prepare(`SELECT 1 FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= ? LIMIT 1`).pluck(),
    insertDelivery: db.prepare(`
      INSERT INTO webhook_deliveries (event_id, endpoint_id, type, body, created_at, status, attempts, next_attempt_at, updated_at)
      VALUES (@eventId, @endpointId, @type, @body, @now, 'pending', 0, @now, @now)
      ON CONFLICT (event_id, endpoint_id) DO NOTHING`),
    claim: db.prepare(`
      UPDATE webhook_deliveries SET lease_id = @leaseId, next_attempt_at = @leaseUntil
      WHERE rowid IN (
        SELECT rowid FROM webhook_deliveries
        WHERE status = 'pending' AND next_attempt_at <= @now AND endpoint_id IN (SELECT value FROM json_each(@endpointIds))
        ORDER BY next_attempt_at LIMIT @limit)
      RETURNING *`),
    delivered: db.prepare(`
      UPDATE webhook_deliveries SET status = 'delivered', attempts = attempts + 1, delivered_at = @at, updated_at = @at, lease_id = NULL, last_error = NULL
      WHERE event_id = @eventId AND endpoint_id = @endpointId AND lease_id = @leaseId AND status = 'pending'`),
    retry: db.prepare(`
      UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = @next, updated_at = @at, lease_id = NULL, last_error = @error
      WHERE event_id = @eventId AND endpoint_id = @endpointId AND lease_id = @leaseId AND status = 'pending'`),
    failed: db.prepare(`
      UPDATE webhook_deliveries SET status = 'failed', attempts = attempts + 1, updated_at = @at, lease_id = NULL, last_error = @error
      WHERE event_id = @eventId AND endpoint_id = @endpointId AND lease_id = @leaseId AND status = 'pending'`),
    expire: db.prepare(`
      UPDATE webhook_deliveries SET status = 'failed', updated_at = @now, lease_id = NULL, last_error = coalesce(last_error || '; ', '') || 'given up: too old'
      WHERE status = 'pending' AND created_at < @createdBefore AND next_attempt_at <= @now`),
    prune: db.prepare(`DELETE FROM webhook_deliveries WHERE status <> 'pending' AND updated_at < @finishedBefore`),
    list: db.prepare(`
      SELECT * FROM webhook_deliveries
      WHERE (@endpointId IS NULL OR endpoint_id = @endpointId) AND (@status IS NULL OR status = @status)
      ORDER BY created_at DESC, event_id DESC LIMIT @limit`),
  };
}

/**
 * The outbox over the statements `live()` returns. `enqueue` joins the
 * connection's open transaction; `write` runs a call in a transaction of its
 * own (the store's queue), so that fan-out, claim and completion are atomic.
 */
export function createSqliteWebhookOutbox(
  live: () => ReturnType<typeof prepareWebhookStatements>,
  write: <T>(work: () => T) => Promise<T>,
): WebhookOutbox {
  const fanOutNow: WebhookOutbox["fanOut"] = (routes, options) =>
    write((): WebhookFanOut => {
      const s = live();
      const events = s.waiting.all({ limit: options.limit }) as { id: string; type: string; at: number; body: string }[];
      let pending = Number(s.pendingCount.get());
      let deliveries = 0;
      let dropped = 0;
      for (const event of events) {
        for (const route of routes) {
          if (!route.events.has(event.type)) continue;
          if (pending >= options.capacity) {
            dropped++;
            continue;
          }
          if (s.insertDelivery.run({ eventId: event.id, endpointId: route.id, type: event.type, body: event.body, now: options.nowMs }).changes > 0) {
            pending++;
            deliveries++;
          }
        }
        s.deleteEvent.run(event.id);
      }
      return { events: events.length, deliveries, dropped };
    });
  // why: a round with nothing to do reads and returns, instead of taking the file's write lock once a second
  const idle: WebhookFanOut = { events: 0, deliveries: 0, dropped: 0 };
  return {
    enqueue: (event) => write(() => enqueueRow(live(), event)),
    fanOut: async (routes, options) => (live().anyWaiting.get() === undefined ? idle : fanOutNow(routes, options)),
    claim: async (options) =>
      options.endpointIds.length === 0 || live().anyDue.get(options.nowMs) === undefined
        ? []
        : write(() =>
            (live().claim.all({ leaseId: options.leaseId, leaseUntil: options.leaseUntilMs, now: options.nowMs, endpointIds: JSON.stringify(options.endpointIds), limit: options.limit }) as DeliveryRow[]).map(deliveryOf),
          ),
    complete: (eventId, endpointId, leaseId, outcome) =>
      write(() => {
        const s = live();
        const key = { eventId, endpointId, leaseId, at: outcome.atMs };
        if (outcome.kind === "delivered") s.delivered.run(key);
        else if (outcome.kind === "retry") s.retry.run({ ...key, next: outcome.nextAttemptAtMs, error: outcome.error });
        else s.failed.run({ ...key, error: outcome.error });
      }),
    sweep: (options) =>
      write(() => {
        const s = live();
        const expired = s.expire.run({ now: options.nowMs, createdBefore: options.createdBeforeMs }).changes;
        s.prune.run({ finishedBefore: options.finishedBeforeMs });
        return expired;
      }),
    async list(filter) {
      return (live().list.all({ endpointId: filter.endpointId ?? null, status: filter.status ?? null, limit: filter.limit }) as DeliveryRow[]).map(deliveryOf);
    },
    async depth() {
      const s = live();
      return { pending: Number(s.pendingCount.get()), waitingEvents: Number(s.waitingCount.get()) };
    },
  };
}

/** The writer a SQLite transaction hands out: `enqueue` joins the connection's open transaction. */
export function createSqliteWebhookWriter(live: () => ReturnType<typeof prepareWebhookStatements>): WebhookOutboxWriter {
  return {
    async enqueue(event) {
      enqueueRow(live(), event);
    },
  };
}

function enqueueRow(statements: ReturnType<typeof prepareWebhookStatements>, event: WebhookOutboxEvent): void {
  statements.enqueue.run({ id: event.id, type: event.type, at: event.atMs, body: event.body });
}
