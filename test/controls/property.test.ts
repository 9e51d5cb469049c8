/**
 * Property: for random tokens (with random controls), random requests, clocks,
 * certificates and tenant state, the decision is exactly what an independent
 * model of DESIGN.md says. In particular no request is ever allowed unless the
 * token is valid, every applicable control passes and the scope is held.
 */
import { BlockList } from "node:net";
import fc from "fast-check";
import { DateTime } from "luxon";
import { describe, expect, it } from "vitest";
import type { DecisionCode } from "../../src/engine/codes.js";
import { holdsScope } from "../../src/engine/scope.js";
import type { ClientCertificateFacts, TokenControls, TokenRecord } from "../../src/engine/types.js";
import type { ConditionalAccessSpec, WeekdayName } from "../../src/policy/types.js";
import { loadExamplePolicy, makeToken, request } from "../support/fixtures.js";
import { judge } from "../support/judge.js";
import { colonUpper, fingerprint } from "./support.js";

const policy = loadExamplePolicy();
const DAY = 86_400_000;

const CIDRS = ["198.51.100.0/24", "10.0.0.0/8", "203.0.113.10", "2001:db8::/32", "2001:db8:ffff::5/128", "192.0.2.0/25"];
/** Source addresses with the address the model judges (IPv4-mapped forms as IPv4). */
const SOURCES: readonly (readonly [string, string])[] = [
  ["198.51.100.7", "198.51.100.7"],
  ["::ffff:198.51.100.7", "198.51.100.7"],
  ["::ffff:c633:6407", "198.51.100.7"],
  ["203.0.113.10", "203.0.113.10"],
  ["203.0.113.11", "203.0.113.11"],
  ["10.255.255.255", "10.255.255.255"],
  ["192.0.2.127", "192.0.2.127"],
  ["192.0.2.128", "192.0.2.128"],
  ["2001:db8::1", "2001:db8::1"],
  ["2001:db8:ffff::5", "2001:db8:ffff::5"],
  ["2001:db9::1", "2001:db9::1"],
  ["", ""],
];
const LEAVES = [fingerprint("ab"), fingerprint("cd")];
const CAS = [fingerprint("0f"), fingerprint("1e")];
const ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"];
const DAYS: WeekdayName[] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const READS = new Set(["GET", "HEAD", "OPTIONS"]);

const pinFormat = (hex: string) => fc.constantFrom(hex, hex.toUpperCase(), colonUpper(hex), colonUpper(hex).toLowerCase());
const hhmm = fc.integer({ min: 0, max: 1439 }).map((m) => `${String(Math.floor(m / 60)).padStart(2, "0")}:${String(m % 60).padStart(2, "0")}`);

const conditionalAccess: fc.Arbitrary<ConditionalAccessSpec> = fc.record(
  {
    methods: fc.subarray(["GET", "POST", "DELETE"], { minLength: 1 }),
    readOnly: fc.boolean(),
    requireIdempotencyKey: fc.boolean(),
    weekdays: fc.subarray(DAYS, { minLength: 1 }),
    hours: fc.tuple(hhmm, hhmm).filter(([a, b]) => a !== b).map(([start, end]) => ({ start, end })),
    timeZone: fc.constantFrom(...ZONES),
  },
  { requiredKeys: [] },
);

const controls: fc.Arbitrary<TokenControls> = fc.record(
  {
    ipAllowlist: fc.subarray(CIDRS, { minLength: 1 }),
    mtls: fc.record(
      {
        fingerprints: fc.subarray(LEAVES, { minLength: 1 }).chain((pins) => fc.tuple(...pins.map(pinFormat))),
        caFingerprints: fc.subarray(CAS, { minLength: 1 }).chain((pins) => fc.tuple(...pins.map(pinFormat))),
      },
      { requiredKeys: [] },
    ),
    conditionalAccess,
  },
  { requiredKeys: [] },
);

