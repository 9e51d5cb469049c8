/** The `conditional_access_blocked` stage. */
import { inWindow } from "../policy/controls.js";
import type { CompiledConditionalAccess } from "../policy/types.js";
import type { PreparedRequest } from "./request.js";
import type { StageResult } from "./types.js";

const WEEKDAY_NAMES = ["", "mon", "tue", "wed", "thu", "fri", "sat", "sun"] as const;

/**
 * Checks every condition given, in this order, and names the first that
 * failed in `reason` and `details.condition`: `environment`, `route`,
 * `method`, `read_only`, `idempotency_key`, `weekday`, `hours`. Weekday and
 * hours are judged at `nowMs` in the control's zone, independently: a window
 * over midnight on a listed day does not extend into an unlisted next day.
 */
export function checkConditionalAccess(request: PreparedRequest, ca: CompiledConditionalAccess | null, nowMs: number): StageResult {
  if (ca === null) return { ok: true };
  const deny = (condition: string, message: string, details: Record<string, string> = {}): StageResult => ({
    ok: false,
    denial: { reason: condition, message, ruleId: ca.ruleId, details: { condition, ...details } },
  });
  if (ca.environments !== null && !ca.environments.has(request.environment)) {
    return deny("environment", `this token may not be used in the \`${request.environment}\` environment`, { environment: request.environment });
  }
  if (ca.routes !== null && !ca.routes.match(request.method, request.target.segments)) {
    return deny("route", `\`${request.target.path}\` is outside the routes this token may use`, { path: request.target.path });
  }
  if (ca.methods !== null && !ca.methods.has(request.method)) {
    return deny("method", `method \`${request.method}\` is not allowed for this token`, { method: request.method });
  }
  if (ca.readOnly && request.isWrite) {
    return deny("read_only", `this token is read-only and \`${request.method}\` is a write`, { method: request.method });
  }
  if (ca.requireIdempotencyKey && request.isWrite && (request.input.headers.get("idempotency-key") ?? "").trim() === "") {
    return deny("idempotency_key", "writes with this token need a non-empty `Idempotency-Key` header");
  }
  if (ca.weekdays !== null || ca.hours !== null) {
    const local = ca.clock.at(nowMs);
    if (ca.weekdays !== null && !ca.weekdays.has(local.weekday)) {
      const day = WEEKDAY_NAMES[local.weekday] ?? "";
      return deny("weekday", `this token may not be used on \`${day}\` (\`${ca.clock.zone}\`)`, { weekday: day, time_zone: ca.clock.zone });
    }
    if (ca.hours !== null && !inWindow(local.minuteOfDay, ca.hours.startMinute, ca.hours.endMinute)) {
      return deny("hours", `this token may only be used during \`${ca.hours.text}\` (\`${ca.clock.zone}\`)`, {
        window: ca.hours.text,
        time_zone: ca.clock.zone,
      });
    }
  }
  return { ok: true };
}
