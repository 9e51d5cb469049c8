/** Quotas through the real server (Connect JSON over HTTP/1.1): rate-limit headers on allow, then 429. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TokenControls } from "../../src/engine/types.js";
import { createToken } from "../../src/service/tokens.js";
import { startTestServer, type TestServer } from "../support/server.js";

let t: TestServer;

beforeAll(async () => {
  t = await startTestServer();
});

afterAll(async () => {
  await t.stop();
});

async function issue(fields: { workspace?: string; keyLevel?: string; controls?: TokenControls } = {}): Promise<string> {
  return (await createToken(
    t.server.store,
    t.server.policy(),
    { tenant: "acme", workspace: "main", environment: "production", type: "service", name: "quota-it", role: "tenant_operator", actor: "test", ...fields },
    Date.now(),
  )).token;
}

async function authorize(token: string, fields: Record<string, unknown> = {}): Promise<any> {
  const response = await fetch(`${t.httpUrl}/portcullis.v1.AuthorizationService/Authorize`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ method: "GET", path: "/api/payouts", host: "api.example.com", sourceIp: "203.0.113.10", headers: [{ name: "authorization", value: `Bearer ${token}` }], ...fields }),
  });
  expect(response.status).toBe(200);
  return response.json();
}

const headers = (json: any): Record<string, string> => Object.fromEntries((json.responseHeaders ?? []).map((h: any) => [h.name, h.value]));

describe("quota through the real server", () => {
  // a per-day limit, so that a minute boundary during the test cannot reset it
  it("allows the limit with rate-limit headers, then 429 quota_exceeded with Retry-After; denied requests are not counted", async () => {
    const token = await issue({ controls: { quota: { limitPerDay: 2 } } });
    // a write this token may not make is denied by scope and does not use the quota
    expect((await authorize(token, { method: "DELETE", path: "/api/settings/api-tokens/risky" })).code).toBe("scope_denied");

    const first = await authorize(token);
    expect(first).toMatchObject({ allowed: true, httpStatus: 200, code: "ok" });
    expect(headers(first)).toMatchObject({ "ratelimit-limit": "2", "ratelimit-remaining": "1", "ratelimit-policy": "2;w=86400" });
    expect(Number(headers(first)["ratelimit-reset"])).toBeGreaterThan(0);
    expect(headers(await authorize(token))["ratelimit-remaining"]).toBe("0");

    const spent = await authorize(token);
    expect(spent.allowed ?? false).toBe(false);
    expect(spent).toMatchObject({ httpStatus: 429, code: "quota_exceeded", reason: "per_day", auditEvent: "auth.api_token_quota_exceeded" });
    expect(spent.details).toMatchObject({ quota: "per_day", limit: "2" });
    const h = headers(spent);
    expect(h["content-type"]).toBe("application/json");
    expect(Number(h["retry-after"])).toBeGreaterThanOrEqual(1);
    expect(Number(h["retry-after"])).toBeLessThanOrEqual(86_400);
    expect(h["retry-after"]).toBe(spent.details.retry_after_seconds);
    expect(h).toMatchObject({ "ratelimit-limit": "2", "ratelimit-remaining": "0", "ratelimit-reset": h["retry-after"], "ratelimit-policy": "2;w=86400" });
    expect(spent.upstreamHeaders ?? []).toEqual([]);
    expect(JSON.parse(spent.body)).toMatchObject({ code: "quota_exceeded", message: expect.stringContaining("per day is spent"), quota: { window: "per_day", limit: 2 } });
  });

  it("the bundled workspace default applies to the example workspace only", async () => {
    expect(headers(await authorize(await issue({ workspace: "partners" })))).toMatchObject({ "ratelimit-limit": "60", "ratelimit-remaining": "59", "ratelimit-policy": "60;w=60, 10000;w=86400" });
    expect(headers(await authorize(await issue()))).toEqual({});
  });

  it("tokens update replaces the quota: the next decision uses the new limit", async () => {
    const token = await issue({ controls: { quota: { limitPerDay: 1 } } });
    expect((await authorize(token)).code).toBe("ok");
    expect((await authorize(token)).code).toBe("quota_exceeded");
    const id = (await t.server.store.list()).find((r) => r.controls.quota?.limitPerDay === 1)!.id;
    await t.server.store.updateControls(id, { quota: { limitPerDay: 3 } }, "test");
    const json = await authorize(token);
    expect(json.code).toBe("ok");
    expect(headers(json)).toMatchObject({ "ratelimit-limit": "3", "ratelimit-remaining": "1" });
  });
});
