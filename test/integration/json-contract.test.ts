/**
 * The answer's contract fields (`allowed`, `httpStatus`, `code`) are present in
 * every JSON rendering of an `AuthorizeResponse`, deny included: proto3 JSON
 * leaves out a field at its default (`false`, `0`, `""`) unless the field has
 * explicit presence, and `jq .allowed` printing `null` on a deny is a trap.
 */
import { create, fromBinary, toBinary, toJson } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuthorizeRequestSchema, AuthorizeResponseSchema } from "../../src/gen/portcullis/v1/authorization_pb.js";
import { createToken } from "../../src/service/tokens.js";
import { grpcAuthorizeClient, startTestServer, type TestServer } from "../support/server.js";

let t: TestServer;
let readOnlyToken: string;
let operatorToken: string;

beforeAll(async () => {
  t = await startTestServer();
  const base = { tenant: "acme", workspace: "main", environment: "production", type: "service" as const, actor: "test", role: "tenant_operator" };
  readOnlyToken = (await createToken(t.server.store, t.server.policy(), { ...base, name: "reader", keyLevel: "read_only" }, Date.now())).token;
  operatorToken = (await createToken(t.server.store, t.server.policy(), { ...base, name: "operator" }, Date.now())).token;
});
afterAll(async () => {
  await t.stop();
});

const request = (token: string, method = "POST") => ({
  method,
  path: "/api/payouts",
  host: "api.example.com",
  headers: [{ name: "authorization", value: `Bearer ${token}` }],
});

const cases = [
  { name: "a deny", token: () => readOnlyToken, expected: { allowed: false, httpStatus: 403, code: "scope_denied" } },
  { name: "an allow", token: () => operatorToken, expected: { allowed: true, httpStatus: 200, code: "ok" } },
];

describe("contract fields in JSON answers", () => {
  it.each(cases)("Connect JSON carries allowed, httpStatus and code on $name", async ({ token, expected }) => {
    const response = await fetch(`${t.httpUrl}/portcullis.v1.AuthorizationService/Authorize`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(request(token())),
    });
    const json = (await response.json()) as Record<string, unknown>;
    expect({ allowed: json.allowed, httpStatus: json.httpStatus, code: json.code }).toEqual(expected);
  });

  it.each(cases)("gRPC-Web JSON carries allowed, httpStatus and code on $name", async ({ token, expected }) => {
    const payload = Buffer.from(JSON.stringify(request(token())));
    const prefix = Buffer.alloc(5);
    prefix.writeUInt32BE(payload.length, 1);
    const response = await fetch(`${t.httpUrl}/portcullis.v1.AuthorizationService/Authorize`, {
      method: "POST",
      headers: { "content-type": "application/grpc-web+json" },
      body: Buffer.concat([prefix, payload]),
    });
    const body = Buffer.from(await response.arrayBuffer());
    expect(body[0]).toBe(0);
    const json = JSON.parse(body.subarray(5, 5 + body.readUInt32BE(1)).toString("utf8")) as Record<string, unknown>;
    expect({ allowed: json.allowed, httpStatus: json.httpStatus, code: json.code }).toEqual(expected);
  });

  it.each(cases)("protobuf JSON of the gRPC answer (what grpcurl prints) carries them on $name", async ({ token, expected }) => {
    const client = grpcAuthorizeClient(t.grpcAddress);
    try {
      const answer = await client.authorize(create(AuthorizeRequestSchema, request(token())));
      // Through bytes again, as a client that knows only the proto would see it.
      const json = toJson(AuthorizeResponseSchema, fromBinary(AuthorizeResponseSchema, toBinary(AuthorizeResponseSchema, answer))) as Record<string, unknown>;
      expect({ allowed: json.allowed, httpStatus: json.httpStatus, code: json.code }).toEqual(expected);
    } finally {
      client.close();
    }
  });
});
