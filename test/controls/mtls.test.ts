import { describe, expect, it } from "vitest";
import type { ClientCertificateFacts, TokenRecord } from "../../src/engine/types.js";
import { compileMtls } from "../../src/policy/controls.js";
import { loadExamplePolicy, makeToken, NOW_MS, request } from "../support/fixtures.js";
import { judge } from "../support/judge.js";
import { colonUpper, fingerprint } from "./support.js";

const policy = loadExamplePolicy();
const LEAF = fingerprint("ab");
const OTHER_LEAF = fingerprint("cd");
const CA = fingerprint("0f");
const OTHER_CA = fingerprint("1e");
const DAY = 86_400_000;

function cert(fields: Partial<ClientCertificateFacts> = {}): ClientCertificateFacts {
  return { sha256Fingerprint: LEAF, subject: "CN=robot", issuerSha256Fingerprint: CA, verified: true, notAfterMs: NOW_MS + 365 * DAY, ...fields };
}

const pinnedUpperColons = makeToken({ controls: { mtls: { fingerprints: [colonUpper(LEAF)] } } });
const pinnedLower = makeToken({ controls: { mtls: { fingerprints: [LEAF] } } });
const pinnedUpperPlain = makeToken({ controls: { mtls: { fingerprints: [LEAF.toUpperCase()] } } });
const pinnedLowerColons = makeToken({ controls: { mtls: { fingerprints: [colonUpper(LEAF).toLowerCase()] } } });
const caPinned = makeToken({ controls: { mtls: { caFingerprints: [colonUpper(CA)] } } });
const bothPinned = makeToken({ controls: { mtls: { fingerprints: [LEAF], caFingerprints: [CA] } } });
const anyCert = makeToken({ controls: { mtls: {} } });
const tokens = new Map<string, TokenRecord>(
  [pinnedUpperColons, pinnedLower, pinnedUpperPlain, pinnedLowerColons, caPinned, bothPinned, anyCert].map((t) => [t.token, t.record]),
);

interface Row {
  name: string;
  token: { token: string };
  certificate: ClientCertificateFacts | null;
  reason: string;
  auditEvent?: string;
}

const rows: Row[] = [
  { name: "pin upper-case with colons matches", token: pinnedUpperColons, certificate: cert(), reason: "ok" },
  { name: "pin lower-case without colons matches", token: pinnedLower, certificate: cert(), reason: "ok" },
  { name: "pin upper-case without colons matches", token: pinnedUpperPlain, certificate: cert(), reason: "ok" },
  { name: "pin lower-case with colons matches", token: pinnedLowerColons, certificate: cert(), reason: "ok" },
  { name: "a reported fingerprint with colons and capitals matches too", token: pinnedLower, certificate: cert({ sha256Fingerprint: colonUpper(LEAF) }), reason: "ok" },
  { name: "no certificate", token: pinnedLower, certificate: null, reason: "no_certificate" },
  { name: "unverified certificate, even when pinned", token: pinnedLower, certificate: cert({ verified: false }), reason: "unverified" },
  { name: "one second before expiry passes", token: pinnedLower, certificate: cert({ notAfterMs: NOW_MS + 1000 }), reason: "ok" },
  { name: "at expiry is expired", token: pinnedLower, certificate: cert({ notAfterMs: NOW_MS }), reason: "certificate_expired" },
  { name: "one second after expiry", token: pinnedLower, certificate: cert({ notAfterMs: NOW_MS - 1000 }), reason: "certificate_expired" },
  { name: "an unknown expiry is left to the terminator", token: pinnedLower, certificate: cert({ notAfterMs: null }), reason: "ok" },
  { name: "another certificate", token: pinnedLower, certificate: cert({ sha256Fingerprint: OTHER_LEAF }), reason: "certificate_not_pinned" },
  { name: "issuer among the ca pins", token: caPinned, certificate: cert(), reason: "ok" },
  { name: "issuer not among the ca pins", token: caPinned, certificate: cert({ issuerSha256Fingerprint: OTHER_CA }), reason: "ca_not_pinned", auditEvent: "auth.api_token_mtls_ca_required" },
  { name: "unknown issuer with ca pins", token: caPinned, certificate: cert({ issuerSha256Fingerprint: "" }), reason: "ca_not_pinned", auditEvent: "auth.api_token_mtls_ca_required" },
  { name: "both pin kinds must hold: leaf fails", token: bothPinned, certificate: cert({ sha256Fingerprint: OTHER_LEAF }), reason: "certificate_not_pinned", auditEvent: "auth.api_token_mtls_required" },
  { name: "both pin kinds must hold: ca fails", token: bothPinned, certificate: cert({ issuerSha256Fingerprint: OTHER_CA }), reason: "ca_not_pinned" },
  { name: "both pin kinds hold", token: bothPinned, certificate: cert(), reason: "ok" },
  { name: "no pins: any verified certificate", token: anyCert, certificate: cert({ sha256Fingerprint: OTHER_LEAF }), reason: "ok" },
  { name: "no pins: still needs a certificate", token: anyCert, certificate: null, reason: "no_certificate" },
];

