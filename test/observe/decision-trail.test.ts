/**
 * Every decision code, driven through Envoy `Check` on the real server (a
 * client built from Envoy's own protos), is read back twice: from the
 * `CheckResponse`'s dynamic metadata (audit event, rule id, reason, policy
 * revision) and from the decision log's file sink, where it must agree and
 * never hold a token. The policy set here masks a query parameter and headers.
 * A token pinned to a CA is denied a leaf of another CA
 * (`auth.api_token_mtls_ca_required`). The denials are then read back from the
 * stored security events, counted per event and token (one denial is driven
 * twice), through the store and through `TokenService.ListSecurityEvents`.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createToken } from "../../src/service/tokens.js";
import { EXAMPLE_POLICY_DIR } from "../support/fixtures.js";
import { startTestServer, type TestServer } from "../support/server.js";
import { makeTestCertificates, type TestCertificates } from "../envoy/certs.js";
import { envoyCheckClient, structToJson, type EnvoyCheckClient } from "../envoy/envoy-client.js";
import { makeCaChains, type CaChains } from "../envoy/ca-chain-certs.js";
import { tokenServiceClient } from "../lifecycle/helpers.js";

let t: TestServer;
let client: EnvoyCheckClient;
let certs: TestCertificates;
let chains: CaChains;
let policyDir: string;
let logFile: string;
const tokens: Record<string, string> = {};
const tokenIds: Record<string, string> = {};

beforeAll(async () => {
  certs = makeTestCertificates();
  chains = makeCaChains();
  policyDir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-trail-policy-"));
  fs.cpSync(EXAMPLE_POLICY_DIR, policyDir, { recursive: true });
  const settingsFile = path.join(policyDir, "policy-set.json");
  const settings = JSON.parse(fs.readFileSync(settingsFile, "utf8"));
  settings.policySet.decisionLog = { query: "mask", maskQueryParameters: ["signature"], headers: ["user-agent", "authorization"], maskHeaders: ["x-api-key"] };
  // Envoy sends only the leaf: the bundle lets Portcullis find its CA by signature.
  settings.policySet.trustedCas = ["trail-cas.pem"];
  fs.writeFileSync(path.join(policyDir, "trail-cas.pem"), chains.root.pem + chains.otherRoot.pem);
  fs.writeFileSync(settingsFile, JSON.stringify(settings, null, 2));
  logFile = path.join(policyDir, "decisions.jsonl");
  t = await startTestServer(policyDir, { decisionLog: { sink: { kind: "file", path: logFile }, mode: "all", sampleRate: 0, maxFileBytes: 1024 * 1024, maxFiles: 2, capacity: 1000 } });
  client = envoyCheckClient(t.grpcAddress);
  const policy = t.server.policy();
  const now = Date.now();
  const base = { tenant: "acme", workspace: "main", environment: "production", type: "service" as const, actor: "test" };
  const make = async (key: string, fields: Record<string, unknown>) => {
    const created = await createToken(t.server.store, policy, { ...base, name: key, role: "tenant_operator", ...fields }, now);
    tokens[key] = created.token;
    tokenIds[key] = created.record.id;
  };
  await make("operator", {});
  await make("reader", { keyLevel: "read_only" });
  await make("allowlisted", { controls: { ipAllowlist: ["198.51.100.0/24"] } });
  await make("pinned", { controls: { mtls: { fingerprints: [certs.clientSha256] } } });
  await make("caPinned", { controls: { mtls: { caFingerprints: [chains.root.sha256] } } });
  await make("admin", { role: "tenant_admin", keyLevel: "admin" });
  await make("suspended", { tenant: "initech" });
  await make("readOnly", { controls: { conditionalAccess: { readOnly: true } } });
  await make("frozen", { workspace: "frozen" });
  await make("spent", { controls: { quota: { limitPerDay: 1 } } });
  await make("neverLookedUp", {});
  t.server.store.suspendTenant("initech", { actor: "test", reason: "trail" });
  t.server.store.restrictWorkspace("acme", "frozen", { actor: "test", reason: "trail" });
  const spend = await client.check(checkRequest("spend", { headers: { authorization: `Bearer ${tokens.spent}` } }));
  expect(spend.status.code).toBe(0);
});

afterAll(async () => {
  client?.close();
  await t?.stop();
  if (policyDir !== undefined) fs.rmSync(policyDir, { recursive: true, force: true });
});

interface HttpFields {
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  sourceIp?: string;
  /** PEM of the client certificate Envoy verified (its `source.certificate`). */
  certificatePem?: string;
}

