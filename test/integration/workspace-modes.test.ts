/**
 * Workspace restriction modes through the real server: a restriction made by
 * the CLI (another store object on the same file, as another process would be)
 * is seen by Envoy `Check` and Connect `Authorize` within the tenant-state
 * cache's bound (1 s), and a workspace restricted for writes and a frozen one
 * live side by side.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../../src/cli/main.js";
import { createToken } from "../../src/service/tokens.js";
import { envoyCheckClient, type EnvoyCheckClient } from "../envoy/envoy-client.js";
import { captureCliOutput } from "../support/cli-output.js";
import { EXAMPLE_POLICY_DIR } from "../support/fixtures.js";
import { startTestServer, type TestServer } from "../support/server.js";

/** The tenant-state cache's bound, plus slack for a loaded machine. */
const SEEN_WITHIN_MS = 1_000 + 1_500;

const io = captureCliOutput();
let t: TestServer;
let envoy: EnvoyCheckClient;
const tokens: Record<string, string> = {};

beforeAll(async () => {
  t = await startTestServer();
  envoy = envoyCheckClient(t.grpcAddress);
  for (const workspace of ["ops", "vault", "main"]) {
    tokens[workspace] = (await createToken(
      t.server.store,
      t.server.policy(),
      { tenant: "acme", workspace, environment: "production", type: "service", name: workspace, role: "tenant_operator", actor: "test" },
      Date.now(),
    )).token;
  }
});

afterAll(async () => {
  envoy?.close();
  await t?.stop();
});

async function viaConnect(token: string, method: string): Promise<{ httpStatus: number; code: string; body: any }> {
  const response = await fetch(`${t.httpUrl}/portcullis.v1.AuthorizationService/Authorize`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ method, path: "/api/payouts", host: "api.example.com", sourceIp: "203.0.113.10", headers: [{ name: "authorization", value: `Bearer ${token}` }] }),
  });
  expect(response.status).toBe(200);
  const json: any = await response.json();
  return { httpStatus: json.httpStatus, code: json.code, body: json.body === undefined || json.body === "" ? null : JSON.parse(json.body) };
}

async function viaEnvoy(token: string, method: string): Promise<{ httpStatus: number; code: string; body: any }> {
  const headers = { ":authority": "api.example.com", ":method": method, ":path": "/api/payouts", ":scheme": "https", authorization: `Bearer ${token}`, "x-request-id": "modes-1" };
  const response: any = await envoy.check({
    attributes: {
      source: { address: { socket_address: { address: "203.0.113.10", port_value: 50_123 } } },
      request: { http: { id: "1", method, path: "/api/payouts", host: "api.example.com", scheme: "https", protocol: "HTTP/1.1", headers } },
    },
  });
  if (response.http_response !== "denied_response") return { httpStatus: 200, code: "ok", body: null };
  const denied = response.denied_response;
  const body = JSON.parse(denied.body);
  return { httpStatus: denied.status.code, code: body.code, body };
}

/** Asks until `ask` gives `code` or the bound passes; returns the last answer. */
async function eventually(ask: () => Promise<{ code: string }>, code: string): Promise<any> {
  const startMs = performance.now();
  for (;;) {
    const answer = await ask();
    if (answer.code === code || performance.now() - startMs > SEEN_WITHIN_MS) return answer;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const cli = (...args: string[]) => main(["node", "portcullis", ...args, "--policies", EXAMPLE_POLICY_DIR, "--data-dir", t.dataDir]);

describe.each([
  ["Envoy Check", viaEnvoy],
  ["Connect Authorize", viaConnect],
])("workspace restriction modes through %s", (_transport, ask) => {
  it("a CLI restriction in each mode is seen within the cache's bound: writes refuses writes only, all refuses reads too", async () => {
    expect(await cli("workspaces", "restrict", "acme", "ops", "--mode", "writes", "--reason", "incident 9")).toBe(0);
    expect(await cli("workspaces", "restrict", "acme", "vault", "--mode", "all", "--reason", "frozen")).toBe(0);
    expect(io.err).toContain("(mode all)");

    const frozenRead = await eventually(() => ask(tokens.vault!, "GET"), "workspace_restricted");
    expect(frozenRead).toMatchObject({ httpStatus: 423, code: "workspace_restricted" });
    expect(frozenRead.body.errors).toMatchObject({ reason: "restricted", tenant: "acme", workspace: "vault", mode: "all" });
    expect(await ask(tokens.vault!, "POST")).toMatchObject({ httpStatus: 423, code: "workspace_restricted" });

    const write = await eventually(() => ask(tokens.ops!, "POST"), "workspace_restricted");
    expect(write).toMatchObject({ httpStatus: 423, code: "workspace_restricted" });
    expect(write.body.errors).toMatchObject({ reason: "restricted", workspace: "ops", mode: "writes" });
    expect(await ask(tokens.ops!, "GET")).toMatchObject({ httpStatus: 200, code: "ok" });
    expect(await ask(tokens.main!, "POST")).toMatchObject({ httpStatus: 200, code: "ok" });

    expect(await cli("workspaces", "unrestrict", "acme", "ops")).toBe(0);
    expect(await cli("workspaces", "unrestrict", "acme", "vault")).toBe(0);
    expect(await eventually(() => ask(tokens.vault!, "GET"), "ok")).toMatchObject({ code: "ok" });
    expect(await eventually(() => ask(tokens.ops!, "POST"), "ok")).toMatchObject({ code: "ok" });
  });
});

