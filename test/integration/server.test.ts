import { create, equals } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuthorizationService, AuthorizeRequestSchema, AuthorizeResponseSchema, type AuthorizeResponse } from "../../src/gen/portcullis/v1/authorization_pb.js";
import { createToken } from "../../src/service/tokens.js";
import { grpcAuthorizeClient, startTestServer, type TestServer } from "../support/server.js";

let t: TestServer;
let operatorToken: string;
let readOnlyToken: string;
let revokedToken: string;

beforeAll(async () => {
  t = await startTestServer();
  const policy = t.server.policy();
  const now = Date.now();
  const base = { tenant: "acme", workspace: "main", environment: "production", type: "service" as const, actor: "test" };
  operatorToken = (await createToken(t.server.store, policy, { ...base, name: "operator", role: "tenant_operator" }, now)).token;
  readOnlyToken = (await createToken(t.server.store, policy, { ...base, name: "reader", role: "tenant_operator", keyLevel: "read_only" }, now)).token;
  const revoked = await createToken(t.server.store, policy, { ...base, name: "old", role: "tenant_operator" }, now);
  await t.server.store.revoke(revoked.record.id, "test");
  revokedToken = revoked.token;
});

afterAll(async () => {
  await t.stop();
});

async function connectJson(body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: any }> {
  const response = await fetch(`${t.httpUrl}/portcullis.v1.AuthorizationService/Authorize`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: response.status, json: await response.json() };
}

describe("Authorize over Connect JSON on HTTP/1.1", () => {
  it("allows an operator to read payouts and names the identity", async () => {
    const { status, json } = await connectJson({
      method: "GET",
      path: "/api/payouts?page=2",
      host: "api.example.com",
      sourceIp: "203.0.113.10",
      headers: [{ name: "Authorization", value: `Bearer ${operatorToken}` }, { name: "X-Request-Id", value: "req-42" }],
    });
    expect(status).toBe(200);
    expect(json).toMatchObject({ allowed: true, httpStatus: 200, code: "ok", reason: "ok", requestId: "req-42", ruleId: "group:/api/payouts" });
    expect(json.identity).toMatchObject({ tenant: "acme", workspace: "main", environment: "production", tokenType: "service", role: "tenant_operator" });
    expect(json.upstreamHeaders).toContainEqual({ name: "x-portcullis-tenant", value: "acme" });
    expect(json.body ?? "").toBe("");
  });

  it("denies a read-only key a write with 403 scope_denied, its headers and body", async () => {
    const { json } = await connectJson({
      method: "POST",
      path: "/api/payouts",
      host: "api.example.com",
      headers: [{ name: "authorization", value: `Bearer ${readOnlyToken}` }],
    });
    expect(json).toMatchObject({ httpStatus: 403, code: "scope_denied", reason: "missing_scope", auditEvent: "auth.api_token_ability_rejected" });
    expect(json.allowed).toBe(false);
    expect(json.details).toEqual({ required_scope: "payouts:write", current_scope: "payouts:read" });
    expect(json.responseHeaders).toContainEqual({ name: "content-type", value: "application/json" });
    expect(JSON.parse(json.body)).toMatchObject({ code: "scope_denied", errors: { required_scope: "payouts:write" } });
  });

  it("denies a revoked token with 401 and a bearer challenge", async () => {
    const { json } = await connectJson({ method: "GET", path: "/api/payouts", host: "api.example.com", headers: [{ name: "authorization", value: `Bearer ${revokedToken}` }] });
    expect(json).toMatchObject({ httpStatus: 401, code: "unauthenticated", reason: "revoked" });
    expect(json.responseHeaders.find((h: { name: string }) => h.name === "www-authenticate").value).toMatch(/^Bearer realm=/);
  });

  it("combines two Authorization headers and denies them as duplicate", async () => {
    const { json } = await connectJson({
      method: "GET",
      path: "/api/payouts",
      headers: [
        { name: "Authorization", value: `Bearer ${operatorToken}` },
        { name: "authorization", value: `Bearer ${readOnlyToken}` },
      ],
    });
    expect(json).toMatchObject({ httpStatus: 401, code: "unauthenticated", reason: "duplicate_header" });
  });

  it("answers an empty request with a decision, not an error", async () => {
    const { status, json } = await connectJson({});
    expect(status).toBe(200);
    expect(json).toMatchObject({ httpStatus: 400, code: "invalid_request" });
  });

  it("answers malformed JSON with a clean Connect error", async () => {
    const { status, json } = await connectJson("{not json");
    expect(status).toBe(400);
    expect(json.code).toBe("invalid_argument");
  });

  it("counts decisions by code on /metrics", async () => {
    const count = async (code: string) => {
      const text = await (await fetch(`${t.httpUrl}/metrics`)).text();
      return Number(new RegExp(`^portcullis_decisions_total\\{code="${code}"\\} (\\d+)$`, "m").exec(text)?.[1]);
    };
    const before = await count("scope_denied");
    await connectJson({ method: "DELETE", path: "/api/payouts/1", host: "api.example.com", headers: [{ name: "authorization", value: `Bearer ${readOnlyToken}` }] });
    expect(await count("scope_denied")).toBe(before + 1);
    const text = await (await fetch(`${t.httpUrl}/metrics`)).text();
    expect(text).toMatch(/^portcullis_policy_info\{policy_set="example-payments",revision="[0-9a-f]{12}"\} 1$/m);
    expect(text).toMatch(/^portcullis_decision_duration_seconds_count \d+$/m);
    // Codes that never happened still have a series, so rate() and alerts see them from the start.
    expect(text).toMatch(/^portcullis_decisions_total\{code="mtls_required"\} 0$/m);
  });

  it("serves health probes", async () => {
    expect((await fetch(`${t.httpUrl}/healthz`)).status).toBe(200);
    expect((await fetch(`${t.httpUrl}/readyz`)).status).toBe(200);
  });
});

