/**
 * Envoy ext_authz conformance: the real server answers `Check` calls made with
 * a client built from Envoy's own protos, with `CheckRequest`s shaped like a
 * real Envoy's (pseudo-headers, `headers` or `header_map` with `raw_value`,
 * URL-encoded PEM peer certificate, IPv4 and IPv6 sources), and every field of
 * the `CheckResponse` is read as Envoy reads it.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createToken } from "../../src/service/tokens.js";
import { createGrpcServer } from "../../src/transport/grpc.js";
import { Health } from "../../src/transport/health.js";
import { noPolicyAuthorizer } from "../support/no-policy-authorizer.js";
import { startTestServer, type TestServer } from "../support/server.js";
import { makeTestCertificates, urlEncodedPem, type TestCertificates } from "./certs.js";
import { envoyCheckClient, structToJson, type EnvoyCheckClient } from "./envoy-client.js";

/** google.rpc.Code */
const OK = 0;
const PERMISSION_DENIED = 7;
const UNAUTHENTICATED = 16;
/** envoy.config.core.v3.HeaderValueOption.HeaderAppendAction */
const OVERWRITE_IF_EXISTS_OR_ADD = 2;

let t: TestServer;
let client: EnvoyCheckClient;
let certs: TestCertificates;
const tokens: Record<string, string> = {};
const tokenIds: Record<string, string> = {};

beforeAll(async () => {
  certs = makeTestCertificates();
  t = await startTestServer();
  client = envoyCheckClient(t.grpcAddress);
  const policy = t.server.policy();
  const now = Date.now();
  const base = { tenant: "acme", workspace: "main", environment: "production", type: "service" as const, actor: "test" };
  const make = async (key: string, fields: Record<string, unknown>) => {
    const created = await createToken(t.server.store, policy, { ...base, name: key, role: "tenant_operator", ...fields }, now);
    tokens[key] = created.token;
    tokenIds[key] = created.record.id;
  };
  make("operator", {});
  make("reader", { keyLevel: "read_only" });
  make("allowlisted", { controls: { ipAllowlist: ["198.51.100.0/24"] } });
  make("pinned", { controls: { mtls: { fingerprints: [certs.clientSha256] } } });
  make("suspended", { tenant: "initech" });
  make("readOnly", { controls: { conditionalAccess: { readOnly: true } } });
  make("frozen", { workspace: "frozen" });
  make("metered", { controls: { quota: { limitPerMinute: 1000, limitPerDay: 5000 } } });
  // a per-day limit of 1, spent below: a minute boundary during the run cannot reset it
  make("spent", { controls: { quota: { limitPerDay: 1 } } });
  await t.server.store.suspendTenant("initech", { actor: "test", reason: "conformance" });
  await t.server.store.restrictWorkspace("acme", "frozen", { actor: "test", reason: "conformance" });
  const spend = await client.check(checkRequest({ headers: { authorization: `Bearer ${tokens.spent}` } }));
  expect(spend.status.code).toBe(OK);
});

afterAll(async () => {
  client?.close();
  await t?.stop();
});

interface HttpFields {
  method?: string;
  path?: string;
  host?: string;
  headers?: Record<string, string>;
  /** Send the headers as `header_map` with `raw_value`, as Envoy does with `encode_raw_headers: true`. */
  headerMap?: boolean;
  sourceIp?: string;
  certificate?: string;
}

/** A `CheckRequest` as Envoy builds it: pseudo-headers included, destination and time set. */
function checkRequest(fields: HttpFields): object {
  const method = fields.method ?? "GET";
  const path = fields.path ?? "/api/payouts?page=2";
  const host = fields.host ?? "api.example.com";
  const headers: Record<string, string> = {
    ":authority": host,
    ":method": method,
    ":path": path,
    ":scheme": "https",
    "user-agent": "curl/8.5.0",
    accept: "*/*",
    "x-forwarded-proto": "https",
    "x-request-id": "envoy-req-1",
    ...fields.headers,
  };
  const http: Record<string, unknown> = { id: "9876543210", method, path, host, scheme: "https", protocol: "HTTP/1.1", size: "0" };
  if (fields.headerMap === true) {
    http.header_map = { headers: Object.entries(headers).map(([key, value]) => ({ key, raw_value: Buffer.from(value) })) };
  } else {
    http.headers = headers;
  }
  return {
    attributes: {
      source: {
        address: { socket_address: { address: fields.sourceIp ?? "203.0.113.10", port_value: 50_123 } },
        principal: fields.certificate === undefined ? "" : "spiffe://acme.test/client",
        certificate: fields.certificate ?? "",
      },
      destination: { address: { socket_address: { address: "10.0.0.2", port_value: 8443 } }, principal: "api.example.com" },
      request: { time: { seconds: "1795000000", nanos: 0 }, http },
      context_extensions: { virtual_host: "api" },
      metadata_context: {},
      tls_session: fields.certificate === undefined ? undefined : { sni: "api.example.com" },
    },
  };
}

