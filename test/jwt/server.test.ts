/**
 * JWT exchange on the real server: the HTTP endpoint, `ExchangeToken` on
 * Connect and gRPC, the JWT accepted by every transport (Authorize, Envoy
 * `Check`, the HTTP ext-authz modes), the JWKS verifying it with jose, parent
 * revocation within 1 s, the rate limit, and `portcullis keys rotate`.
 */
import { execFile } from "node:child_process";
import * as http from "node:http";
import { promisify } from "node:util";
import path from "node:path";
import * as grpc from "@grpc/grpc-js";
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExchangeTokenRequestSchema, ExchangeTokenResponseSchema } from "../../src/gen/portcullis/v1/token_service_pb.js";
import { createToken } from "../../src/service/tokens.js";
import { TokenStore } from "../../src/store/token-store.js";
import { envoyCheckClient, type EnvoyCheckClient } from "../envoy/envoy-client.js";
import { REPO_ROOT } from "../support/fixtures.js";
import { unaryMethod } from "../support/grpc-client.js";
import { startTestServer, type TestServer } from "../support/server.js";
import { AUDIENCE, ISSUER, jwtPolicyDir } from "./support.js";

let t: TestServer;
let folder: ReturnType<typeof jwtPolicyDir>;
let envoy: EnvoyCheckClient;

async function newToken(name: string): Promise<{ token: string; id: string }> {
  const created = await createToken(t.server.store, t.server.policy(), { tenant: "acme", workspace: "main", environment: "production", type: "service", name, role: "tenant_operator", actor: "test" }, Date.now());
  return { token: created.token, id: created.record.id };
}

/** A raw HTTP/1.1 request, so that `Host` is what the test says. */
function send(method: string, target: string, headers: Record<string, string>, body = ""): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const request = http.request({ host: "127.0.0.1", port: t.server.httpPort, method, path: target, headers: { ...headers, "content-length": String(Buffer.byteLength(body)) } }, (response) => {
      let text = "";
      response.setEncoding("utf8");
      response.on("data", (chunk: string) => (text += chunk));
      response.on("end", () => resolve({ status: response.statusCode!, headers: response.headers, body: text }));
    });
    request.on("error", reject);
    request.end(body);
  });
}

async function exchangeOverHttp(token: string, body = ""): Promise<{ status: number; headers: http.IncomingHttpHeaders; json: any }> {
  const response = await send("POST", "/v1/auth/exchange", { authorization: `Bearer ${token}`, "content-type": "application/json" }, body);
  return { status: response.status, headers: response.headers, json: JSON.parse(response.body) };
}

/** `Authorize` over Connect JSON. */
async function authorizeConnect(bearer: string, method = "GET", target = "/api/payouts"): Promise<any> {
  const response = await fetch(`${t.httpUrl}/portcullis.v1.AuthorizationService/Authorize`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ method, path: target, host: "api.example.com", sourceIp: "203.0.113.10", headers: [{ name: "authorization", value: `Bearer ${bearer}` }] }),
  });
  return response.json();
}

function envoyCheck(bearer: string): Promise<any> {
  const headers = { ":authority": "api.example.com", ":method": "GET", ":path": "/api/payouts", authorization: `Bearer ${bearer}` };
  return envoy.check({
    attributes: {
      source: { address: { socket_address: { address: "203.0.113.10", port_value: 50_000 } } },
      request: { http: { method: "GET", path: "/api/payouts", host: "api.example.com", headers } },
    },
  });
}

beforeAll(async () => {
  folder = jwtPolicyDir();
  t = await startTestServer(folder.dir);
  envoy = envoyCheckClient(t.grpcAddress);
});

afterAll(async () => {
  envoy?.close();
  await t?.stop();
  folder?.remove();
});