/** True one time in `n`, so that later stages are reached often enough. */
const rarely = (n: number) => fc.integer({ min: 1, max: n }).map((k) => k === 1);

const NOW_MIN = Date.UTC(2026, 0, 1);
const NOW_MAX = Date.UTC(2026, 11, 31);

const scenario = fc.record({
  nowMs: fc.integer({ min: NOW_MIN, max: NOW_MAX }),
  role: fc.constantFrom("tenant_operator", "tenant_brand", "tenant_admin"),
  keyLevel: fc.constantFrom(null, "read_only"),
  revoked: rarely(6),
  expiresInMs: fc.option(fc.integer({ min: -DAY, max: 20 * DAY }), { nil: null }),
  controls: fc.oneof({ arbitrary: fc.constant<TokenControls>({}), weight: 1 }, { arbitrary: controls, weight: 3 }),
  tenantSuspended: rarely(6),
  workspaceRestricted: fc.constantFrom<false | "writes" | "all">(false, false, false, false, "writes", "all"),
  method: fc.constantFrom("GET", "HEAD", "POST", "DELETE", "PATCH"),
  path: fc.constantFrom("/api/payouts", "/api/ledger/le_1", "/api/settings/api-tokens", "/api/disputes"),
  source: fc.constantFrom(...SOURCES),
  idempotencyKey: fc.constantFrom(undefined, "", "key-1"),
  certificate: fc.option(
    fc.record({
      sha256Fingerprint: fc.constantFrom(...LEAVES),
      issuerSha256Fingerprint: fc.constantFrom(...CAS),
      verified: fc.boolean(),
      notAfterInMs: fc.option(fc.integer({ min: -DAY, max: 60 * DAY }), { nil: null }),
    }),
    { nil: null },
  ),
});

/** DESIGN.md, written out directly: the first failing check's code, or `ok`. */
function model(s: ScenarioValue, token: TokenRecord): DecisionCode {
  if (token.revokedAtMs !== null || (token.expiresAtMs !== null && s.nowMs >= token.expiresAtMs)) return "unauthenticated";
  if (s.tenantSuspended) return "tenant_suspended";
  const { ipAllowlist, mtls, conditionalAccess: ca } = s.controls;
  if (ipAllowlist !== undefined) {
    const [, judged] = s.source;
    const list = new BlockList();
    for (const entry of ipAllowlist) {
      const [net, prefix] = entry.split("/");
      const family = net!.includes(":") ? "ipv6" : "ipv4";
      list.addSubnet(net!, prefix === undefined ? (family === "ipv4" ? 32 : 128) : Number(prefix), family);
    }
    if (judged === "" || !list.check(judged, judged.includes(":") ? "ipv6" : "ipv4")) return "ip_allowlist_blocked";
  }
  if (mtls !== undefined) {
    const cert = s.certificate;
    const norm = (pins: readonly string[] | undefined) => (pins ?? []).map((p) => p.replace(/:/g, "").toLowerCase());
    if (cert === null || !cert.verified) return "mtls_required";
    if (cert.notAfterInMs !== null && cert.notAfterInMs <= 0) return "mtls_required";
    const leaves = norm(mtls.fingerprints);
    const cas = norm(mtls.caFingerprints);
    if (leaves.length > 0 && !leaves.includes(cert.sha256Fingerprint)) return "mtls_required";
    if (cas.length > 0 && !cas.includes(cert.issuerSha256Fingerprint)) return "mtls_required";
  }
  const isWrite = !READS.has(s.method);
  if (ca !== undefined) {
    const methods = ca.methods === undefined ? undefined : ca.methods.includes("GET") ? [...ca.methods, "HEAD"] : ca.methods;
    if (methods !== undefined && !methods.includes(s.method)) return "conditional_access_blocked";
    if (ca.readOnly === true && isWrite) return "conditional_access_blocked";
    if (ca.requireIdempotencyKey === true && isWrite && (s.idempotencyKey ?? "") === "") return "conditional_access_blocked";
    const local = DateTime.fromMillis(s.nowMs, { zone: ca.timeZone ?? "UTC" });
    if (ca.weekdays !== undefined && !ca.weekdays.includes(DAYS[local.weekday - 1]!)) return "conditional_access_blocked";
    if (ca.hours !== undefined) {
      const minute = local.hour * 60 + local.minute;
      const [start, end] = [ca.hours.start, ca.hours.end].map((t) => Number(t.slice(0, 2)) * 60 + Number(t.slice(3)));
      const inside = start! < end! ? minute >= start! && minute < end! : minute >= start! || minute < end!;
      if (!inside) return "conditional_access_blocked";
    }
  }
  const route = policy.routes.match(s.method, s.path.split("/").filter(Boolean), isWrite);
  if (route === null || !holdsScope(token, policy, route.scope)) return "scope_denied";
  if (s.workspaceRestricted === "all" || (s.workspaceRestricted === "writes" && isWrite)) return "workspace_restricted";
  return "ok";
}

