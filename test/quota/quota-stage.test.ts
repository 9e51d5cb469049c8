/**
 * The quota stage end to end in one process: which quota applies (token >
 * service > environment > role > workspace), the authorizer charging only what
 * decide() allowed, the 429 decision and its headers, and policy-load errors.
 */
import { afterAll, describe, expect, it } from "vitest";
import { controlsFromFlags } from "../../src/cli/admin.js";
import { effectiveControls } from "../../src/engine/effective-controls.js";
import { applyQuotaCharge } from "../../src/engine/quota.js";
import type { Decision, TokenRecord } from "../../src/engine/types.js";
import type { ControlEntrySpec, CompiledPolicySet } from "../../src/policy/types.js";
import { createMemoryQuotaCounter } from "../../src/quota/memory-quota-counter.js";
import type { ChargeResult, QuotaCounter } from "../../src/quota/quota-counter.js";
import { createSyncAuthorizer } from "../support/sync-authorizer.js";
import { loadWith, policyWith, removePolicyFolders } from "../controls/support.js";
import { loadExamplePolicy, makeToken, NOW_MS, request } from "../support/fixtures.js";
import { judge } from "../support/judge.js";

afterAll(removePolicyFolders);

/** A counter that records every charge and forwards it to a real one. */
function spyCounter(): QuotaCounter & { readonly calls: string[] } {
  const inner = createMemoryQuotaCounter();
  const calls: string[] = [];
  return { calls, charge: (key, limits, nowMs) => (calls.push(key), inner.charge(key, limits, nowMs)) };
}

/** An authorizer over an in-memory token table, with a pinned, settable clock. */
function authorizerFor(
  policy: CompiledPolicySet,
  records: readonly { token: string; record: TokenRecord }[],
  state: { suspended?: boolean; restricted?: boolean } = {},
  counter = spyCounter(),
) {
  const clock = { nowMs: NOW_MS };
  const byToken = new Map(records.map((r) => [r.token, r.record]));
  const authorize = createSyncAuthorizer({
    policy: () => policy,
    tokens: { find: (token) => byToken.get(token) },
    tenantState: { tenantSuspended: () => state.suspended ?? false, workspaceRestricted: () => state.restricted ?? false },
    now: () => clock.nowMs,
    onError: (error) => {
      throw error;
    },
    quota: counter,
  });
  return { authorize, counter, clock };
}

const headersOf = (decision: Decision) => Object.fromEntries(decision.responseHeaders);

