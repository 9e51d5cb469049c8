/**
 * Every denial code, driven through Envoy `Check` on the real server, is read
 * back from a received webhook: a receiver (a real HTTP server on loopback)
 * subscribed to `auth.api_token_*` gets, for each code's audit event and
 * token, one security event webhook with a valid signature whose count
 * matches the denials made. The allow raises none.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createToken } from "../../src/service/tokens.js";
import { EXAMPLE_POLICY_DIR } from "../support/fixtures.js";
import { startTestServer, type TestServer } from "../support/server.js";
import { signatureIsValid, startInProcessReceiver, waitFor } from "../support/webhook-receiver.js";
import { makeTestCertificates, type TestCertificates } from "../envoy/certs.js";
import { envoyCheckClient, type EnvoyCheckClient } from "../envoy/envoy-client.js";

const SECRET_ENV = "PORTCULLIS_TEST_TRAIL_WEBHOOK_SECRET";
const SECRET = "trail-webhook-secret-0123456789";

let t: TestServer;
let client: EnvoyCheckClient;
let certs: TestCertificates;
let policyDir: string;
let receiver: Awaited<ReturnType<typeof startInProcessReceiver>>;
const tokens: Record<string, string> = {};
const tokenIds: Record<string, string> = {};

beforeAll(async () => {
  process.env[SECRET_ENV] = SECRET;
  receiver = await startInProcessReceiver();
  certs = makeTestCertificates();
  policyDir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-webhook-trail-"));
  fs.cpSync(EXAMPLE_POLICY_DIR, policyDir, { recursive: true });
  const settingsFile = path.join(policyDir, "policy-set.json");
  const settings = JSON.parse(fs.readFileSync(settingsFile, "utf8"));
  settings.policySet.webhooks = [{ id: "soc", url: `${receiver.url}/soc`, events: ["auth.api_token_*"], secret: `env:${SECRET_ENV}` }];
  fs.writeFileSync(settingsFile, JSON.stringify(settings, null, 2));
  t = await startTestServer(policyDir, { webhookDelivery: { pollIntervalMs: 20, timeoutMs: 1_000 } });
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
  await make("suspended", { tenant: "initech" });
  await make("readOnly", { controls: { conditionalAccess: { readOnly: true } } });
  await make("frozen", { workspace: "frozen" });
  await make("spent", { controls: { quota: { limitPerDay: 1 } } });
  await t.server.store.suspendTenant("initech", { actor: "test", reason: "trail" });
  await t.server.store.restrictWorkspace("acme", "frozen", { actor: "test", reason: "trail", mode: "all" });
  const spend = await client.check(checkRequest({ headers: { authorization: `Bearer ${tokens.spent}` } }));
  expect(spend.status.code).toBe(0);
});

afterAll(async () => {
  delete process.env[SECRET_ENV];
  client?.close();
  await t?.stop();
  await receiver?.close();
  if (policyDir !== undefined) fs.rmSync(policyDir, { recursive: true, force: true });
});

interface HttpFields {
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  sourceIp?: string;
}

/** A `CheckRequest` as Envoy builds it. */
function checkRequest(fields: HttpFields): object {
  const method = fields.method ?? "GET";
  const path = fields.path ?? "/api/payouts";
  const headers: Record<string, string> = { ":authority": "api.example.com", ":method": method, ":path": path, ":scheme": "https", ...fields.headers };
  return {
    attributes: {
      source: { address: { socket_address: { address: fields.sourceIp ?? "203.0.113.10", port_value: 50_123 } } },
      request: { http: { id: "1", method, path, host: "api.example.com", scheme: "https", protocol: "HTTP/1.1", headers } },
    },
  };
}

interface Row {
  code: string;
  auditEvent: string | null;
  token: string | null;
  /** Denials made of this row: each row's count must come back in its webhook (all within one minute, or summed over two). */
  times: number;
  request: () => HttpFields;
}

