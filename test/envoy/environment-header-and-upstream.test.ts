/**
 * A policy set that names an environment header (as Zeriq's
 * `X-Zeriq-Environment`) and chooses what goes upstream, judged through the
 * real server: Envoy `Check` (a client built from Envoy's own protos) and
 * Connect `Authorize`, the same rows through both.
 */
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuthorizationService } from "../../src/gen/portcullis/v1/authorization_pb.js";
import { createToken } from "../../src/service/tokens.js";
import { removePolicyFolders, writePolicyFolder } from "../controls/support.js";
import { startTestServer, type TestServer } from "../support/server.js";
import { envoyCheckClient, structToJson, type EnvoyCheckClient } from "./envoy-client.js";

const POLICY_SET = {
  policySet: {
    name: "zeriq-like",
    defaultEnvironment: "production",
    environmentHeader: "X-Zeriq-Environment",
    upstream: {
      headers: { tokenId: "x-api-token-id", tenant: "x-api-tenant", scopes: "x-api-scopes" },
      metadata: ["tokenId", "scopes"],
    },
  },
  environments: [
    { name: "production", tokenPrefix: "sk_live_", hosts: ["api.example.com"] },
    { name: "sandbox", tokenPrefix: "sk_sandbox_", hosts: ["sandbox.api.example.com"] },
    { name: "test", tokenPrefix: "sk_test_", hosts: ["localhost"] },
  ],
};

let t: TestServer;
let envoy: EnvoyCheckClient;
const tokens: Record<string, string> = {};
const tokenIds: Record<string, string> = {};

beforeAll(async () => {
  t = await startTestServer(writePolicyFolder({ "policy-set.json": POLICY_SET }));
  envoy = envoyCheckClient(t.grpcAddress);
  const policy = t.server.policy();
  const base = { tenant: "acme", workspace: "main", type: "service" as const, actor: "test", role: "tenant_operator" };
  const make = async (key: string, fields: Record<string, unknown>) => {
    const created = await createToken(t.server.store, policy, { ...base, name: key, environment: "production", ...fields }, Date.now());
    tokens[key] = created.token;
    tokenIds[key] = created.record.id;
  };
  make("live", {});
  make("sandbox", { environment: "sandbox" });
  make("liveOnly", { controls: { conditionalAccess: { environments: ["production"] } } });
});

afterAll(async () => {
  envoy?.close();
  await t?.stop();
  removePolicyFolders();
});

/** One request as both transports send it; `environment` lists the environment headers, one field each. */
interface Row {
  name: string;
  token: string;
  host: string;
  environment: string[];
  code: string;
  reason: string;
  httpStatus: number;
}

const rows: Row[] = [
  { name: "no header: the host decides", token: "live", host: "api.example.com", environment: [], code: "ok", reason: "ok", httpStatus: 200 },
  { name: "the header wins over the host", token: "live", host: "sandbox.api.example.com", environment: ["production"], code: "ok", reason: "ok", httpStatus: 200 },
  { name: "a sandbox token selected by header on the production host", token: "sandbox", host: "api.example.com", environment: ["sandbox"], code: "ok", reason: "ok", httpStatus: 200 },
  { name: "another environment's token against the selected one", token: "live", host: "api.example.com", environment: ["sandbox"], code: "unauthenticated", reason: "wrong_environment", httpStatus: 401 },
  { name: "an unknown environment fails closed", token: "live", host: "api.example.com", environment: ["staging"], code: "invalid_request", reason: "unknown_environment", httpStatus: 400 },
  { name: "names are exact: no case folding", token: "live", host: "api.example.com", environment: ["Production"], code: "invalid_request", reason: "unknown_environment", httpStatus: 400 },
  { name: "an empty value fails closed", token: "live", host: "api.example.com", environment: [""], code: "invalid_request", reason: "unknown_environment", httpStatus: 400 },
  { name: "two headers fail closed, even when they agree", token: "live", host: "api.example.com", environment: ["production", "production"], code: "invalid_request", reason: "repeated_environment_header", httpStatus: 400 },
  { name: "conditional access reads the selected environment, not the host's", token: "liveOnly", host: "sandbox.api.example.com", environment: ["production"], code: "ok", reason: "ok", httpStatus: 200 },
  { name: "conditional access token without the header on the sandbox host", token: "liveOnly", host: "sandbox.api.example.com", environment: [], code: "unauthenticated", reason: "wrong_environment", httpStatus: 401 },
];

