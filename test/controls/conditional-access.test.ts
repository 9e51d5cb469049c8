import fc from "fast-check";
import { DateTime } from "luxon";
import { describe, expect, it } from "vitest";
import type { TokenRecord } from "../../src/engine/types.js";
import type { ConditionalAccessSpec } from "../../src/policy/types.js";
import { compileConditionalAccess } from "../../src/policy/controls.js";
import { resolveZoneClock } from "../../src/policy/zone-clock.js";
import { loadExamplePolicy, makeToken, NOW_MS, request } from "../support/fixtures.js";
import { judge } from "../support/judge.js";

const policy = loadExamplePolicy();
const utc = (iso: string) => Date.parse(iso);

/** Judges a GET /api/payouts (or `fields`) with a token carrying `ca`, at `nowMs`. */
function judgeWith(ca: ConditionalAccessSpec, nowMs: number, fields: Parameters<typeof request>[0] = {}) {
  const token = makeToken({ controls: { conditionalAccess: ca } });
  const tokens = new Map<string, TokenRecord>([[token.token, token.record]]);
  const environmentToken = fields.host === "sandbox.api.example.com" ? makeToken({ environment: "sandbox", controls: { conditionalAccess: ca } }, "sk_sandbox_") : token;
  tokens.set(environmentToken.token, environmentToken.record);
  return judge(request({ token: environmentToken.token, ...fields }), policy, tokens, nowMs);
}

const BERLIN_OFFICE: ConditionalAccessSpec = { hours: { start: "09:00", end: "17:00" }, timeZone: "Europe/Berlin" };
const NIGHT_UTC: ConditionalAccessSpec = { hours: { start: "22:00", end: "06:00" } };
const UNTIL_MIDNIGHT: ConditionalAccessSpec = { hours: { start: "18:00", end: "24:00" } };
const SATURDAY_BERLIN: ConditionalAccessSpec = { weekdays: ["sat"], timeZone: "Europe/Berlin" };
const SUNDAY_NEW_YORK: ConditionalAccessSpec = { weekdays: ["sun"], timeZone: "America/New_York" };
const SKIPPED_HOUR: ConditionalAccessSpec = { hours: { start: "02:00", end: "03:00" }, timeZone: "Europe/Berlin" };

describe("conditional access time windows", () => {
  it.each([
    ["winter: first minute of 09:00-17:00 Berlin (08:00Z)", BERLIN_OFFICE, "2026-01-15T08:00:00Z", "ok"],
    ["winter: the minute before the window", BERLIN_OFFICE, "2026-01-15T07:59:59Z", "hours"],
    ["winter: last minute of the window (16:59 local)", BERLIN_OFFICE, "2026-01-15T15:59:59Z", "ok"],
    ["winter: the end is exclusive (17:00 local)", BERLIN_OFFICE, "2026-01-15T16:00:00Z", "hours"],
    ["summer: first minute is 07:00Z", BERLIN_OFFICE, "2026-07-15T07:00:00Z", "ok"],
    ["summer: 07:59Z is already 09:59 local", BERLIN_OFFICE, "2026-07-15T06:59:00Z", "hours"],
    ["summer: 15:00Z is 17:00 local", BERLIN_OFFICE, "2026-07-15T15:00:00Z", "hours"],
    ["over midnight: first minute 22:00", NIGHT_UTC, "2026-01-15T22:00:00Z", "ok"],
    ["over midnight: 21:59 is outside", NIGHT_UTC, "2026-01-15T21:59:59Z", "hours"],
    ["over midnight: midnight is inside", NIGHT_UTC, "2026-01-16T00:00:00Z", "ok"],
    ["over midnight: last minute 05:59", NIGHT_UTC, "2026-01-16T05:59:59Z", "ok"],
    ["over midnight: 06:00 is outside", NIGHT_UTC, "2026-01-16T06:00:00Z", "hours"],
    ["until 24:00: last minute 23:59", UNTIL_MIDNIGHT, "2026-01-15T23:59:59Z", "ok"],
    ["until 24:00: midnight is outside", UNTIL_MIDNIGHT, "2026-01-16T00:00:00Z", "hours"],
    ["dst start: the skipped hour 02:00-03:00 never opens (00:59Z is 01:59)", SKIPPED_HOUR, "2026-03-29T00:59:00Z", "hours"],
    ["dst start: 01:00Z is already 03:00", SKIPPED_HOUR, "2026-03-29T01:00:00Z", "hours"],
    ["dst end: 00:30Z is 02:30 summer time", SKIPPED_HOUR, "2026-10-25T00:30:00Z", "ok"],
    ["dst end: 01:30Z is 02:30 again, winter time", SKIPPED_HOUR, "2026-10-25T01:30:00Z", "ok"],
    ["dst end: 02:00Z is 03:00 winter time", SKIPPED_HOUR, "2026-10-25T02:00:00Z", "hours"],
  ])("%s", (_name, ca, at, reason) => {
    const decision = judgeWith(ca, utc(at));
    expect(decision.reason).toBe(reason);
    if (reason !== "ok") {
      expect(decision.code).toBe("conditional_access_blocked");
      expect(decision.details).toMatchObject({ condition: "hours", window: `${ca.hours!.start}-${ca.hours!.end}` });
    }
  });
});

