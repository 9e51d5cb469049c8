/**
 * Compiles enterprise controls (IP allowlist, mTLS pins, conditional access,
 * quota) as policy entries and tokens write them into the structures the engine
 * reads. The same functions serve both sources, so a value a policy file may
 * hold is exactly a value a token may hold. Errors carry a JSON pointer
 * relative to the controls object.
 */
import { buildIpAllowlistMatcher, type Compiled, type ControlError } from "./ip-allowlist-matcher.js";
import { buildPathPatternMatcher, checkPathPattern } from "./path-pattern-matcher.js";
import type {
  CompiledConditionalAccess,
  CompiledControls,
  CompiledIpAllowlist,
  CompiledMtls,
  CompiledQuota,
  ConditionalAccessSpec,
  ControlsSpec,
  MtlsSpec,
  QuotaSpec,
  WeekdayName,
} from "./types.js";
import { suggestTimeZone } from "./suggest.js";
import { resolveZoneClock } from "./zone-clock.js";

export type { Compiled, ControlError } from "./ip-allowlist-matcher.js";

/** ISO weekday numbers (1 = Monday) by name. */
export const WEEKDAY_NUMBERS: ReadonlyMap<WeekdayName, number> = new Map([
  ["mon", 1],
  ["tue", 2],
  ["wed", 3],
  ["thu", 4],
  ["fri", 5],
  ["sat", 6],
  ["sun", 7],
]);

const FINGERPRINT = /^[0-9a-f]{64}$/;
const HHMM = /^([01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$/;

/** Lower-case hex without colons: the one form fingerprints are compared in. */
export function normalizePin(value: string): string {
  return value.replace(/:/g, "").toLowerCase();
}

/**
 * Compiles every control kind `spec` sets. `ruleId` names the source in
 * decisions (a policy entry's id, or `token:<id>`). `compileIpAllowlist` lets
 * a caller hand in an allowlist compiled earlier (a token's long list is
 * compiled in slices, off the decision that first needs it).
 */
export function compileControls(
  spec: ControlsSpec,
  ruleId: string,
  compileIpAllowlist: (entries: readonly string[], ruleId: string) => Compiled<CompiledIpAllowlist> = buildIpAllowlistMatcher,
): Compiled<CompiledControls> {
  const errors: ControlError[] = [];
  const result: { -readonly [K in keyof CompiledControls]: CompiledControls[K] } = {};
  const collect = <T>(compiled: Compiled<T>, prefix: string): T | undefined => {
    if (compiled.ok) return compiled.value;
    for (const e of compiled.errors) errors.push({ ...e, pointer: prefix + e.pointer });
    return undefined;
  };
  if (spec.ipAllowlist !== undefined) {
    if (spec.ipAllowlist.length === 0) errors.push({ pointer: "/ipAllowlist", message: "ip allowlist must list at least one cidr or address" });
    else result.ipAllowlist = collect(compileIpAllowlist(spec.ipAllowlist, ruleId), "/ipAllowlist");
  }
  if (spec.mtls !== undefined) result.mtls = collect(compileMtls(spec.mtls, ruleId), "/mtls");
  if (spec.conditionalAccess !== undefined) {
    result.conditionalAccess = collect(compileConditionalAccess(spec.conditionalAccess, ruleId), "/conditionalAccess");
  }
  if (spec.quota !== undefined) result.quota = collect(compileQuota(spec.quota, ruleId), "/quota");
  if (errors.length > 0) return { ok: false, errors };
  return { ok: true, value: Object.freeze(result) };
}

/** Compiles an mTLS requirement, normalising pins to lower-case hex without colons. */
export function compileMtls(spec: MtlsSpec, ruleId: string): Compiled<CompiledMtls> {
  const errors: ControlError[] = [];
  const pins = (list: readonly string[] | undefined, field: string): Set<string> => {
    const set = new Set<string>();
    (list ?? []).forEach((pin, i) => {
      const normalized = normalizePin(pin);
      if (!FINGERPRINT.test(normalized)) {
        errors.push({ pointer: `/${field}/${i}`, message: `\`${pin}\` is not a sha-256 fingerprint: expected 64 hex digits, with or without colons` });
      } else {
        set.add(normalized);
      }
    });
    return set;
  };
  const fingerprints = pins(spec.fingerprints, "fingerprints");
  const caFingerprints = pins(spec.caFingerprints, "caFingerprints");
  const required = spec.required ?? true;
  if (!required && (fingerprints.size > 0 || caFingerprints.size > 0)) {
    errors.push({ pointer: "/required", message: "pins have no effect when mtls is not required", hint: "drop the pins or set `required` to true" });
  }
  if (errors.length > 0) return { ok: false, errors };
  return { ok: true, value: Object.freeze({ ruleId, required, fingerprints, caFingerprints }) };
}

/** Largest limit accepted: far above any real quota, and exact in a double. */
export const MAX_QUOTA_LIMIT = 1_000_000_000;

/**
 * Compiles a quota: at least one limit, each a positive integer, and the
 * `ratelimit-policy` header value (draft-ietf-httpapi-ratelimit-headers:
 * `<limit>;w=<window seconds>`, minute first) built once here.
 */
export function compileQuota(spec: QuotaSpec, ruleId: string): Compiled<CompiledQuota> {
  const errors: ControlError[] = [];
  const limit = (value: number | undefined, field: string): number | null => {
    if (value === undefined) return null;
    if (!Number.isInteger(value) || value < 1 || value > MAX_QUOTA_LIMIT) {
      errors.push({ pointer: `/${field}`, message: `invalid limit \`${String(value)}\`: expected a whole number from 1 to ${MAX_QUOTA_LIMIT}` });
      return null;
    }
    return value;
  };
  const limitPerMinute = limit(spec.limitPerMinute, "limitPerMinute");
  const limitPerDay = limit(spec.limitPerDay, "limitPerDay");
  if (spec.limitPerMinute === undefined && spec.limitPerDay === undefined) {
    errors.push({ pointer: "", message: "quota must set `limitPerMinute`, `limitPerDay` or both" });
  }
  if (errors.length > 0) return { ok: false, errors };
  const policies: string[] = [];
  if (limitPerMinute !== null) policies.push(`${limitPerMinute};w=60`);
  if (limitPerDay !== null) policies.push(`${limitPerDay};w=86400`);
  return { ok: true, value: Object.freeze({ ruleId, limitPerMinute, limitPerDay, policyHeader: policies.join(", ") }) };
}

function minutesOf(hhmm: string): number {
  return Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3, 5));
}

