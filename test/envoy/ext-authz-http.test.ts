/**
 * HTTP ext-authz through the real server: requests shaped as Envoy's HTTP
 * service, nginx `auth_request` and Traefik ForwardAuth send them.
 */
import * as http from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createToken } from "../../src/service/tokens.js";
import { closeHttp, createHttpServer, listenHttp } from "../../src/transport/http.js";
import { buildTrustedProxyMatcher } from "../../src/transport/trusted-proxies.js";
import { noPolicyAuthorizer } from "../support/no-policy-authorizer.js";
import { request, type Answer } from "../support/live-proxy.js";
import { startTestServer, type TestServer } from "../support/server.js";

let plain: TestServer;
let trusting: TestServer;
let unavailableServer: http.Server;
let unavailablePort: number;
const tokens: Record<string, string> = {};

beforeAll(async () => {
  plain = await startTestServer();
  // The test client is on loopback, so it plays the trusted proxy here.
  trusting = await startTestServer(undefined, { trustedProxies: ["127.0.0.1", "::1"] });
  const now = Date.now();
  const base = { tenant: "acme", workspace: "main", environment: "production", type: "service" as const, actor: "test", role: "tenant_operator" };
  for (const t of [plain, trusting]) {
    // Both servers get the same token names; the token strings differ per store, so keep them per port.
    const policy = t.server.policy();
    tokens[`${t.httpUrl} operator`] = (await createToken(t.server.store, policy, { ...base, name: "operator" }, now)).token;
    tokens[`${t.httpUrl} reader`] = (await createToken(t.server.store, policy, { ...base, name: "reader", keyLevel: "read_only" }, now)).token;
    tokens[`${t.httpUrl} allowlisted`] = (await createToken(t.server.store, policy, { ...base, name: "allowlisted", controls: { ipAllowlist: ["198.51.100.0/24"] } }, now)).token;
  }
  const authorize = noPolicyAuthorizer();
  unavailableServer = createHttpServer({ authorize, ready: () => true, extAuthz: { prefix: "/ext-authz", trustedProxies: buildTrustedProxyMatcher([]) } });
  unavailablePort = await listenHttp(unavailableServer, "127.0.0.1", 0);
});

afterAll(async () => {
  await Promise.all([plain?.stop(), trusting?.stop(), unavailableServer === undefined ? undefined : closeHttp(unavailableServer, 1_000)]);
});

/** A raw HTTP/1.1 request: `headers` as alternating names and values, so repeats and `Host` go out as given. */
function send(port: number, method: string, path: string, headers: string[]): Promise<Answer> {
  return request({ host: "127.0.0.1", port, method, path, headers, agent: false });
}

const portOf = (t: TestServer) => Number(new URL(t.httpUrl).port);

interface Row {
  name: string;
  server: () => { port: number; key: string };
  method: string;
  path: string;
  headers: (token: (name: string) => string) => string[];
  status: number;
  code: string;
  check?: (answer: Answer) => void;
}

const onPlain = () => ({ port: portOf(plain), key: plain.httpUrl });
const onTrusting = () => ({ port: portOf(trusting), key: trusting.httpUrl });