/** A `CheckRequest` as Envoy builds it, with the request id the row is found by in the log. */
function checkRequest(requestId: string, fields: HttpFields): object {
  const method = fields.method ?? "GET";
  const path = fields.path ?? "/api/payouts?page=2&signature=s3cr3t";
  const headers: Record<string, string> = {
    ":authority": "api.example.com",
    ":method": method,
    ":path": path,
    ":scheme": "https",
    "user-agent": "curl/8.5.0",
    "x-api-key": "do-not-log-me",
    "x-request-id": requestId,
    ...fields.headers,
  };
  return {
    attributes: {
      source: {
        address: { socket_address: { address: fields.sourceIp ?? "203.0.113.10", port_value: 50_123 } },
        ...(fields.certificatePem === undefined ? {} : { certificate: encodeURIComponent(fields.certificatePem) }),
      },
      request: { http: { id: "1", method, path, host: "api.example.com", scheme: "https", protocol: "HTTP/1.1", headers } },
    },
  };
}

interface Row {
  /** What the row is found by (request id `trail-<name>`): its code, unless two rows share one. */
  name: string;
  code: string;
  reason: string;
  httpStatus: number;
  auditEvent: string | null;
  /** The rule that decides, or a pattern for ids that name a token. */
  ruleId: string | RegExp;
  token: string | null;
  request: () => HttpFields;
}

const rows: Row[] = [
  { name: "ok", code: "ok", reason: "ok", httpStatus: 200, auditEvent: null, ruleId: "group:/api/payouts", token: "operator", request: () => ({ headers: { authorization: `Bearer ${tokens.operator}` } }) },
  { name: "invalid_request", code: "invalid_request", reason: "encoded_slash", httpStatus: 400, auditEvent: "auth.api_token_invalid_request", ruleId: /.+/, token: null, request: () => ({ path: "/api/payouts%2F..%2Fledger", headers: { authorization: `Bearer ${tokens.operator}` } }) },
  { name: "unauthenticated", code: "unauthenticated", reason: "missing", httpStatus: 401, auditEvent: "auth.api_token_unauthenticated", ruleId: /.+/, token: null, request: () => ({}) },
  { name: "tenant_suspended", code: "tenant_suspended", reason: "suspended", httpStatus: 403, auditEvent: "auth.api_token_tenant_suspended", ruleId: /.+/, token: "suspended", request: () => ({ headers: { authorization: `Bearer ${tokens.suspended}` } }) },
  { name: "ip_allowlist_blocked", code: "ip_allowlist_blocked", reason: "not_allowed", httpStatus: 403, auditEvent: "auth.api_token_ip_allowlist_blocked", ruleId: /^token:tok_/, token: "allowlisted", request: () => ({ sourceIp: "2001:db8::9", headers: { authorization: `Bearer ${tokens.allowlisted}` } }) },
  { name: "mtls_required", code: "mtls_required", reason: "no_certificate", httpStatus: 403, auditEvent: "auth.api_token_mtls_required", ruleId: /^token:tok_/, token: "pinned", request: () => ({ headers: { authorization: `Bearer ${tokens.pinned}` } }) },
  {
    name: "mtls_ca_required",
    code: "mtls_required",
    reason: "ca_not_pinned",
    httpStatus: 403,
    auditEvent: "auth.api_token_mtls_ca_required",
    ruleId: /^token:tok_/,
    token: "caPinned",
    request: () => ({ certificatePem: chains.leafOfOtherRoot.pem, headers: { authorization: `Bearer ${tokens.caPinned}` } }),
  },
  { name: "conditional_access_blocked", code: "conditional_access_blocked", reason: "read_only", httpStatus: 403, auditEvent: "auth.api_token_conditional_access_blocked", ruleId: /^token:tok_/, token: "readOnly", request: () => ({ method: "POST", path: "/api/payouts", headers: { authorization: `Bearer ${tokens.readOnly}` } }) },
  { name: "scope_denied", code: "scope_denied", reason: "missing_scope", httpStatus: 403, auditEvent: "auth.api_token_ability_rejected", ruleId: /.+/, token: "reader", request: () => ({ method: "POST", path: "/api/payouts", headers: { authorization: `Bearer ${tokens.reader}` } }) },
  { name: "workspace_restricted", code: "workspace_restricted", reason: "restricted", httpStatus: 423, auditEvent: "auth.api_token_workspace_restricted", ruleId: /.+/, token: "frozen", request: () => ({ method: "POST", path: "/api/payouts", headers: { authorization: `Bearer ${tokens.frozen}` } }) },
  { name: "quota_exceeded", code: "quota_exceeded", reason: "per_day", httpStatus: 429, auditEvent: "auth.api_token_quota_exceeded", ruleId: /^token:tok_/, token: "spent", request: () => ({ headers: { authorization: `Bearer ${tokens.spent}` } }) },
];