/**
 * Compiles conditional access: routes into a segment trie, the zone into a
 * shared clock, the hour window into minutes since local midnight.
 */
export function compileConditionalAccess(spec: ConditionalAccessSpec, ruleId: string): Compiled<CompiledConditionalAccess> {
  const errors: ControlError[] = [];
  const routeList = spec.routes ?? [];
  routeList.forEach((route, i) => {
    const problem = checkPathPattern(route);
    if (problem !== null) errors.push({ pointer: `/routes/${i}`, message: problem });
  });
  (spec.methods ?? []).forEach((method, i) => {
    if (!/^[A-Z]+$/.test(method)) errors.push({ pointer: `/methods/${i}`, message: `invalid method \`${method}\`: expected an upper-case http method such as \`GET\`` });
  });
  const zone = spec.timeZone ?? "UTC";
  const clock = resolveZoneClock(zone);
  if (clock === null) {
    errors.push({ pointer: "/timeZone", message: `unknown time zone \`${zone}\``, hint: suggestTimeZone(zone) });
  }
  let hours: CompiledConditionalAccess["hours"] = null;
  if (spec.hours !== undefined) {
    const { start, end } = spec.hours;
    const badStart = !HHMM.test(start) || start === "24:00";
    if (badStart) errors.push({ pointer: "/hours/start", message: `invalid start \`${start}\`: expected \`HH:MM\` from \`00:00\` to \`23:59\`` });
    if (!HHMM.test(end)) errors.push({ pointer: "/hours/end", message: `invalid end \`${end}\`: expected \`HH:MM\` from \`00:01\` to \`24:00\`` });
    else if (!badStart) {
      const startMinute = minutesOf(start);
      const endMinute = minutesOf(end);
      if (startMinute === endMinute || (startMinute === 0 && endMinute === 1440)) {
        errors.push({ pointer: "/hours", message: `window \`${start}\`-\`${end}\` is empty or the whole day`, hint: "leave `hours` out to allow every hour" });
      } else {
        hours = Object.freeze({ startMinute, endMinute: endMinute === 1440 ? 0 : endMinute, text: `${start}-${end}` });
      }
    }
  }
  if (spec.weekdays !== undefined && spec.weekdays.length === 0) {
    errors.push({ pointer: "/weekdays", message: "weekdays must name at least one day when given" });
  }
  if (errors.length > 0 || clock === null) return { ok: false, errors };
  const weekdays = spec.weekdays === undefined ? null : new Set(spec.weekdays.map((d) => WEEKDAY_NUMBERS.get(d)!));
  const methods = spec.methods === undefined ? null : new Set(spec.methods.flatMap((m) => (m === "GET" ? ["GET", "HEAD"] : [m])));
  return {
    ok: true,
    value: Object.freeze({
      ruleId,
      routes: spec.routes === undefined ? null : buildPathPatternMatcher(routeList.map((path) => ({ path }))),
      routeList: Object.freeze([...routeList]),
      methods,
      environments: spec.environments === undefined ? null : new Set(spec.environments),
      hours,
      weekdays,
      clock,
      readOnly: spec.readOnly ?? false,
      requireIdempotencyKey: spec.requireIdempotencyKey ?? false,
    }),
  };
}

/**
 * Whether local minute `minute` is inside `[startMinute, endMinute)`; a window
 * whose end is not after its start wraps midnight (`22:00-06:00`).
 */
export function inWindow(minute: number, startMinute: number, endMinute: number): boolean {
  return startMinute < endMinute ? minute >= startMinute && minute < endMinute : minute >= startMinute || minute < endMinute;
}