function headerMap(options: any[]): Map<string, string> {
  for (const option of options) expect(option.append_action, `append_action of ${option.header.key}`).toBe(OVERWRITE_IF_EXISTS_OR_ADD);
  return new Map(options.map((option) => [option.header.key, option.header.value]));
}

interface AllowRow {
  name: string;
  token: string;
  request: HttpFields;
}

const allowRows: AllowRow[] = [
  { name: "ok: headers map, IPv4 source", token: "operator", request: {} },
  { name: "ok: header_map with raw_value (encode_raw_headers), IPv6 source", token: "operator", request: { headerMap: true, sourceIp: "2001:db8::7" } },
  { name: "ok: peer certificate (include_peer_certificate), IPv6 source", token: "operator", request: { sourceIp: "2001:db8::7", certificate: "cert" } },
  { name: "ok: mTLS-pinned token with the pinned certificate (fingerprint from the URL-encoded PEM)", token: "pinned", request: { certificate: "cert" } },
  { name: "ok: IP-allowlisted token from inside the allowlist", token: "allowlisted", request: { sourceIp: "198.51.100.20" } },
];

describe("Envoy Check: allow", () => {
  it.each(allowRows)("$name", async (row) => {
    const request = { ...row.request, headers: { authorization: `Bearer ${tokens[row.token]}` } };
    if (request.certificate !== undefined) request.certificate = urlEncodedPem(certs.clientPem);
    const response = await client.check(checkRequest(request));
    expect(response.status.code).toBe(OK);
    expect(response.http_response).toBe("ok_response");
    expect(response.denied_response ?? null).toBeNull();
    const ok = response.ok_response;
    const upstream = headerMap(ok.headers);
    expect(upstream.get("x-portcullis-token-id")).toBe(tokenIds[row.token]);
    expect(upstream.get("x-portcullis-tenant")).toBe("acme");
    expect(upstream.get("x-portcullis-workspace")).toBe("main");
    expect(upstream.get("x-portcullis-environment")).toBe("production");
    expect(upstream.get("x-portcullis-role")).toBe("tenant_operator");
    // the bundled policy set forwards no scope list: upstreams that need it ask for it (`policySet.upstream`)
    expect(upstream.has("x-portcullis-scopes")).toBe(false);
    expect(ok.headers_to_remove).toEqual(["authorization"]);
    headerMap(ok.response_headers_to_add);
    const metadata = structToJson(response.dynamic_metadata);
    expect(metadata).toMatchObject({ code: "ok", tenant: "acme", workspace: "main", token_id: tokenIds[row.token], environment: "production", role: "tenant_operator", rule_id: "group:/api/payouts", request_id: "envoy-req-1" });
    expect(metadata).not.toHaveProperty("scopes");
  });
});

describe("Envoy Check: allow with a quota", () => {
  it("carries the rate-limit headers in response_headers_to_add, for the client, not upstream", async () => {
    const response = await client.check(checkRequest({ headers: { authorization: `Bearer ${tokens.metered}` } }));
    expect(response.status.code).toBe(OK);
    expect(response.http_response).toBe("ok_response");
    const ok = response.ok_response;
    const toClient = headerMap(ok.response_headers_to_add);
    expect([...toClient.keys()]).toEqual(["ratelimit-limit", "ratelimit-remaining", "ratelimit-reset", "ratelimit-policy"]);
    // the minute has fewer requests left than the day, so it is the one reported
    expect(toClient.get("ratelimit-limit")).toBe("1000");
    expect(toClient.get("ratelimit-remaining")).toBe("999");
    expect(Number(toClient.get("ratelimit-reset"))).toBeGreaterThanOrEqual(1);
    expect(Number(toClient.get("ratelimit-reset"))).toBeLessThanOrEqual(60);
    expect(toClient.get("ratelimit-policy")).toBe("1000;w=60, 5000;w=86400");
    const upstream = headerMap(ok.headers);
    expect(upstream.get("x-portcullis-token-id")).toBe(tokenIds.metered);
    expect([...upstream.keys()].some((name) => name.startsWith("ratelimit"))).toBe(false);
    expect(ok.headers_to_remove).toEqual(["authorization"]);
    expect(structToJson(response.dynamic_metadata)).toMatchObject({ code: "ok", token_id: tokenIds.metered });
  });
});