const bearer = (key: string) => ({ authorization: `Bearer ${tokens[key]}` });
const rows: Row[] = [
  { code: "ok", auditEvent: null, token: "operator", times: 2, request: () => ({ headers: bearer("operator") }) },
  { code: "invalid_request", auditEvent: "auth.api_token_invalid_request", token: null, times: 2, request: () => ({ path: "/api/payouts%2F..%2Fledger", headers: bearer("operator") }) },
  { code: "unauthenticated", auditEvent: "auth.api_token_unauthenticated", token: null, times: 3, request: () => ({}) },
  { code: "tenant_suspended", auditEvent: "auth.api_token_tenant_suspended", token: "suspended", times: 1, request: () => ({ headers: bearer("suspended") }) },
  { code: "ip_allowlist_blocked", auditEvent: "auth.api_token_ip_allowlist_blocked", token: "allowlisted", times: 4, request: () => ({ sourceIp: "2001:db8::9", headers: bearer("allowlisted") }) },
  { code: "mtls_required", auditEvent: "auth.api_token_mtls_required", token: "pinned", times: 1, request: () => ({ headers: bearer("pinned") }) },
  { code: "conditional_access_blocked", auditEvent: "auth.api_token_conditional_access_blocked", token: "readOnly", times: 2, request: () => ({ method: "POST", headers: bearer("readOnly") }) },
  { code: "scope_denied", auditEvent: "auth.api_token_ability_rejected", token: "reader", times: 1, request: () => ({ method: "POST", headers: bearer("reader") }) },
  { code: "workspace_restricted", auditEvent: "auth.api_token_workspace_restricted", token: "frozen", times: 1, request: () => ({ headers: bearer("frozen") }) },
  { code: "quota_exceeded", auditEvent: "auth.api_token_quota_exceeded", token: "spent", times: 5, request: () => ({ headers: bearer("spent") }) },
];

describe("every denial code reaches a signed webhook", () => {
  it.each(rows)("$code through Envoy Check", async (row) => {
    for (let i = 0; i < row.times; i++) {
      const response = await client.check(checkRequest(row.request()));
      expect(response.status.code === 0, row.code).toBe(row.code === "ok");
    }
  });

  it("each code's audit event and token come back once in a signed security event webhook", async () => {
    const denials = rows.filter((row) => row.auditEvent !== null);
    const bodies = () => receiver.received.filter((r) => r.status === 200).map((r) => JSON.parse(r.body));
    // the recorder stores counts once a second; every denial is in a stored row first
    const storedCount = async (event: string | null) => (await t.server.store.listSecurityEvents({ limit: 100 })).filter((s) => s.event === event).reduce((sum, s) => sum + s.count, 0);
    await waitFor(async () => (await Promise.all(denials.map(async (row) => (await storedCount(row.auditEvent)) === row.times))).every(Boolean), 10_000, "every denial stored");
    await waitFor(() => denials.every((row) => bodies().some((b) => b.type === row.auditEvent)), 10_000, "a webhook for every denial code");
    for (const request of receiver.received) {
      expect(request.path).toBe("/soc");
      expect(signatureIsValid(SECRET, request.headers["portcullis-signature"], request.body)).toBe(true);
      expect(JSON.parse(request.body).id).toBe(request.headers["idempotency-key"]);
    }
    for (const row of denials) {
      const matching = bodies().filter((b) => b.type === row.auditEvent);
      // one webhook per (token, event, minute): one, or two if the row's denials straddled a minute
      expect(matching.length, row.code).toBeGreaterThanOrEqual(1);
      expect(matching.length, row.code).toBeLessThanOrEqual(2);
      for (const body of matching) {
        expect(body).toMatchObject({ category: "security", tokenId: row.token === null ? null : tokenIds[row.token] });
        if (row.token !== null) expect(body.tenant).toBe(row.token === "suspended" ? "initech" : "acme");
      }
      // the count in a webhook is what the first write counted: at most the denials made, and all of them when one flush took them all
      const counted = matching.reduce((sum, body) => sum + body.data.count, 0);
      expect(counted, row.code).toBeGreaterThanOrEqual(1);
      expect(counted, row.code).toBeLessThanOrEqual(row.times);
    }
    // no webhook for the allow, nor for the lifecycle events the endpoint does not subscribe to
    expect(bodies().every((b) => String(b.type).startsWith("auth.api_token_"))).toBe(true);
  });
});
