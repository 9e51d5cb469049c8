/** One case of each decision code through the real server (Connect JSON over HTTP/1.1). */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TokenControls } from "../../src/engine/types.js";
import { createToken } from "../../src/service/tokens.js";
import { startTestServer, type TestServer } from "../support/server.js";

const LEAF = "ab".repeat(32);
const CA = "0f".repeat(32);
const OTHER_CA = "1e".repeat(32);

let t: TestServer;

beforeAll(async () => {
  t = await startTestServer();
});

afterAll(async () => {
  await t.stop();
});

async function issue(fields: { tenant?: string; workspace?: string; role?: string; keyLevel?: string; controls?: TokenControls } = {}): Promise<string> {
  const { controls, ...rest } = fields;
  return (await createToken(
    t.server.store,
    t.server.policy(),
    { tenant: "acme", workspace: "main", environment: "production", type: "service", name: "it", role: "tenant_operator", actor: "test", ...rest, ...(controls === undefined ? {} : { controls }) },
    Date.now(),
  )).token;
}

async function authorize(token: string | null, fields: Record<string, unknown> = {}): Promise<any> {
  const response = await fetch(`${t.httpUrl}/portcullis.v1.AuthorizationService/Authorize`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      method: "GET",
      path: "/api/payouts",
      host: "api.example.com",
      sourceIp: "203.0.113.10",
      headers: token === null ? [] : [{ name: "authorization", value: `Bearer ${token}` }],
      ...fields,
    }),
  });
  expect(response.status).toBe(200);
  return response.json();
}

function certificate(fields: { issuer?: string; notAfterMs?: number } = {}) {
  return {
    sha256Fingerprint: LEAF,
    subject: "CN=robot",
    issuerSha256Fingerprint: fields.issuer ?? CA,
    verified: true,
    notAfterUnixSeconds: String(Math.floor((fields.notAfterMs ?? Date.now() + 365 * 86_400_000) / 1000)),
  };
}

describe("every decision code through the real server", () => {
  it("ok, with a warning for a certificate that expires soon", async () => {
    const token = await issue({ controls: { mtls: { fingerprints: [LEAF.toUpperCase()] } } });
    const json = await authorize(token, { clientCertificate: certificate({ notAfterMs: Date.now() + 10 * 86_400_000 }) });
    expect(json).toMatchObject({ allowed: true, httpStatus: 200, code: "ok" });
    expect(json.warnings).toEqual([{ code: "certificate_expiring", message: expect.stringContaining("expires in 9 days") }]);
  });

  it("invalid_request for an unparseable source ip", async () => {
    expect(await authorize(await issue(), { sourceIp: "203.0.113.300" })).toMatchObject({ httpStatus: 400, code: "invalid_request", reason: "bad_source_ip" });
  });

  it("unauthenticated without a token", async () => {
    expect(await authorize(null)).toMatchObject({ httpStatus: 401, code: "unauthenticated", reason: "missing" });
  });

  it("tenant_suspended from the next decision after a suspension on this node, and ok after resuming", async () => {
    const token = await issue({ tenant: "globex" });
    expect((await authorize(token)).code).toBe("ok");
    await t.server.store.suspendTenant("globex", { actor: "test", reason: "chargeback fraud" });
    const json = await authorize(token);
    expect(json).toMatchObject({ httpStatus: 403, code: "tenant_suspended", auditEvent: "auth.api_token_tenant_suspended" });
    expect(json.body).not.toContain("chargeback");
    await t.server.store.resumeTenant("globex", { actor: "test" });
    expect((await authorize(token)).code).toBe("ok");
  });

  it("ip_allowlist_blocked by a token's own allowlist, ipv4-mapped sources judged as ipv4", async () => {
    const token = await issue({ controls: { ipAllowlist: ["198.51.100.0/24"] } });
    expect(await authorize(token)).toMatchObject({ httpStatus: 403, code: "ip_allowlist_blocked", reason: "not_allowed", auditEvent: "auth.api_token_ip_allowlist_blocked" });
    expect((await authorize(token, { sourceIp: "::ffff:198.51.100.9" })).code).toBe("ok");
  });

  it("ip_allowlist_blocked by the bundled policy's workspace default", async () => {
    const token = await issue({ workspace: "treasury" });
    expect(await authorize(token)).toMatchObject({ code: "ip_allowlist_blocked", ruleId: "treasury-office" });
  });

  it("mtls_required with the ca audit event for a certificate of an untrusted ca", async () => {
    const token = await issue({ controls: { mtls: { caFingerprints: [CA] } } });
    const json = await authorize(token, { clientCertificate: certificate({ issuer: OTHER_CA }) });
    expect(json).toMatchObject({ httpStatus: 403, code: "mtls_required", reason: "ca_not_pinned", auditEvent: "auth.api_token_mtls_ca_required" });
    expect((await authorize(token, { clientCertificate: certificate() })).code).toBe("ok");
  });

  it("conditional_access_blocked names the failed condition", async () => {
    const token = await issue({ controls: { conditionalAccess: { readOnly: true } } });
    const json = await authorize(token, { method: "POST" });
    expect(json).toMatchObject({ httpStatus: 403, code: "conditional_access_blocked", reason: "read_only", details: { condition: "read_only" } });
    expect(JSON.parse(json.body)).toMatchObject({ code: "conditional_access_blocked", errors: { condition: "read_only" } });
  });

  it("scope_denied for a read-only key writing", async () => {
    expect(await authorize(await issue({ keyLevel: "read_only" }), { method: "POST" })).toMatchObject({ httpStatus: 403, code: "scope_denied" });
  });

  it("workspace_restricted (423) for writes from the next decision after a restriction; reads still pass", async () => {
    const token = await issue({ workspace: "ops" });
    await t.server.store.restrictWorkspace("acme", "ops", { actor: "test" });
    const json = await authorize(token, { method: "POST" });
    expect(json).toMatchObject({ httpStatus: 423, code: "workspace_restricted", auditEvent: "auth.api_token_workspace_restricted" });
    expect(JSON.parse(json.body)).toMatchObject({ code: "workspace_restricted" });
    expect((await authorize(token)).code).toBe("ok");
    await t.server.store.unrestrictWorkspace("acme", "ops", { actor: "test" });
    expect((await authorize(token, { method: "POST" })).code).toBe("ok");
  });
});