/** The decision log's records, by request id, once every id asked for is there (the log writes in batches). */
async function recordsFor(requestIds: readonly string[]): Promise<Map<string, any>> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const text = fs.existsSync(logFile) ? fs.readFileSync(logFile, "utf8") : "";
    const records = new Map<string, any>(text.split("\n").filter((line) => line !== "").map((line) => [JSON.parse(line).request_id, JSON.parse(line)]));
    if (requestIds.every((id) => records.has(id)) || Date.now() > deadline) return records;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe("every decision code reaches Envoy's dynamic metadata and the decision log", () => {
  const answers = new Map<string, any>();

  it.each(rows)("$name: dynamic metadata carries code, reason, rule id, policy revision and audit event", async (row) => {
    const response = await client.check(checkRequest(`trail-${row.name}`, row.request()));
    answers.set(row.name, response);
    expect(response.status.code === 0).toBe(row.code === "ok");
    const metadata = structToJson(response.dynamic_metadata);
    expect(metadata.code).toBe(row.code);
    expect(metadata.reason).toBe(row.reason);
    expect(metadata.rule_id).toMatch(typeof row.ruleId === "string" ? new RegExp(`^${row.ruleId}$`) : row.ruleId);
    expect(metadata.policy_revision).toBe(t.server.policy().revision);
    expect(metadata.request_id).toBe(`trail-${row.name}`);
    if (row.auditEvent === null) expect(metadata).not.toHaveProperty("audit_event");
    else expect(metadata.audit_event).toBe(row.auditEvent);
  });

  it("stores every denial as a security event, counted per event and token, read through the store and the management API", async () => {
    // One denial twice: the same token, event and (most likely) minute, so one row counts 2.
    const again = await client.check(checkRequest("trail-ip_allowlist_blocked-again", rows.find((row) => row.name === "ip_allowlist_blocked")!.request()));
    expect(structToJson(again.dynamic_metadata).audit_event).toBe("auth.api_token_ip_allowlist_blocked");
    await t.server.securityEvents.flush();

    // Expected counts per (event, token): one per denial row, two for the allowlist's.
    const expected = new Map<string, number>();
    for (const row of rows) {
      if (row.auditEvent === null) continue;
      const key = `${row.auditEvent} ${row.token === null ? "-" : tokenIds[row.token]}`;
      expected.set(key, (expected.get(key) ?? 0) + (row.name === "ip_allowlist_blocked" ? 2 : 1));
    }
    // why: summed over minutes, so a run that straddles a minute boundary reads the same totals
    const totals = (stored: readonly { event: string; tokenId: string | null; count: number | bigint }[]) => {
      const sums = new Map<string, number>();
      for (const row of stored) {
        const key = `${row.event} ${row.tokenId === null || row.tokenId === "" ? "-" : row.tokenId}`;
        sums.set(key, (sums.get(key) ?? 0) + Number(row.count));
      }
      return sums;
    };
    const stored = await t.server.store.listSecurityEvents({ limit: 1_000 });
    expect(totals(stored)).toEqual(expected);
    expect(expected.get(`auth.api_token_mtls_ca_required ${tokenIds.caPinned}`)).toBe(1);
    expect(expected.get(`auth.api_token_ip_allowlist_blocked ${tokenIds.allowlisted}`)).toBe(2);
    for (const row of stored) {
      const tenant = row.tokenId === null ? null : row.tokenId === tokenIds.suspended ? "initech" : "acme";
      expect(row.tenant, `${row.event} ${row.tokenId}`).toBe(tenant);
    }

    // The management API answers the caller's tenant's rows: acme's, not initech's nor those of no token.
    const { events } = await tokenServiceClient(t.httpUrl, tokens.admin!).listSecurityEvents({ limit: 1_000 });
    const acmeOnly = new Map([...expected].filter(([key]) => !key.endsWith(" -") && !key.endsWith(` ${tokenIds.suspended}`)));
    expect(totals(events)).toEqual(acmeOnly);
    expect(events.every((row) => row.tenant === "acme")).toBe(true);
    const caRequired = await tokenServiceClient(t.httpUrl, tokens.admin!).listSecurityEvents({ event: "auth.api_token_mtls_ca_required", since: "1h" });
    expect(caRequired.events.map((row) => [row.tokenId, row.count])).toEqual([[tokenIds.caPinned, 1n]]);
  });

  it("unavailable: the store is gone, and the answer and the log still say so", async () => {
    // The store file goes away: the server notices within a quarter second and answers unavailable.
    for (const suffix of ["", "-wal", "-shm"]) fs.rmSync(path.join(t.dataDir, `portcullis.db${suffix}`), { force: true });
    await new Promise((resolve) => setTimeout(resolve, 600));
    const response = await client.check(checkRequest("trail-unavailable", { headers: { authorization: `Bearer ${tokens.neverLookedUp}` } }));
    const metadata = structToJson(response.dynamic_metadata);
    expect(metadata).toMatchObject({ code: "unavailable", audit_event: "auth.api_token_unavailable", policy_revision: t.server.policy().revision, request_id: "trail-unavailable" });
    const records = await recordsFor(["trail-unavailable"]);
    expect(records.get("trail-unavailable")).toMatchObject({ code: "unavailable", http_status: 503, audit_event: "auth.api_token_unavailable", transport: "envoy_grpc" });
  });

  it("has one record per decision that agrees with the metadata, masks as the policy set says and never holds a token", async () => {
    const records = await recordsFor(rows.map((row) => `trail-${row.name}`));
    for (const row of rows) {
      const record = records.get(`trail-${row.name}`);
      expect(record, row.name).toBeDefined();
      const metadata = structToJson(answers.get(row.name).dynamic_metadata);
      expect(record).toMatchObject({
        service: "portcullis",
        msg: "decision",
        transport: "envoy_grpc",
        allowed: row.code === "ok",
        code: row.code,
        reason: metadata.reason,
        http_status: row.httpStatus,
        rule_id: metadata.rule_id,
        policy_revision: t.server.policy().revision,
        audit_event: row.auditEvent,
        token_id: row.token === null ? null : tokenIds[row.token],
        method: row.request().method ?? "GET",
        source_ip: row.request().sourceIp ?? "203.0.113.10",
      });
      expect(new Date(record.time).toISOString()).toBe(record.time);
      expect(record.latency_ms).toBeGreaterThanOrEqual(0);
      expect(Array.isArray(record.warnings)).toBe(true);
      if (row.token !== null) expect(record).toMatchObject({ tenant: row.token === "suspended" ? "initech" : "acme", environment: "production" });
      // the policy set keeps the query with `signature` masked, and names the headers it wants
      if (row.request().path === undefined) expect(record.path).toBe("/api/payouts?page=2&signature=***");
      expect(record.headers).toEqual({ "user-agent": "curl/8.5.0", "x-api-key": "***", ...(row.request().headers?.authorization === undefined ? {} : { authorization: "***" }) });
    }
    const text = fs.readFileSync(logFile, "utf8");
    for (const token of Object.values(tokens)) expect(text).not.toContain(token);
    expect(text).not.toContain("s3cr3t");
    expect(text).not.toContain("do-not-log-me");
  });
});
