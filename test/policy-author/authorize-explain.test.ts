/**
 * The Authorize API's `explain` flag: the explanation comes back only for
 * callers whose own token may manage tokens, on Connect and on the gRPC port.
 */
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuthorizeRequestSchema, AuthorizeResponseSchema, type AuthorizeResponse } from "../../src/gen/portcullis/v1/authorization_pb.js";
import { createToken } from "../../src/service/tokens.js";
import { unaryMethod } from "../support/grpc-client.js";
import { startTestServer, type TestServer } from "../support/server.js";

let t: TestServer;
let admin: string;
let reviewer: string;
let operator: string;

beforeAll(async () => {
  t = await startTestServer();
  const base = { tenant: "acme", workspace: "main", environment: "production", type: "service" as const, actor: "test" };
  const make = async (name: string, role: string, keyLevel: string | null = null) => (await createToken(t.server.store, t.server.policy(), { ...base, name, role, keyLevel }, Date.now())).token;
  admin = await make("admin", "tenant_admin", "admin");
  reviewer = await make("reviewer", "tenant_reviewer");
  operator = await make("operator", "tenant_operator");
});

afterAll(async () => {
  await t.stop();
});

const request = () => ({ method: "POST", path: "/api/settings/api-tokens/rate-limits", host: "api.example.com", headers: [{ name: "authorization", value: `Bearer ${operator}` }], explain: true });

async function connect(callerToken: string | null, explain = true): Promise<any> {
  const response = await fetch(`${t.httpUrl}/portcullis.v1.AuthorizationService/Authorize`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(callerToken === null ? {} : { authorization: `Bearer ${callerToken}` }) },
    body: JSON.stringify({ ...request(), explain }),
  });
  return response.json();
}

describe("Authorize with explain", () => {
  it("answers the explanation to a caller that may manage tokens (Connect)", async () => {
    const answer = await connect(admin);
    expect(answer.code).toBe("scope_denied");
    expect(answer.explanation.stages.map((s: { stage: string; verdict: string }) => `${s.stage}:${s.verdict}`)).toEqual([
      "request:pass",
      "authentication:pass",
      "tenant:pass",
      "ip_allowlist:pass",
      "mtls:pass",
      "conditional_access:pass",
      "scope:deny",
      "workspace:skipped",
      "quota:skipped",
    ]);
    expect(answer.explanation.stages[6]).toMatchObject({ code: "scope_denied" });
  });

  it.each([
    { name: "a caller without a token", caller: null, explain: true },
    { name: "a caller whose token may not manage tokens", caller: "reviewer", explain: true },
    { name: "a request that did not ask", caller: "admin", explain: false },
  ])("gives no explanation to $name", async ({ caller, explain }) => {
    const answer = await connect(caller === null ? null : caller === "admin" ? admin : reviewer, explain);
    expect(answer.code).toBe("scope_denied");
    expect(answer.explanation).toBeUndefined();
  });

  it("answers it on the gRPC port too, and only to a permitted caller", async () => {
    const method = unaryMethod("/portcullis.v1.AuthorizationService/Authorize", AuthorizeRequestSchema, AuthorizeResponseSchema);
    const client = new grpc.Client(t.grpcAddress, grpc.credentials.createInsecure());
    const call = (callerToken: string) =>
      new Promise<AuthorizeResponse>((resolve, reject) => {
        const metadata = new grpc.Metadata();
        metadata.set("authorization", `Bearer ${callerToken}`);
        client.makeUnaryRequest(method.path, method.requestSerialize, method.responseDeserialize, create(AuthorizeRequestSchema, request()), metadata, (error, response) => (error ? reject(error) : resolve(response!)));
      });
    try {
      const permitted = await call(admin);
      expect(permitted.policyRevision).toBe(t.server.policy().revision);
      expect(permitted.explanation?.stages.find((s) => s.verdict === "deny")?.code).toBe("scope_denied");
      expect((await call(reviewer)).explanation).toBeUndefined();
    } finally {
      client.close();
    }
  });
});