describe("quota through the authorizer (pinned clock)", () => {
  const policy = loadExamplePolicy();

  it("allows exactly N per minute with rate-limit headers, then answers 429 with Retry-After", () => {
    const robot = makeToken({ controls: { quota: { limitPerMinute: 3 } } });
    const { authorize, clock } = authorizerFor(policy, [robot]);
    clock.nowMs = NOW_MS + 48_000;
    const allowed = [1, 2, 3].map(() => authorize(request({ token: robot.token })));
    expect(allowed.map((r) => r.decision.code)).toEqual(["ok", "ok", "ok"]);
    expect(allowed.map((r) => headersOf(r.decision)["ratelimit-remaining"])).toEqual(["2", "1", "0"]);
    expect(headersOf(allowed[0]!.decision)).toEqual({ "ratelimit-limit": "3", "ratelimit-remaining": "2", "ratelimit-reset": "12", "ratelimit-policy": "3;w=60" });
    // an allow's client headers reach the rendered response (Envoy's response_headers_to_add, the HTTP modes)
    expect(allowed[0]!.response.headers).toEqual(allowed[0]!.decision.responseHeaders);

    const spent = authorize(request({ token: robot.token }));
    expect(spent.decision).toMatchObject({
      allowed: false,
      code: "quota_exceeded",
      httpStatus: 429,
      reason: "per_minute",
      ruleId: `token:${robot.record.id}`,
      auditEvent: "auth.api_token_quota_exceeded",
      details: { quota: "per_minute", limit: "3", retry_after_seconds: "12" },
      message: "quota of 3 requests per minute is spent; retry in 12 seconds",
      upstreamHeaders: [],
      quota: null,
    });
    expect(spent.decision.identity?.tokenId).toBe(robot.record.id);
    expect(headersOf(spent.decision)).toEqual({ "retry-after": "12", "ratelimit-limit": "3", "ratelimit-remaining": "0", "ratelimit-reset": "12", "ratelimit-policy": "3;w=60" });
    expect(spent.response.httpStatus).toBe(429);
    expect(spent.response.headers[0]).toEqual(["content-type", "application/json"]);
    expect(JSON.parse(spent.response.body)).toMatchObject({
      message: "quota of 3 requests per minute is spent; retry in 12 seconds",
      code: "quota_exceeded",
      quota: { window: "per_minute", limit: 3, retry_after_seconds: 12 },
      errors: { reason: "per_minute", quota: "per_minute", limit: "3", retry_after_seconds: "12" },
    });

    clock.nowMs = NOW_MS + 60_000;
    expect(authorize(request({ token: robot.token })).decision.code).toBe("ok");
  });

  it("a token without a quota is neither counted nor given headers", () => {
    const plain = makeToken();
    const { authorize, counter } = authorizerFor(policy, [plain]);
    const result = authorize(request({ token: plain.token }));
    expect(result.decision).toMatchObject({ code: "ok", responseHeaders: [], quota: null });
    expect(counter.calls).toEqual([]);
  });

  it("the bundled example workspace default is the developer portal's: 60/min and 10000/day", () => {
    const partner = makeToken({ workspace: "partners" });
    const { authorize } = authorizerFor(policy, [partner]);
    const first = authorize(request({ token: partner.token }));
    expect(headersOf(first.decision)).toMatchObject({ "ratelimit-limit": "60", "ratelimit-remaining": "59", "ratelimit-policy": "60;w=60, 10000;w=86400" });
    for (let i = 0; i < 59; i++) authorize(request({ token: partner.token }));
    expect(authorize(request({ token: partner.token })).decision).toMatchObject({ code: "quota_exceeded", ruleId: "partners-default-quota", details: { limit: "60" } });
  });

  // Each row makes an earlier stage deny a token whose quota is 1 per minute:
  // the counter must not even be asked, and the one request still fits afterwards.
  const earlier: { name: string; fields: Partial<TokenRecord>; input: { method?: string }; state?: { suspended?: boolean; restricted?: boolean }; code: string }[] = [
    { name: "unauthenticated (revoked)", fields: { revokedAtMs: NOW_MS - 1 }, input: {}, code: "unauthenticated" },
    { name: "tenant_suspended", fields: {}, input: {}, state: { suspended: true }, code: "tenant_suspended" },
    { name: "ip_allowlist_blocked", fields: { controls: { ipAllowlist: ["198.51.100.0/24"] } }, input: {}, code: "ip_allowlist_blocked" },
    { name: "mtls_required", fields: { controls: { mtls: {} } }, input: {}, code: "mtls_required" },
    { name: "conditional_access_blocked (read-only)", fields: { controls: { conditionalAccess: { readOnly: true } } }, input: { method: "POST" }, code: "conditional_access_blocked" },
    { name: "scope_denied (read-only key writes)", fields: { keyLevel: "read_only" }, input: { method: "POST" }, code: "scope_denied" },
    { name: "workspace_restricted", fields: {}, input: { method: "POST" }, state: { restricted: true }, code: "workspace_restricted" },
  ];

  it.each(earlier)("a request denied earlier, $name, is not counted", ({ fields, input, state, code }) => {
    const controls = { ...(fields.controls ?? {}), quota: { limitPerMinute: 1 } };
    const token = makeToken({ ...fields, controls });
    const { authorize, counter } = authorizerFor(policy, [token], state);
    for (let i = 0; i < 3; i++) expect(authorize(request({ ...input, token: token.token })).decision.code).toBe(code);
    expect(counter.calls).toEqual([]);
    // the same counter, same token id, every check passing now: the one request the quota allows is still there
    const fresh = makeToken({ id: token.record.id, controls: { quota: { limitPerMinute: 1 } } });
    const { authorize: again } = authorizerFor(policy, [fresh], {}, counter);
    expect(again(request({ token: fresh.token })).decision.code).toBe("ok");
    expect(again(request({ token: fresh.token })).decision.code).toBe("quota_exceeded");
    expect(counter.calls).toEqual([token.record.id, token.record.id]);
  });
});

