/**
 * What a webhook endpoint can subscribe to: the catalog of event names, the
 * pattern rule of `policySet.webhooks[].events`, and the payload each kind of
 * event carries. Pure: no I/O, no clock.
 */
import type { AdministrativeEvent, AuditEvent, LifecycleEvent } from "../engine/codes.js";
import type { AuditEntry, SecurityEventCount, WebhookOutboxEvent } from "../store/store-interfaces.js";

/** Security events a webhook can carry: every stored denial event (not `unavailable`, Portcullis's own outage). */
export const SECURITY_WEBHOOK_EVENTS: readonly Exclude<AuditEvent, "auth.api_token_unavailable">[] = [
  "auth.api_token_invalid_request",
  "auth.api_token_unauthenticated",
  "auth.api_token_tenant_suspended",
  "auth.api_token_ip_allowlist_blocked",
  "auth.api_token_mtls_required",
  "auth.api_token_mtls_ca_required",
  "auth.api_token_conditional_access_blocked",
  "auth.api_token_ability_rejected",
  "auth.api_token_workspace_restricted",
  "auth.api_token_quota_exceeded",
];

/** Lifecycle and administrative events a webhook can carry: every row of the audit trail. */
export const LIFECYCLE_WEBHOOK_EVENTS: readonly (LifecycleEvent | AdministrativeEvent)[] = [
  "api_token.created",
  "api_token.rotated",
  "api_token.revoked",
  "api_token.emergency_revoked",
  "api_token.controls_updated",
  "tenant.suspended",
  "tenant.resumed",
  "workspace.restricted",
  "workspace.unrestricted",
];

/** Every event name an endpoint may subscribe to. */
export const WEBHOOK_EVENT_NAMES: readonly string[] = [...SECURITY_WEBHOOK_EVENTS, ...LIFECYCLE_WEBHOOK_EVENTS];

/**
 * Checks one entry of an endpoint's `events`: an event name from
 * {@link WEBHOOK_EVENT_NAMES}, or a pattern ending in `*` (the only wildcard,
 * and only at the end) that matches at least one of them by prefix, such as
 * `auth.api_token_*`, `api_token.*` or `*`.
 * @returns `null` when the entry is good, else a message
 */
export function webhookEventPatternProblem(pattern: string): string | null {
  const star = pattern.indexOf("*");
  if (star === -1) return WEBHOOK_EVENT_NAMES.includes(pattern) ? null : `unknown event \`${pattern}\``;
  if (star !== pattern.length - 1) return `event pattern \`${pattern}\` may hold \`*\` only at its end`;
  const prefix = pattern.slice(0, -1);
  return WEBHOOK_EVENT_NAMES.some((name) => name.startsWith(prefix)) ? null : `event pattern \`${pattern}\` matches no event`;
}

/**
 * The set of event names `patterns` select. INVARIANT: each pattern passed
 * {@link webhookEventPatternProblem}.
 */
export function selectWebhookEvents(patterns: readonly string[]): ReadonlySet<string> {
  const selected = new Set<string>();
  for (const pattern of patterns) {
    const prefix = pattern.endsWith("*") ? pattern.slice(0, -1) : null;
    for (const name of WEBHOOK_EVENT_NAMES) if (prefix === null ? name === pattern : name.startsWith(prefix)) selected.add(name);
  }
  return selected;
}

/** One event as the outbox holds it until it is fanned out to endpoints (`body` serialised once, so every attempt and endpoint signs the same bytes). */
export type WebhookEvent = WebhookOutboxEvent;

/** The JSON body of a webhook, as documented in docs/operations.md. */
export interface WebhookBody {
  readonly id: string;
  readonly type: string;
  readonly category: "security" | "lifecycle";
  /** ISO 8601 time of the event (a lifecycle change; the first denial of a security event row). */
  readonly occurredAt: string;
  readonly tenant: string | null;
  readonly tokenId: string | null;
  readonly data: Readonly<Record<string, unknown>>;
}

/**
 * The webhook of an audit trail row (a lifecycle or administrative change);
 * `id` is a fresh unique id, made by the caller so that this stays pure.
 */
export function lifecycleWebhookEvent(id: string, entry: AuditEntry): WebhookEvent {
  const body: WebhookBody = {
    id,
    type: entry.event,
    category: "lifecycle",
    occurredAt: new Date(entry.atMs).toISOString(),
    tenant: entry.tenant,
    tokenId: entry.tokenId,
    data: { actor: entry.actor, ...entry.data },
  };
  return { id, type: entry.event, atMs: entry.atMs, body: JSON.stringify(body) };
}

/**
 * The webhook of a security event row when it is first written: one per
 * (token, event, UTC minute), whatever the number of denials in it, so that a
 * flood of denials is at most one webhook per token, event and minute. Its id
 * is derived from the row's key, so the same row can never make two events.
 * `count` is what the first write counted (at least 1); later denials of the
 * same minute add to the stored row (`portcullis audit list`) but send nothing.
 */
export function securityWebhookEvent(row: SecurityEventCount): WebhookEvent {
  const id = `sec_${row.minuteMs / 60_000}_${row.event}_${row.tokenId ?? "-"}`;
  const body: WebhookBody = {
    id,
    type: row.event,
    category: "security",
    occurredAt: new Date(row.lastAtMs).toISOString(),
    tenant: row.tenant,
    tokenId: row.tokenId,
    data: { minute: new Date(row.minuteMs).toISOString(), count: row.count },
  };
  return { id, type: row.event, atMs: row.lastAtMs, body: JSON.stringify(body) };
}
