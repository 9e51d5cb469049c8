/**
 * A webhook delivery row as both stores read it back: the same columns, with
 * times as numbers (SQLite) or as the strings node-postgres gives for BIGINT.
 */
import type { WebhookDelivery, WebhookDeliveryStatus } from "./store-interfaces.js";

/** The `webhook_deliveries` columns a listing or claim selects. */
export interface DeliveryRow {
  event_id: string;
  endpoint_id: string;
  type: string;
  body: string;
  created_at: number | string;
  status: WebhookDeliveryStatus;
  attempts: number | string;
  next_attempt_at: number | string;
  last_error: string | null;
  delivered_at: number | string | null;
  updated_at: number | string;
}

/** A stored delivery as the interface shows it. */
export function deliveryOf(row: DeliveryRow): WebhookDelivery {
  return {
    eventId: row.event_id,
    endpointId: row.endpoint_id,
    type: row.type,
    body: row.body,
    createdAtMs: Number(row.created_at),
    status: row.status,
    attempts: Number(row.attempts),
    nextAttemptAtMs: Number(row.next_attempt_at),
    lastError: row.last_error,
    deliveredAtMs: row.delivered_at === null ? null : Number(row.delivered_at),
    updatedAtMs: Number(row.updated_at),
  };
}