describe("applyQuotaCharge (pure)", () => {
  const policy = loadExamplePolicy();
  const token = makeToken({ controls: { quota: { limitPerMinute: 5, limitPerDay: 100 } } });
  const allow = judge(request({ token: token.token }), policy, new Map([[token.token, token.record]]), NOW_MS);
  const charge = (fields: Partial<ChargeResult>): ChargeResult => ({ allowed: true, window: "per_minute", limit: 5, remaining: 4, resetSeconds: 60, retryAfterSeconds: 0, ...fields });

  it("the engine names the quota on its allow, and only there", () => {
    expect(allow.quota).toMatchObject({ ruleId: `token:${token.record.id}`, limitPerMinute: 5, limitPerDay: 100, policyHeader: "5;w=60, 100;w=86400" });
    const denied = judge(request({ method: "POST", token: token.token }), policy, new Map([[token.token, { ...token.record, keyLevel: "read_only" }]]), NOW_MS);
    expect(denied.quota).toBeNull();
  });

  it("a denial passes through whatever the charge says", () => {
    const denied = judge(request({ token: "sk_live_nope" }), policy, new Map(), NOW_MS);
    expect(applyQuotaCharge(denied, charge({ allowed: false }))).toBe(denied);
  });

  it.each([
    ["per_day", 100, 86_000, "quota of 100 requests per day is spent; retry in 86000 seconds"],
    ["per_minute", 5, 1, "quota of 5 requests per minute is spent; retry in 1 second"],
  ] as const)("a refused %s charge becomes quota_exceeded", (window, limit, seconds, message) => {
    const decision = applyQuotaCharge(allow, charge({ allowed: false, window, limit, remaining: 0, resetSeconds: seconds, retryAfterSeconds: seconds }));
    expect(decision).toMatchObject({ code: "quota_exceeded", httpStatus: 429, reason: window, message, details: { quota: window, limit: String(limit), retry_after_seconds: String(seconds) } });
    expect(decision.responseHeaders).toEqual([
      ["retry-after", String(seconds)],
      ["ratelimit-limit", String(limit)],
      ["ratelimit-remaining", "0"],
      ["ratelimit-reset", String(seconds)],
      ["ratelimit-policy", "5;w=60, 100;w=86400"],
    ]);
    expect(decision.warnings).toBe(allow.warnings);
  });
});