describe("conditional access weekdays across dst changes", () => {
  it.each([
    ["Berlin, day before spring dst: saturday ends at 23:00Z", SATURDAY_BERLIN, "2026-03-28T22:59:59Z", "ok"],
    ["Berlin: 23:00Z on 2026-03-28 is sunday", SATURDAY_BERLIN, "2026-03-28T23:00:00Z", "weekday"],
    ["Berlin: saturday starts at 23:00Z friday in winter", SATURDAY_BERLIN, "2026-03-27T23:00:00Z", "ok"],
    ["Berlin, day before autumn dst: saturday ends at 22:00Z", SATURDAY_BERLIN, "2026-10-24T21:59:59Z", "ok"],
    ["Berlin: 22:00Z on 2026-10-24 is sunday", SATURDAY_BERLIN, "2026-10-24T22:00:00Z", "weekday"],
    ["New York: 04:59Z on the spring-forward sunday is still saturday", SUNDAY_NEW_YORK, "2026-03-08T04:59:59Z", "weekday"],
    ["New York: sunday starts at 05:00Z (EST)", SUNDAY_NEW_YORK, "2026-03-08T05:00:00Z", "ok"],
    ["New York: the 23-hour sunday ends at 04:00Z (EDT)", SUNDAY_NEW_YORK, "2026-03-09T03:59:59Z", "ok"],
    ["New York: 04:00Z monday is outside", SUNDAY_NEW_YORK, "2026-03-09T04:00:00Z", "weekday"],
    ["New York: the 25-hour fall-back sunday ends at 05:00Z (EST)", SUNDAY_NEW_YORK, "2026-11-02T04:59:59Z", "ok"],
    ["New York: 05:00Z monday after fall-back is outside", SUNDAY_NEW_YORK, "2026-11-02T05:00:00Z", "weekday"],
  ])("%s", (_name, ca, at, reason) => {
    const decision = judgeWith(ca, utc(at));
    expect(decision.reason).toBe(reason);
    if (reason !== "ok") expect(decision.details).toMatchObject({ condition: "weekday", time_zone: ca.timeZone });
  });

  it("checks weekdays and hours independently: a window over midnight does not spill into an unlisted day", () => {
    const ca: ConditionalAccessSpec = { weekdays: ["fri"], hours: { start: "22:00", end: "02:00" } };
    expect(judgeWith(ca, utc("2026-01-16T23:00:00Z")).reason).toBe("ok"); // friday
    expect(judgeWith(ca, utc("2026-01-17T01:00:00Z")).reason).toBe("weekday"); // saturday
  });
});