interface DenyRow {
  name: string;
  request: () => HttpFields;
  rpcCode: number;
  httpStatus: number;
  code: string;
  reason: string;
  /** Extra response headers the client must get. */
  headers?: Record<string, RegExp>;
}

const denyRows: DenyRow[] = [
  { name: "invalid_request: encoded slash in the path", request: () => ({ path: "/api/payouts%2F..%2Fledger", headers: { authorization: `Bearer ${tokens.operator}` } }), rpcCode: PERMISSION_DENIED, httpStatus: 400, code: "invalid_request", reason: "encoded_slash" },
  { name: "unauthenticated: no Authorization header", request: () => ({}), rpcCode: UNAUTHENTICATED, httpStatus: 401, code: "unauthenticated", reason: "missing", headers: { "www-authenticate": /^Bearer realm="example-payments"$/ } },
  {
    name: "unauthenticated: two Authorization headers, merged with a comma by Envoy",
    request: () => ({ headers: { authorization: `Bearer ${tokens.operator}, Bearer ${tokens.reader}` } }),
    rpcCode: UNAUTHENTICATED,
    httpStatus: 401,
    code: "unauthenticated",
    reason: "duplicate_header",
    headers: { "www-authenticate": /error="invalid_token"/ },
  },
  {
    name: "unauthenticated: two Authorization entries in header_map",
    request: () => ({ headerMap: true, headers: { authorization: `Bearer ${tokens.operator}`, Authorization: `Bearer ${tokens.reader}` } }),
    rpcCode: UNAUTHENTICATED,
    httpStatus: 401,
    code: "unauthenticated",
    reason: "duplicate_header",
  },
  {
    name: "scope_denied: read-only key writes",
    request: () => ({ method: "POST", path: "/api/payouts", headers: { authorization: `Bearer ${tokens.reader}` } }),
    rpcCode: PERMISSION_DENIED,
    httpStatus: 403,
    code: "scope_denied",
    reason: "missing_scope",
    headers: { "www-authenticate": /insufficient_scope/ },
  },
  {
    name: "ip_allowlist_blocked: IPv6 source outside the allowlist",
    request: () => ({ sourceIp: "2001:db8::9", headers: { authorization: `Bearer ${tokens.allowlisted}` } }),
    rpcCode: PERMISSION_DENIED,
    httpStatus: 403,
    code: "ip_allowlist_blocked",
    reason: "",
  },
  {
    name: "mtls_required: pinned token without a peer certificate",
    request: () => ({ headers: { authorization: `Bearer ${tokens.pinned}` } }),
    rpcCode: PERMISSION_DENIED,
    httpStatus: 403,
    code: "mtls_required",
    reason: "",
  },
  {
    name: "mtls_required: a client certificate header from an untrusted peer is ignored",
    request: () => ({ headers: { authorization: `Bearer ${tokens.pinned}`, "x-client-cert-sha256": certs.clientSha256, "x-ssl-client-verify": "SUCCESS" } }),
    rpcCode: PERMISSION_DENIED,
    httpStatus: 403,
    code: "mtls_required",
    reason: "",
  },
  {
    name: "tenant_suspended: a token of a suspended tenant",
    request: () => ({ headers: { authorization: `Bearer ${tokens.suspended}` } }),
    rpcCode: PERMISSION_DENIED,
    httpStatus: 403,
    code: "tenant_suspended",
    reason: "suspended",
  },
  {
    name: "conditional_access_blocked: a read-only token writes",
    request: () => ({ method: "POST", path: "/api/payouts", headers: { authorization: `Bearer ${tokens.readOnly}` } }),
    rpcCode: PERMISSION_DENIED,
    httpStatus: 403,
    code: "conditional_access_blocked",
    reason: "read_only",
  },
  {
    name: "workspace_restricted: a write in a restricted workspace is 423",
    request: () => ({ method: "POST", path: "/api/payouts", headers: { authorization: `Bearer ${tokens.frozen}` } }),
    rpcCode: PERMISSION_DENIED,
    httpStatus: 423,
    code: "workspace_restricted",
    reason: "restricted",
  },
  {
    name: "quota_exceeded: a spent per-day quota is 429 with Retry-After and rate-limit headers",
    request: () => ({ headers: { authorization: `Bearer ${tokens.spent}` } }),
    rpcCode: PERMISSION_DENIED,
    httpStatus: 429,
    code: "quota_exceeded",
    reason: "per_day",
    headers: { "retry-after": /^[1-9][0-9]*$/, "ratelimit-limit": /^1$/, "ratelimit-remaining": /^0$/, "ratelimit-reset": /^[1-9][0-9]*$/, "ratelimit-policy": /^1;w=86400$/ },
  },
];