describe("which quota applies to a token", () => {
  const CONTROLS: ControlEntrySpec[] = [
    { id: "ws-main", selector: { workspace: "acme/main" }, quota: { limitPerMinute: 100 } },
    { id: "role-brand", selector: { role: "tenant_brand" }, quota: { limitPerMinute: 50 } },
    { id: "env-sandbox", selector: { environment: "sandbox" }, quota: { limitPerDay: 1000 } },
    { id: "svc-robot", selector: { service: "robot" }, quota: { limitPerMinute: 5 }, ipAllowlist: ["203.0.113.0/24"] },
  ];
  const policy = policyWith({ "controls.json": { controls: CONTROLS } });

  it.each<[string, Partial<TokenRecord>, string | null]>([
    ["workspace default", { role: "tenant_operator" }, "ws-main"],
    ["role beats workspace", { role: "tenant_brand" }, "role-brand"],
    ["environment beats role", { role: "tenant_brand", environment: "sandbox" }, "env-sandbox"],
    ["service beats environment", { role: "tenant_brand", environment: "sandbox", service: "robot" }, "svc-robot"],
    ["token beats every policy source", { id: "tok_own", service: "robot", controls: { quota: { limitPerDay: 7 } } }, "token:tok_own"],
    ["a token's other controls leave the policy's quota in force", { id: "tok_ip", service: "robot", controls: { ipAllowlist: ["10.0.0.0/8"] } }, "svc-robot"],
    ["nothing applies to another workspace", { workspace: "treasury" }, null],
  ])("%s", (_name, fields, ruleId) => {
    expect(effectiveControls(makeToken(fields).record, policy).quota?.ruleId ?? null).toBe(ruleId);
  });

  it("the winner replaces the others: a token's per-day quota drops the workspace's per-minute one", () => {
    const quota = effectiveControls(makeToken({ controls: { quota: { limitPerDay: 7 } } }).record, policy).quota;
    expect(quota).toMatchObject({ limitPerMinute: null, limitPerDay: 7, policyHeader: "7;w=86400" });
  });
});

describe("policy files with quotas", () => {
  it.each([
    ["no limit", { id: "q", selector: { workspace: "main" }, quota: {} }, "/controls/0/quota", /quota must set `limitPerMinute`, `limitPerDay` or both/],
    ["zero", { id: "q", selector: { workspace: "main" }, quota: { limitPerMinute: 0 } }, "/controls/0/quota/limitPerMinute", /must be >= 1/],
    ["a fraction", { id: "q", selector: { workspace: "main" }, quota: { limitPerDay: 2.5 } }, "/controls/0/quota/limitPerDay", /expected an integer/],
    ["a misspelt field", { id: "q", selector: { workspace: "main" }, quota: { perMinute: 60 } }, "/controls/0/quota/perMinute", /unknown property/],
  ])("refuses a quota with %s", (_name, entry, pointer, message) => {
    const result = loadWith({ "controls.json": { controls: [entry] } });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.errors).toContainEqual(expect.objectContaining({ pointer, message: expect.stringMatching(message) }));
  });

  it("refuses two entries of one level that could both set a token's quota", () => {
    const result = loadWith({
      "controls.json": { controls: [{ id: "a", selector: { workspace: "acme/main" }, quota: { limitPerMinute: 1 } }, { id: "b", selector: { workspace: "main" }, quota: { limitPerDay: 1 } }] },
    });
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.errors).toContainEqual(expect.objectContaining({ pointer: "/controls/1/quota", message: expect.stringMatching(/both set `quota` at the workspace level/) }));
  });

  it("an entry with only a quota sets a control", () => {
    expect(loadWith({ "controls.json": { controls: [{ id: "q", selector: { workspace: "main" }, quota: { limitPerDay: 10 } }] } }).ok).toBe(true);
  });
});

describe("tokens create/update --quota-per-minute/--quota-per-day", () => {
  it.each([
    [{ quotaPerMinute: "60" }, { quota: { limitPerMinute: 60 } }],
    [{ quotaPerDay: "10000" }, { quota: { limitPerDay: 10000 } }],
    [{ quotaPerMinute: "60", quotaPerDay: "10000", ipAllow: ["10.0.0.0/8"] }, { ipAllowlist: ["10.0.0.0/8"], quota: { limitPerMinute: 60, limitPerDay: 10000 } }],
  ])("%j", (flags, controls) => {
    expect(controlsFromFlags(flags)).toEqual(controls);
  });

  it.each([["0"], ["-1"], ["1.5"], ["sixty"]])("refuses `%s`", (value) => {
    expect(() => controlsFromFlags({ quotaPerMinute: value })).toThrow(/invalid --quota-per-minute/);
  });

  it("refuses a quota set both by --controls and a flag", () => {
    expect(() => controlsFromFlags({ controls: '{"quota":{"limitPerDay":5}}', quotaPerDay: "6" })).toThrow(/`quota` is set both/);
  });
});