describe("Authorize on every wire", () => {
  it("answers the same allow, identity and upstream headers over Connect JSON and binary, gRPC-Web and gRPC", async () => {
    const request = create(AuthorizeRequestSchema, {
      method: "GET",
      path: "/api/payouts/po_1",
      host: "api.example.com",
      headers: [{ name: "authorization", value: `Bearer ${operatorToken}` }, { name: "x-request-id", value: "wire-1" }],
    });
    const viaConnect = (useBinaryFormat: boolean) =>
      createClient(AuthorizationService, createConnectTransport({ baseUrl: t.httpUrl, httpVersion: "1.1", useBinaryFormat })).authorize(request);
    const viaGrpcWeb = createClient(AuthorizationService, createGrpcWebTransport({ baseUrl: t.httpUrl, httpVersion: "1.1", useBinaryFormat: true })).authorize(request);
    const grpcClient = grpcAuthorizeClient(t.grpcAddress);
    try {
      const [json, binary, grpcWeb, grpcAnswer] = await Promise.all([viaConnect(false), viaConnect(true), viaGrpcWeb, grpcClient.authorize(request)]);
      expect(json.identity?.tenant).toBe("acme");
      expect(json.identity?.scopes).toContain("payouts:read");
      expect(json.upstreamHeaders).toContainEqual(expect.objectContaining({ name: "x-portcullis-role" }));
      expect(json.upstreamHeaders).not.toContainEqual(expect.objectContaining({ name: "x-portcullis-scopes" }));
      // Binary wires carry the token's part as bytes encoded once per token; a peer must not see a difference.
      for (const answer of [binary, grpcWeb, grpcAnswer]) {
        expect(equals(AuthorizeResponseSchema, withoutUnknown(answer), withoutUnknown(json))).toBe(true);
      }
    } finally {
      grpcClient.close();
    }
  });
});

function withoutUnknown(message: AuthorizeResponse): AuthorizeResponse {
  return { ...message, $unknown: undefined };
}

describe("Authorize over gRPC", () => {
  it("answers the same decisions as Connect", async () => {
    const client = grpcAuthorizeClient(t.grpcAddress);
    try {
      const allow = await client.authorize(
        create(AuthorizeRequestSchema, { method: "GET", path: "/api/ledger", host: "api.example.com", headers: [{ name: "authorization", value: `Bearer ${operatorToken}` }] }),
      );
      expect(allow).toMatchObject({ allowed: true, httpStatus: 200, code: "ok" });
      const deny = await client.authorize(create(AuthorizeRequestSchema, { method: "DELETE", path: "/api/ledger/1", headers: [{ name: "authorization", value: `Bearer ${readOnlyToken}` }] }));
      expect(deny).toMatchObject({ allowed: false, httpStatus: 403, code: "scope_denied" });
      const missing = await client.authorize(create(AuthorizeRequestSchema, { method: "GET", path: "/api/ledger" }));
      expect(missing).toMatchObject({ allowed: false, httpStatus: 401, code: "unauthenticated", reason: "missing" });
    } finally {
      client.close();
    }
  });

  it("reports SERVING on grpc.health.v1.Health/Check", async () => {
    const client = new grpc.Client(t.grpcAddress, grpc.credentials.createInsecure());
    // HealthCheckRequest{service: ""} is the empty message; the response's field 1 is the status enum, 1 = SERVING.
    const response = await new Promise<Buffer>((resolve, reject) =>
      client.makeUnaryRequest("/grpc.health.v1.Health/Check", (b: Buffer) => b, (b: Buffer) => b, Buffer.alloc(0), (error, value) => (error ? reject(error) : resolve(value!))),
    );
    client.close();
    expect([...response]).toEqual([0x08, 0x01]);
  });

  it("answers undecodable bytes with a clean gRPC error", async () => {
    const client = new grpc.Client(t.grpcAddress, grpc.credentials.createInsecure());
    const error = await new Promise<grpc.ServiceError>((resolve) =>
      client.makeUnaryRequest("/portcullis.v1.AuthorizationService/Authorize", (b: Buffer) => b, (b: Buffer) => b, Buffer.from([0xff, 0xff, 0xff]), (e) => resolve(e!)),
    );
    client.close();
    expect(error.code).not.toBe(grpc.status.OK);
    expect(error.code).toBeDefined();
  });
});