const rows: Row[] = [
  {
    name: "Envoy HTTP service: allow, original path after the prefix, identity headers, credential to strip",
    server: onPlain,
    method: "GET",
    path: "/ext-authz/envoy/api/payouts?page=2",
    headers: (token) => ["Host", "api.example.com", "Authorization", `Bearer ${token("operator")}`, "Content-Length", "0"],
    status: 200,
    code: "ok",
    check: ({ headers, body }) => {
      expect(headers["x-portcullis-tenant"]).toBe("acme");
      expect(headers["x-portcullis-token-type"]).toBe("service");
      expect(headers["x-envoy-auth-headers-to-remove"]).toBe("authorization");
      expect(body).toBe("");
    },
  },
  {
    name: "Envoy HTTP service: original method, 403 with body and challenge",
    server: onPlain,
    method: "DELETE",
    path: "/ext-authz/envoy/api/payouts/7",
    headers: (token) => ["Host", "api.example.com", "Authorization", `Bearer ${token("reader")}`],
    status: 403,
    code: "scope_denied",
    check: ({ headers, body }) => {
      expect(headers["www-authenticate"]).toMatch(/insufficient_scope/);
      expect(JSON.parse(body)).toMatchObject({ code: "scope_denied", errors: { required_scope: "payouts:write" } });
      expect(headers["x-portcullis-status"]).toBeUndefined();
    },
  },
  {
    name: "Envoy HTTP service: two Authorization headers are a duplicate, not the first token",
    server: onPlain,
    method: "GET",
    path: "/ext-authz/envoy/api/payouts",
    headers: (token) => ["Host", "api.example.com", "Authorization", `Bearer ${token("operator")}`, "Authorization", `Bearer ${token("reader")}`],
    status: 401,
    code: "unauthenticated",
    check: ({ body }) => expect(JSON.parse(body).errors.reason).toBe("duplicate_header"),
  },
  {
    name: "nginx auth_request: X-Original-Method and X-Original-URI, allow",
    server: onPlain,
    method: "GET",
    path: "/ext-authz/nginx",
    headers: (token) => ["Host", "api.example.com", "X-Original-Method", "POST", "X-Original-URI", "/api/payouts", "Authorization", `Bearer ${token("operator")}`],
    status: 200,
    code: "ok",
  },
  {
    name: "nginx auth_request: 401 stays 401, body also in a header",
    server: onPlain,
    method: "GET",
    path: "/ext-authz/nginx",
    headers: () => ["Host", "api.example.com", "X-Original-Method", "GET", "X-Original-URI", "/api/payouts"],
    status: 401,
    code: "unauthenticated",
    check: ({ headers, body }) => {
      expect(headers["x-portcullis-status"]).toBe("401");
      expect(JSON.parse(headers["x-portcullis-body"] as string)).toEqual(JSON.parse(body));
      expect(headers["www-authenticate"]).toMatch(/^Bearer/);
    },
  },
  {
    name: "nginx auth_request: without X-Original-URI the request cannot be judged (400, sent as 403)",
    server: onPlain,
    method: "GET",
    path: "/ext-authz/nginx",
    headers: (token) => ["Host", "api.example.com", "Authorization", `Bearer ${token("operator")}`],
    status: 403,
    code: "invalid_request",
    check: ({ headers }) => expect(headers["x-portcullis-status"]).toBe("400"),
  },
  {
    name: "nginx auth_request: 503 becomes 403 carrying the real status",
    server: () => ({ port: unavailablePort, key: "" }),
    method: "GET",
    path: "/ext-authz/nginx",
    headers: () => ["Host", "api.example.com", "X-Original-Method", "GET", "X-Original-URI", "/api/payouts"],
    status: 403,
    code: "unavailable",
    check: ({ headers, body }) => {
      expect(headers["x-portcullis-status"]).toBe("503");
      expect(JSON.parse(body).code).toBe("unavailable");
    },
  },
  {
    name: "Traefik ForwardAuth: X-Forwarded-Method/Uri/Host from a trusted proxy",
    server: onTrusting,
    method: "GET",
    path: "/ext-authz/traefik",
    headers: (token) => ["Host", "portcullis:8181", "X-Forwarded-Method", "PUT", "X-Forwarded-Uri", "/api/payouts/7", "X-Forwarded-Host", "api.example.com", "X-Forwarded-Proto", "https", "X-Forwarded-For", "198.51.100.7", "Authorization", `Bearer ${token("allowlisted")}`],
    status: 200,
    code: "ok",
  },
  {
    name: "Traefik ForwardAuth: X-Forwarded-Host and X-Forwarded-For from an untrusted peer are ignored",
    server: onPlain,
    method: "GET",
    path: "/ext-authz/traefik",
    headers: (token) => ["Host", "api.example.com", "X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/api/payouts", "X-Forwarded-For", "198.51.100.7", "Authorization", `Bearer ${token("allowlisted")}`],
    status: 403,
    code: "ip_allowlist_blocked",
  },
  {
    name: "Traefik ForwardAuth: untrusted X-Forwarded-Host cannot pick the environment",
    server: onPlain,
    method: "GET",
    path: "/ext-authz/traefik",
    headers: (token) => ["Host", "localhost", "X-Forwarded-Host", "api.example.com", "X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/api/payouts", "Authorization", `Bearer ${token("operator")}`],
    status: 401,
    code: "unauthenticated",
    check: ({ body }) => expect(JSON.parse(body).errors.reason).toBe("wrong_environment"),
  },
];

describe("HTTP ext-authz", () => {
  it.each(rows)("$name", async (row) => {
    const { port, key } = row.server();
    const answer = await send(port, row.method, row.path, row.headers((name) => tokens[`${key} ${name}`]!));
    expect(answer.status).toBe(row.status);
    expect(answer.headers["x-portcullis-code"]).toBe(row.code);
    row.check?.(answer);
  });

  it("answers unknown endpoints under the prefix with 404 and leaves other paths alone", async () => {
    expect((await send(portOf(plain), "GET", "/ext-authz/other", ["Host", "portcullis"])).status).toBe(404);
    expect((await send(portOf(plain), "GET", "/ext-authzfoo", ["Host", "portcullis"])).status).not.toBe(200);
    expect((await send(portOf(plain), "GET", "/healthz", ["Host", "portcullis"])).status).toBe(200);
  });
});