describe("exchange over every transport", () => {
  it("HTTP: POST /v1/auth/exchange answers accessToken, expiresIn and tokenType, never cached", async () => {
    const { token, id } = await newToken("http");
    const { status, headers, json } = await exchangeOverHttp(token);
    expect(status).toBe(200);
    expect(headers["cache-control"]).toBe("no-store");
    expect(Object.keys(json).sort()).toEqual(["accessToken", "expiresIn", "tokenType"]);
    expect(json).toMatchObject({ expiresIn: 900, tokenType: "Bearer" });
    const jwks = createLocalJWKSet((await (await fetch(`${t.httpUrl}/.well-known/jwks.json`)).json()) as any);
    const { payload } = await jwtVerify(json.accessToken, jwks, { issuer: ISSUER, audience: AUDIENCE });
    expect(payload.sub).toBe(id);
  });

  it("HTTP: a refused exchange answers the decision's status and error body", async () => {
    const missing = await send("POST", "/v1/auth/exchange", {});
    expect(missing.status).toBe(401);
    expect(missing.headers["www-authenticate"]).toMatch(/^Bearer/);
    expect(JSON.parse(missing.body)).toMatchObject({ code: "unauthenticated" });
    const { token } = await newToken("bad body");
    expect((await send("POST", "/v1/auth/exchange", { authorization: `Bearer ${token}` }, "[1]")).status).toBe(400);
    expect((await send("GET", "/v1/auth/exchange", { authorization: `Bearer ${token}` })).status).toBe(405);
  });

  it("Connect: TokenService/ExchangeToken answers the same JSON shape", async () => {
    const { token } = await newToken("connect");
    const response = await fetch(`${t.httpUrl}/portcullis.v1.TokenService/ExchangeToken`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
      body: JSON.stringify({ scopes: ["payouts:read"], lifetimeSeconds: 120 }),
    });
    const json = (await response.json()) as any;
    expect(response.status).toBe(200);
    expect(json).toMatchObject({ expiresIn: 120, tokenType: "Bearer" });
    expect((await authorizeConnect(json.accessToken)).allowed).toBe(true);
    expect((await authorizeConnect(json.accessToken, "POST")).code).toBe("scope_denied");
    const refused = await fetch(`${t.httpUrl}/portcullis.v1.TokenService/ExchangeToken`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    expect(refused.status).toBe(401);
    expect(((await refused.json()) as any).code).toBe("unauthenticated");
  });

  it("gRPC: TokenService/ExchangeToken", async () => {
    const { token } = await newToken("grpc");
    const method = unaryMethod("/portcullis.v1.TokenService/ExchangeToken", ExchangeTokenRequestSchema, ExchangeTokenResponseSchema);
    const client = new grpc.Client(t.grpcAddress, grpc.credentials.createInsecure());
    const call = (authorization: string | null) =>
      new Promise<any>((resolve) => {
        const metadata = new grpc.Metadata();
        if (authorization !== null) metadata.set("authorization", authorization);
        client.makeUnaryRequest(method.path, method.requestSerialize, method.responseDeserialize, { $typeName: "portcullis.v1.ExchangeTokenRequest", scopes: [], lifetimeSeconds: 0 } as any, metadata, (error, response) => resolve(error ?? response));
      });
    try {
      const answer = await call(`Bearer ${token}`);
      expect(answer).toMatchObject({ expiresIn: 900, tokenType: "Bearer" });
      expect(decodeProtectedHeader(answer.accessToken).alg).toBe("EdDSA");
      expect((await call(null)).code).toBe(grpc.status.UNAUTHENTICATED);
    } finally {
      client.close();
    }
  });

  it("the JWT is a bearer credential on Authorize, Envoy Check and the HTTP ext-authz modes", async () => {
    const { token, id } = await newToken("everywhere");
    const { json } = await exchangeOverHttp(token);
    const jwt: string = json.accessToken;
    const connect = await authorizeConnect(jwt);
    expect(connect).toMatchObject({ allowed: true, code: "ok" });
    expect(connect.identity.tokenId).toBe(id);
    const check = await envoyCheck(jwt);
    expect(check.status.code).toBe(0);
    const envoyHttp = await send("GET", "/ext-authz/envoy/api/payouts", { host: "api.example.com", authorization: `Bearer ${jwt}` });
    expect(envoyHttp.status).toBe(200);
    expect(envoyHttp.headers["x-portcullis-token-id"]).toBe(id);
    const nginx = await send("GET", "/ext-authz/nginx", { host: "api.example.com", "x-original-method": "GET", "x-original-uri": "/api/payouts", authorization: `Bearer ${jwt}` });
    expect(nginx.status).toBe(200);
    const traefik = await send("GET", "/ext-authz/traefik", { host: "api.example.com", "x-forwarded-method": "GET", "x-forwarded-uri": "/api/payouts", authorization: `Bearer ${jwt}` });
    expect(traefik.status).toBe(200);
    // and a tampered one is refused everywhere
    const [header, payload, signature] = jwt.split(".");
    const tampered = `${header}.${payload!.slice(0, -2)}AA.${signature}`;
    expect((await authorizeConnect(tampered)).code).toBe("unauthenticated");
    expect((await envoyCheck(tampered)).status.code).toBe(16);
    expect((await send("GET", "/ext-authz/envoy/api/payouts", { host: "api.example.com", authorization: `Bearer ${tampered}` })).status).toBe(401);
  });
});