function expectDenied(response: any, row: { rpcCode: number; httpStatus: number; code: string; reason: string; headers?: Record<string, RegExp> }): Map<string, string> {
  expect(response.status.code).toBe(row.rpcCode);
  expect(response.http_response).toBe("denied_response");
  expect(response.ok_response ?? null).toBeNull();
  const denied = response.denied_response;
  expect(denied.status.code).toBe(row.httpStatus);
  const headers = headerMap(denied.headers);
  expect(headers.get("content-type")).toBe("application/json");
  expect(headers.get("x-portcullis-code")).toBe(row.code);
  expect(headers.get("x-request-id")).toBeTruthy();
  for (const [name, pattern] of Object.entries(row.headers ?? {})) expect(headers.get(name)).toMatch(pattern);
  const body = JSON.parse(denied.body);
  expect(body.code).toBe(row.code);
  if (row.reason !== "") expect(body.errors.reason).toBe(row.reason);
  expect(body.request_id).toBe(headers.get("x-request-id"));
  const metadata = structToJson(response.dynamic_metadata);
  expect(metadata.code).toBe(row.code);
  expect(metadata.request_id).toBe(body.request_id);
  return headers;
}

describe("Envoy Check: deny", () => {
  it.each(denyRows)("$name", async (row) => {
    const response = await client.check(checkRequest(row.request()));
    expectDenied(response, row);
  });

  it("quota_exceeded: Retry-After equals ratelimit-reset and the body's retry_after_seconds; nothing goes upstream", async () => {
    const response = await client.check(checkRequest({ headers: { authorization: `Bearer ${tokens.spent}` } }));
    const headers = expectDenied(response, { rpcCode: PERMISSION_DENIED, httpStatus: 429, code: "quota_exceeded", reason: "per_day" });
    const retryAfter = Number(headers.get("retry-after"));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(86_400);
    expect(headers.get("ratelimit-reset")).toBe(String(retryAfter));
    const body = JSON.parse(response.denied_response.body);
    expect(body.quota).toEqual({ window: "per_day", limit: 1, retry_after_seconds: retryAfter });
    expect(body.errors).toMatchObject({ reason: "per_day", quota: "per_day", limit: "1", retry_after_seconds: String(retryAfter) });
    expect(structToJson(response.dynamic_metadata)).toMatchObject({ code: "quota_exceeded", token_id: tokenIds.spent, rule_id: `token:${tokenIds.spent}` });
  });

  it("answers bytes that are not a CheckRequest with a 503 deny, never a gRPC error", async () => {
    const response = await client.checkBytes(Buffer.from([0x0a, 0xff, 0xff, 0xff]));
    expectDenied(response, { rpcCode: PERMISSION_DENIED, httpStatus: 503, code: "unavailable", reason: "internal_error" });
  });

  it("answers an empty CheckRequest with a decision", async () => {
    const response = await client.checkBytes(Buffer.alloc(0));
    expectDenied(response, { rpcCode: PERMISSION_DENIED, httpStatus: 400, code: "invalid_request", reason: "" });
  });
});

describe("Envoy Check: unavailable", () => {
  it("fails closed with 503 when no policy set is loaded", async () => {
    const authorize = noPolicyAuthorizer();
    const server = createGrpcServer({ authorize, health: new Health() });
    const port = await server.listen("127.0.0.1", 0);
    const local = envoyCheckClient(`127.0.0.1:${port}`);
    try {
      const response = await local.check(checkRequest({ headers: { authorization: `Bearer ${tokens.operator}` } }));
      const headers = expectDenied(response, { rpcCode: PERMISSION_DENIED, httpStatus: 503, code: "unavailable", reason: "" });
      expect(headers.get("x-request-id")).toBe("envoy-req-1");
    } finally {
      local.close();
      await server.close(1_000);
    }
  });
});