function checkRequest(row: Row): object {
  // header_map keeps repeated fields apart, as Envoy sends them with encode_raw_headers
  const headers: [string, string][] = [
    [":authority", row.host],
    [":method", "GET"],
    [":path", "/api/payouts"],
    ["authorization", `Bearer ${tokens[row.token]}`],
    ...row.environment.map((value): [string, string] => ["x-zeriq-environment", value]),
  ];
  return {
    attributes: {
      source: { address: { socket_address: { address: "203.0.113.10", port_value: 50_123 } } },
      request: {
        http: {
          method: "GET",
          path: "/api/payouts",
          host: row.host,
          scheme: "https",
          protocol: "HTTP/1.1",
          header_map: { headers: headers.map(([key, value]) => ({ key, raw_value: Buffer.from(value) })) },
        },
      },
    },
  };
}

function authorizeClient() {
  return createClient(AuthorizationService, createConnectTransport({ baseUrl: t.httpUrl, httpVersion: "1.1" }));
}

describe("environment header through Envoy Check", () => {
  it.each(rows)("$name", async (row) => {
    const response = await envoy.check(checkRequest(row));
    const metadata = structToJson(response.dynamic_metadata);
    expect({ code: metadata.code, reason: metadata.reason }).toEqual({ code: row.code, reason: row.reason });
    if (row.code === "ok") expect(response.status.code).toBe(0);
    else expect(response.denied_response.status.code).toBe(row.httpStatus);
  });
});

describe("environment header through Connect Authorize", () => {
  it.each(rows)("$name", async (row) => {
    const answer = await authorizeClient().authorize({
      method: "GET",
      path: "/api/payouts",
      host: row.host,
      sourceIp: "203.0.113.10",
      headers: [{ name: "authorization", value: `Bearer ${tokens[row.token]}` }, ...row.environment.map((value) => ({ name: "X-Zeriq-Environment", value }))],
    });
    expect({ code: answer.code, reason: answer.reason, httpStatus: answer.httpStatus }).toEqual({ code: row.code, reason: row.reason, httpStatus: row.httpStatus });
  });
});

describe("what goes upstream is the policy set's choice", () => {
  const allow = rows[0]!;

  it("Check forwards exactly the named headers and metadata, scopes included on request", async () => {
    const response = await envoy.check(checkRequest(allow));
    expect(response.status.code).toBe(0);
    const upstream = response.ok_response.headers.map((h: any) => [h.header.key, h.header.value]);
    expect(upstream.map(([name]: string[]) => name)).toEqual(["x-api-token-id", "x-api-tenant", "x-api-scopes"]);
    expect(Object.fromEntries(upstream)).toMatchObject({ "x-api-token-id": tokenIds.live, "x-api-tenant": "acme" });
    const scopes = (Object.fromEntries(upstream)["x-api-scopes"] as string).split(" ");
    expect(scopes).toContain("payouts:read");
    const metadata = structToJson(response.dynamic_metadata);
    expect(metadata).toMatchObject({ token_id: tokenIds.live, scopes });
    for (const key of ["tenant", "workspace", "environment", "role", "token_type"]) expect(metadata).not.toHaveProperty(key);
  });

  it("Authorize returns the same upstream headers and the whole identity to its caller", async () => {
    const answer = await authorizeClient().authorize({
      method: "GET",
      path: "/api/payouts",
      host: allow.host,
      headers: [{ name: "authorization", value: `Bearer ${tokens.live}` }],
    });
    expect(answer.code).toBe("ok");
    expect(answer.upstreamHeaders.map((h) => h.name)).toEqual(["x-api-token-id", "x-api-tenant", "x-api-scopes"]);
    expect(answer.upstreamHeaders[2]!.value.split(" ")).toEqual(answer.identity!.scopes);
    expect(answer.identity).toMatchObject({ tenant: "acme", workspace: "main", role: "tenant_operator" });
  });
});