describe("the mtls_required stage", () => {
  it.each(rows)("$name → $reason", (row) => {
    const decision = judge(request({ token: row.token.token, clientCertificate: row.certificate }), policy, tokens, NOW_MS);
    expect(decision.reason).toBe(row.reason);
    expect(decision.code).toBe(row.reason === "ok" ? "ok" : "mtls_required");
    if (row.reason !== "ok") {
      expect(decision.httpStatus).toBe(403);
      expect(decision.auditEvent).toBe(row.auditEvent ?? (row.reason === "ca_not_pinned" ? "auth.api_token_mtls_ca_required" : "auth.api_token_mtls_required"));
    }
  });

  it("gives each failure its own message", () => {
    const messages = new Set(
      rows.filter((r) => r.reason !== "ok").map((r) => judge(request({ token: r.token.token, clientCertificate: r.certificate }), policy, tokens, NOW_MS).message),
    );
    expect(messages.size).toBeGreaterThanOrEqual(5);
    for (const message of messages) expect(message.replace(/`[^`]*`/g, "x")).toMatch(/^[a-z][^A-Z]*[^.]$/);
  });

  it.each([
    ["expiring in 29 days warns", NOW_MS + 29 * DAY, "in 29 days"],
    ["expiring in a second warns", NOW_MS + 1000, "within a day"],
    ["one second inside 30 days warns", NOW_MS + 30 * DAY - 1000, "in 29 days"],
  ])("%s", (_name, notAfterMs, phrase) => {
    const decision = judge(request({ token: pinnedLower.token, clientCertificate: cert({ notAfterMs }) }), policy, tokens, NOW_MS);
    expect(decision.allowed).toBe(true);
    expect(decision.warnings).toHaveLength(1);
    expect(decision.warnings[0]!.code).toBe("certificate_expiring");
    expect(decision.warnings[0]!.message).toContain(phrase);
  });

  it("does not warn at exactly 30 days", () => {
    const decision = judge(request({ token: pinnedLower.token, clientCertificate: cert({ notAfterMs: NOW_MS + 30 * DAY }) }), policy, tokens, NOW_MS);
    expect(decision.warnings).toEqual([]);
  });

  it("keeps the warning when a later stage denies", () => {
    const decision = judge(
      request({ method: "DELETE", path: "/api/settings/api-tokens/tok_1", token: pinnedLower.token, clientCertificate: cert({ notAfterMs: NOW_MS + DAY }) }),
      policy,
      tokens,
      NOW_MS,
    );
    expect(decision.code).toBe("scope_denied");
    expect(decision.warnings.map((w) => w.code)).toEqual(["certificate_expiring"]);
  });
});

describe("mtls pins are checked when compiled", () => {
  it.each([
    [{ fingerprints: ["abc"] }, "/fingerprints/0"],
    [{ caFingerprints: [`${LEAF}00`] }, "/caFingerprints/0"],
    [{ required: false, fingerprints: [LEAF] }, "/required"],
  ])("refuses %j at %s", (spec, pointer) => {
    const compiled = compileMtls(spec, "x");
    expect(compiled.ok).toBe(false);
    if (!compiled.ok) expect(compiled.errors[0]!.pointer).toBe(pointer);
  });
});
