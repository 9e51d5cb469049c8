import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { formatPolicyErrors, loadPolicySet, type CompiledPolicySet } from "../../src/policy/index.js";

const POLICIES = path.join(import.meta.dirname, "../../policies");

function loadBundled(): CompiledPolicySet {
  const result = loadPolicySet(POLICIES);
  if (!result.ok) throw new Error(formatPolicyErrors(result.errors));
  return result.policy;
}

const policy = loadBundled();
const match = (method: string, p: string) =>
  policy.routes.match(method, p.split("/").filter(Boolean), !["GET", "HEAD", "OPTIONS"].includes(method));

describe("the bundled policy set", () => {
  it("loads every file, in name order, each pointing at the published schema", () => {
    const result = loadPolicySet(POLICIES);
    expect(result.ok && result.files.map((f) => path.basename(f))).toEqual(["controls.json", "policy-set.json", "roles.json", "routes.json", "scopes.json"]);
    for (const file of result.ok ? result.files : []) {
      expect(JSON.parse(fs.readFileSync(file, "utf8")).$schema).toBe("./policy.schema.json");
    }
  });

  it("compiles its settings and environments", () => {
    expect(policy.name).toBe("example-payments");
    expect(policy.revision).toMatch(/^[0-9a-f]{64}$/);
    expect(policy.errorDialect).toBe("canonical");
    expect(policy.stripCredential).toBe(true);
    expect(policy.defaultEnvironment).toBe("production");
    expect(policy.tokenPrefixes).toEqual(["sk_sandbox_", "sk_live_", "sk_test_"]);
    expect(policy.environmentByPrefix).toEqual(new Map([["sk_live_", "production"], ["sk_sandbox_", "sandbox"], ["sk_test_", "test"]]));
    expect(policy.environmentByHost).toEqual(
      new Map([["api.example.com", "production"], ["sandbox.api.example.com", "sandbox"], ["localhost", "test"], ["127.0.0.1", "test"]]),
    );
    expect(policy.scopes.size).toBe(50);
  });

  it("has the same revision on every load and is frozen", () => {
    expect(loadBundled().revision).toBe(policy.revision);
    expect(Object.isFrozen(policy)).toBe(true);
  });

  it.each([
    { method: "GET", path: "/api/payouts", scope: "payouts:read" },
    { method: "POST", path: "/api/payouts", scope: "payouts:write" },
    { method: "GET", path: "/api/payouts/po_7", scope: "payouts:read" },
    { method: "GET", path: "/api/overview", scope: "workspace:read" },
    { method: "PUT", path: "/api/admin/cash-entries/9", scope: "cash_entries:write" },
    { method: "GET", path: "/api/settlement/2026-01", scope: "settlements:read" },
    { method: "POST", path: "/api/settings/api-tokens/sandbox-environments", scope: "sandbox:create" },
    { method: "PATCH", path: "/api/settings/api-tokens/sandbox-environments/sbx_1", scope: "sandbox:manage" },
    { method: "POST", path: "/api/settings/api-tokens/event-subscriptions/es_1/test-delivery", scope: "api_tokens:write" },
    { method: "POST", path: "/api/settings/api-tokens/abc/rotate", scope: "api_tokens:write" },
    { method: "GET", path: "/api/settings/api-tokens/environment-keys", scope: "environments:read" },
    { method: "POST", path: "/api/settings/api-tokens/environment-keys/ek_1/rotate", scope: "environments:write" },
    { method: "GET", path: "/api/settings/api-tokens/dashboard", scope: "api_tokens:read" },
    { method: "GET", path: "/api/settings/api-tokens/tok_1", scope: "api_tokens:read" },
    { method: "GET", path: "/api/settings/api-tokens/tok_1/analytics", scope: "api_tokens:read" },
    { method: "PATCH", path: "/api/settings/api-tokens/tok_1/network-controls", scope: "api_tokens:write" },
    { method: "HEAD", path: "/api/settings/api-tokens/sandbox-environments", scope: "environments:read" },
  ])("$method $path needs $scope", ({ method, path: p, scope }) => {
    expect(match(method, p)?.scope).toBe(scope);
  });

  it("leaves paths outside every group unmatched", () => {
    expect(match("GET", "/api/unknown")).toBeNull();
    expect(match("GET", "/api/payoutsX")).toBeNull();
  });

  it.each([
    { role: "tenant_admin", size: 50, has: ["enterprise:admin", "api_tokens:write", "sandbox:create"], lacks: [] },
    { role: "tenant_operator", size: 39, has: ["payouts:write", "devices:write", "team_members:read", "environments:read"], lacks: ["team_members:write", "api_tokens:read", "settings:write"] },
    { role: "tenant_reviewer", size: 9, has: ["audit:read", "security:read", "events:read"], lacks: ["payouts:read", "audit:write"] },
    { role: "tenant_brand", size: 7, has: ["workspace:read", "terminals:read"], lacks: ["ledger:read", "payouts:write"] },
    { role: "tenant_auditor", size: 5, has: ["audit:read", "reconciliation:read"], lacks: ["disputes:read"] },
  ])("role $role grants $size scopes", ({ role, size, has, lacks }) => {
    const scopes = policy.roles.get(role);
    expect(scopes?.size).toBe(size);
    for (const s of has) expect(scopes?.has(s)).toBe(true);
    for (const s of lacks) expect(scopes?.has(s)).toBe(false);
  });

  it.each([
    { level: "read_only", has: ["payouts:read", "api_tokens:read", "audit:read"], lacks: ["payouts:write", "sandbox:create", "enterprise:admin"] },
    { level: "read_write", has: ["payouts:read", "payouts:write", "environments:write"], lacks: ["api_tokens:read", "api_tokens:write", "sandbox:manage"] },
    { level: "admin", has: ["api_tokens:write", "sandbox:manage", "enterprise:admin"], lacks: [] },
  ])("key level $level expands its patterns, negations included", ({ level, has, lacks }) => {
    const scopes = policy.keyLevels.get(level);
    for (const s of has) expect(scopes?.has(s)).toBe(true);
    for (const s of lacks) expect(scopes?.has(s)).toBe(false);
  });
});