type ScenarioValue = typeof scenario extends fc.Arbitrary<infer T> ? T : never;

describe("decisions against an independent model", () => {
  it("never allows unless the token is valid, every applicable control passes and the scope is held; the first failure decides", () => {
    const seen = new Set<DecisionCode>();
    fc.assert(
      fc.property(scenario, (s) => {
        const { token, record } = makeToken({
          role: s.role,
          keyLevel: s.keyLevel,
          revokedAtMs: s.revoked ? s.nowMs - 1 : null,
          expiresAtMs: s.expiresInMs === null ? null : s.nowMs + s.expiresInMs,
          controls: s.controls,
        });
        const certificate: ClientCertificateFacts | null =
          s.certificate === null
            ? null
            : {
                sha256Fingerprint: s.certificate.sha256Fingerprint,
                issuerSha256Fingerprint: s.certificate.issuerSha256Fingerprint,
                subject: "CN=x",
                verified: s.certificate.verified,
                notAfterMs: s.certificate.notAfterInMs === null ? null : s.nowMs + s.certificate.notAfterInMs,
              };
        const headers: Record<string, string> = s.idempotencyKey === undefined ? {} : { "idempotency-key": s.idempotencyKey };
        const decision = judge(
          request({ method: s.method, path: s.path, token, sourceIp: s.source[0], clientCertificate: certificate, headers }),
          policy,
          new Map([[token, record]]),
          s.nowMs,
          { tenantSuspended: s.tenantSuspended, workspaceRestricted: s.workspaceRestricted },
        );
        const expected = model(s, record);
        seen.add(expected);
        expect(decision.code).toBe(expected);
        expect(decision.allowed).toBe(expected === "ok");
      }),
      { numRuns: 1500 },
    );
    // the generator is not vacuous: every outcome came up
    expect([...seen].sort()).toEqual(
      ["conditional_access_blocked", "ip_allowlist_blocked", "mtls_required", "ok", "scope_denied", "tenant_suspended", "unauthenticated", "workspace_restricted"],
    );
  });

  it("judges an ipv4 address and its ipv4-mapped ipv6 form alike", () => {
    fc.assert(
      fc.property(fc.subarray(CIDRS, { minLength: 1 }), fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)), (allowlist, octets) => {
        const { token, record } = makeToken({ controls: { ipAllowlist: allowlist } });
        const tokens = new Map([[token, record]]);
        const v4 = octets.join(".");
        const a = judge(request({ token, sourceIp: v4 }), policy, tokens, Date.UTC(2026, 0, 5));
        const b = judge(request({ token, sourceIp: `::ffff:${v4}` }), policy, tokens, Date.UTC(2026, 0, 5));
        expect(b.code).toBe(a.code);
      }),
      { numRuns: 300 },
    );
  });
});
