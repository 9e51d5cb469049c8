/**
 * `since` bounds of audit and security event reads, shared by `audit list
 * --since` and `TokenService.ListSecurityEvents`.
 */
import { parseDuration } from "../policy/duration.js";

/** A duration back from `nowMs` (`30m`, `1h`, `7d`), or an ISO 8601 time (`2026-12-04T18:00:00Z`); `null` when it is neither. */
export function parseSince(value: string, nowMs: number): number | null {
  const duration = parseDuration(value);
  if (duration !== null) return nowMs - duration;
  if (!/^\d{4}-\d{2}-\d{2}([T ]|$)/.test(value)) return null;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? null : ms;
}