describe("conditional access request conditions", () => {
  const idem = { requireIdempotencyKey: true };
  it.each<[string, ConditionalAccessSpec, Parameters<typeof request>[0], string]>([
    ["route inside a /** pattern", { routes: ["/api/payouts/**"] }, { path: "/api/payouts/po_1/items" }, "ok"],
    ["/** covers the path itself", { routes: ["/api/payouts/**"] }, { path: "/api/payouts" }, "ok"],
    ["/** matches whole segments", { routes: ["/api/payouts/**"] }, { path: "/api/payoutsX" }, "route"],
    ["a template with a parameter", { routes: ["/api/payouts/{id}"] }, { path: "/api/payouts/po_1" }, "ok"],
    ["a template without /** is exact", { routes: ["/api/payouts/{id}"] }, { path: "/api/payouts/po_1/items" }, "route"],
    ["route outside every pattern", { routes: ["/api/ledger/**"] }, { path: "/api/payouts" }, "route"],
    ["routes are judged on the normalised path", { routes: ["/api/ledger/**"] }, { path: "/api/ledger/../payouts" }, "route"],
    ["method allowed", { methods: ["GET"] }, { method: "GET" }, "ok"],
    ["GET allows HEAD", { methods: ["GET"] }, { method: "HEAD" }, "ok"],
    ["method not allowed", { methods: ["GET"] }, { method: "POST" }, "method"],
    ["environment allowed", { environments: ["production"] }, {}, "ok"],
    ["environment not allowed", { environments: ["production"] }, { host: "sandbox.api.example.com" }, "environment"],
    ["read-only allows reads", { readOnly: true }, { method: "OPTIONS" }, "ok"],
    ["read-only denies writes", { readOnly: true }, { method: "PATCH" }, "read_only"],
    ["read-only denies unknown methods", { readOnly: true }, { method: "PURGE" }, "read_only"],
    ["idempotency key present on a write", idem, { method: "POST", headers: { "Idempotency-Key": "k-1" } }, "ok"],
    ["idempotency key missing on a write", idem, { method: "POST" }, "idempotency_key"],
    ["idempotency key blank on a write", idem, { method: "POST", headers: { "idempotency-key": "  " } }, "idempotency_key"],
    ["reads need no idempotency key", idem, { method: "GET" }, "ok"],
    ["the first failing condition is named: environment before method", { environments: ["sandbox"], methods: ["POST"] }, {}, "environment"],
  ])("%s → %s", (_name, ca, fields, reason) => {
    const decision = judgeWith(ca, NOW_MS, fields);
    expect(decision.reason).toBe(reason);
    if (reason !== "ok") {
      expect(decision.code).toBe("conditional_access_blocked");
      expect(decision.httpStatus).toBe(403);
      expect(decision.auditEvent).toBe("auth.api_token_conditional_access_blocked");
      expect(decision.details.condition).toBe(reason);
    }
  });
});

describe("conditional access is checked when compiled", () => {
  it.each<[string, ConditionalAccessSpec, string]>([
    ["unknown zone", { timeZone: "Europe/Atlantis" }, "/timeZone"],
    ["empty window", { hours: { start: "09:00", end: "09:00" } }, "/hours"],
    ["whole-day window", { hours: { start: "00:00", end: "24:00" } }, "/hours"],
    ["24:00 as a start", { hours: { start: "24:00", end: "06:00" } }, "/hours/start"],
    ["a bad route", { routes: ["/api/*/x"] }, "/routes/0"],
    ["no weekdays", { weekdays: [] }, "/weekdays"],
  ])("refuses %s at %s", (_name, spec, pointer) => {
    const compiled = compileConditionalAccess(spec, "x");
    expect(compiled.ok).toBe(false);
    if (!compiled.ok) expect(compiled.errors.map((e) => e.pointer)).toContain(pointer);
  });
});

describe("zone clocks", () => {
  it("agree with luxon at every instant, whatever order the instants come in", () => {
    const zones = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"];
    fc.assert(
      fc.property(fc.constantFrom(...zones), fc.integer({ min: Date.UTC(2020, 0, 1), max: Date.UTC(2035, 0, 1) }), (zone, nowMs) => {
        const local = DateTime.fromMillis(nowMs, { zone });
        expect(resolveZoneClock(zone)!.at(nowMs)).toEqual({ minuteOfDay: local.hour * 60 + local.minute, weekday: local.weekday });
      }),
      { numRuns: 300 },
    );
  });

  it("is shared per zone and refuses unknown zones", () => {
    expect(resolveZoneClock("Europe/Berlin")).toBe(resolveZoneClock("Europe/Berlin"));
    expect(resolveZoneClock("Mars/Olympus")).toBeNull();
  });
});