describe("parent token", () => {
  it("revoked through this server: its JWTs stop at once", async () => {
    const { token, id } = await newToken("revoked here");
    const jwt = (await exchangeOverHttp(token)).json.accessToken;
    expect((await authorizeConnect(jwt)).allowed).toBe(true);
    t.server.store.revoke(id, "test");
    expect(await authorizeConnect(jwt)).toMatchObject({ allowed: false, code: "unauthenticated", reason: "revoked" });
    expect((await exchangeOverHttp(token)).status).toBe(401);
  });

  it("revoked by another process sharing the store: its JWTs stop within 1 s", async () => {
    const { token, id } = await newToken("revoked elsewhere");
    const jwt = (await exchangeOverHttp(token)).json.accessToken;
    expect((await authorizeConnect(jwt)).allowed).toBe(true);
    const other = TokenStore.open({ dataDir: t.dataDir, mustExist: true });
    try {
      other.revoke(id, "test");
    } finally {
      other.close();
    }
    const revokedAt = performance.now();
    let deniedAfterMs = -1;
    for (let i = 0; i < 60 && deniedAfterMs < 0; i++) {
      if (!(await authorizeConnect(jwt)).allowed) deniedAfterMs = performance.now() - revokedAt;
      else await new Promise((resolve) => setTimeout(resolve, 25));
    }
    expect(deniedAfterMs).toBeGreaterThanOrEqual(0);
    // the parent cache's bound, plus a little for this loop's own round trips
    expect(deniedAfterMs).toBeLessThan(1_150);
  });
});

describe("rate limit", () => {
  it("11th exchange within a minute answers 429 with Retry-After; the JWTs already issued keep working", async () => {
    // why: a minute boundary during the loop would reset the window; start just after one
    const msIntoMinute = Date.now() % 60_000;
    if (msIntoMinute > 50_000) await new Promise((resolve) => setTimeout(resolve, 60_500 - msIntoMinute));
    const { token } = await newToken("rate limited");
    const jwts: string[] = [];
    for (let i = 0; i < 10; i++) {
      const { status, json } = await exchangeOverHttp(token);
      expect(status).toBe(200);
      jwts.push(json.accessToken);
    }
    const refused = await exchangeOverHttp(token);
    expect(refused.status).toBe(429);
    expect(Number(refused.headers["retry-after"])).toBeGreaterThan(0);
    expect(refused.json.code).toBe("quota_exceeded");
    expect((await authorizeConnect(jwts[9]!)).allowed).toBe(true);
  }, 70_000);
});

describe("keys rotate", () => {
  it("the new key signs after the reload, the previous key's JWTs still verify, and the JWKS holds both", async () => {
    const { token } = await newToken("rotation");
    const before = (await exchangeOverHttp(token)).json.accessToken;
    const oldKid = decodeProtectedHeader(before).kid;
    const { stdout } = await promisify(execFile)(process.execPath, [path.join(REPO_ROOT, "bin/portcullis.js"), "keys", "rotate", "--data-dir", t.dataDir]);
    const newKid = stdout.trim();
    expect(newKid).toMatch(/^[0-9a-f]{16}$/);
    expect(newKid).not.toBe(oldKid);
    expect((await authorizeConnect(before)).allowed).toBe(true);
    await t.server.keyRing.refresh();
    const after = (await exchangeOverHttp(token)).json.accessToken;
    expect(decodeProtectedHeader(after).kid).toBe(newKid);
    const jwks = (await (await fetch(`${t.httpUrl}/.well-known/jwks.json`)).json()) as any;
    expect(jwks.keys.map((key: { kid: string }) => key.kid).sort()).toEqual([oldKid, newKid].sort());
    const set = createLocalJWKSet(jwks);
    for (const jwt of [before, after]) await jwtVerify(jwt, set, { issuer: ISSUER, audience: AUDIENCE });
    expect((await authorizeConnect(after)).allowed).toBe(true);
    expect((await authorizeConnect(before)).allowed).toBe(true);
  });
});

describe("without the policy section", () => {
  it("has no exchange endpoint, no JWKS, and ExchangeToken is unimplemented", async () => {
    const plain = jwtPolicyDir(null);
    const other = await startTestServer(plain.dir);
    try {
      const created = await createToken(other.server.store, other.server.policy(), { tenant: "acme", workspace: "main", environment: "production", type: "service", name: "x", role: "tenant_operator", actor: "test" }, Date.now());
      const response = await fetch(`${other.httpUrl}/v1/auth/exchange`, { method: "POST", headers: { authorization: `Bearer ${created.token}` } });
      expect(response.status).toBe(404);
      expect((await fetch(`${other.httpUrl}/.well-known/jwks.json`)).status).toBe(404);
      const rpc = await fetch(`${other.httpUrl}/portcullis.v1.TokenService/ExchangeToken`, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${created.token}` }, body: "{}" });
      expect(((await rpc.json()) as any).code).toBe("unimplemented");
    } finally {
      await other.stop();
      plain.remove();
    }
  });
});
