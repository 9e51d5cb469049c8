/**
 * The explorer's `/policy/explain` endpoint against bodies a browser would
 * never send: each gets a 4xx naming the problem, and the server keeps
 * answering decisions.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EXAMPLE_POLICY_DIR } from "../support/fixtures.js";
import { startTestServer, type TestServer } from "../support/server.js";

let t: TestServer;

beforeAll(async () => {
  t = await startTestServer(EXAMPLE_POLICY_DIR, { policyExplorer: true });
});

afterAll(async () => {
  await t.stop();
});

const explain = async (body: string) => {
  const response = await fetch(`${t.httpUrl}/policy/explain`, { method: "POST", headers: { "content-type": "application/json" }, body });
  return { status: response.status, json: (await response.json()) as { error?: string; decision?: { code: string } } };
};

describe("/policy/explain", () => {
  it.each([
    { name: "not JSON", body: "{", status: 400, error: "body is not JSON" },
    { name: "no request", body: "{}", status: 400, error: "body needs a `request` object" },
    { name: "a method that is a number", body: JSON.stringify({ request: { method: 5, path: "/" } }), status: 400, error: "/request/method: must be string" },
    { name: "a source ip that is a number", body: JSON.stringify({ request: { method: "GET", path: "/", sourceIp: 7 } }), status: 400, error: "/request/sourceIp: must be string" },
    { name: "headers that are a string", body: JSON.stringify({ request: { method: "GET", path: "/", headers: "x" } }), status: 400, error: "/request/headers: must be object" },
    { name: "a token with a role that is a list", body: JSON.stringify({ request: { method: "GET", path: "/" }, token: { role: ["x"] } }), status: 400, error: "/token/role: must be string,null" },
    { name: "a time that is a number", body: JSON.stringify({ request: { method: "GET", path: "/" }, at: 5 }), status: 400, error: "invalid time `5`: expected ISO 8601" },
    { name: "an unknown role", body: JSON.stringify({ request: { method: "GET", path: "/" }, token: { role: "tenant_operater" } }), status: 400, error: "/token/role: unknown role `tenant_operater` (did you mean `tenant_operator`?)" },
    { name: "an unknown workspace restriction mode", body: JSON.stringify({ request: { method: "GET", path: "/" }, workspaceRestricted: "reads" }), status: 400, error: "`workspaceRestricted` must be true, false, `writes` or `all`" },
  ])("refuses $name with a 4xx", async ({ body, status, error }) => {
    const answer = await explain(body);
    expect(answer).toEqual({ status, json: { error } });
  });

  it.each([
    [true, "GET", "ok"],
    ["writes", "POST", "workspace_restricted"],
    ["all", "GET", "workspace_restricted"],
  ])("judges a workspace restricted as %s: %s → %s", async (workspaceRestricted, method, code) => {
    const body = JSON.stringify({ request: { method, path: "/api/payouts" }, token: { role: "tenant_operator" }, at: "2026-03-03T10:00:00Z", workspaceRestricted });
    const answer = await explain(body);
    expect([answer.status, answer.json.decision?.code]).toEqual([200, code]);
  });

  it("still explains after all of them", async () => {
    const answer = await explain(JSON.stringify({ request: { method: "GET", path: "/api/payouts" }, token: { role: "tenant_operator" }, at: "2026-03-03T10:00:00Z" }));
    expect([answer.status, answer.json.decision?.code]).toEqual([200, "ok"]);
  });
});
