import { afterAll, describe, expect, it } from "vitest";
import type { TokenRecord } from "../../src/engine/types.js";
import { loadExamplePolicy, makeToken, NOW_MS, request } from "../support/fixtures.js";
import { judge } from "../support/judge.js";
import { policyWith, removePolicyFolders } from "./support.js";

afterAll(removePolicyFolders);

const policy = loadExamplePolicy();
const operator = makeToken({ role: "tenant_operator" });
const admin = makeToken({ role: "tenant_admin", keyLevel: "admin" });
const tokens = new Map<string, TokenRecord>([operator, admin].map((t) => [t.token, t.record]));

describe("the tenant_suspended stage", () => {
  it.each([
    ["a read", "GET"],
    ["a write", "POST"],
  ])("denies %s of a suspended tenant's token with 403", (_name, method) => {
    const decision = judge(request({ method, token: operator.token }), policy, tokens, NOW_MS, { tenantSuspended: true });
    expect(decision).toMatchObject({
      allowed: false,
      code: "tenant_suspended",
      httpStatus: 403,
      reason: "suspended",
      ruleId: "tenant-suspension",
      auditEvent: "auth.api_token_tenant_suspended",
      details: { tenant: "acme" },
    });
    expect(decision.message).toBe("tenant `acme` is suspended");
    expect(decision.identity?.tokenId).toBe(operator.record.id);
  });

  it("passes when the tenant is not suspended", () => {
    expect(judge(request({ token: operator.token }), policy, tokens, NOW_MS, { tenantSuspended: false }).code).toBe("ok");
  });
});

describe("the workspace_restricted stage (423)", () => {
  it.each([
    ["reads pass by default", "GET", "/api/payouts", "ok"],
    ["HEAD and OPTIONS are reads", "OPTIONS", "/api/payouts", "ok"],
    ["writes are protected by default", "POST", "/api/payouts", "workspace_restricted"],
    ["DELETE is a write", "DELETE", "/api/payouts/po_1", "workspace_restricted"],
    ["unknown methods count as writes", "PURGE", "/api/payouts", "workspace_restricted"],
  ])("%s: %s %s → %s", (_name, method, path, code) => {
    const decision = judge(request({ method, path, token: operator.token }), policy, tokens, NOW_MS, { workspaceRestricted: true });
    expect(decision.code).toBe(code);
    if (code !== "ok") {
      expect(decision).toMatchObject({ httpStatus: 423, reason: "restricted", ruleId: "workspace-restriction", auditEvent: "auth.api_token_workspace_restricted" });
      expect(decision.details).toEqual({ tenant: "acme", workspace: "main", mode: "writes" });
    }
  });

  it("passes writes when the workspace is not restricted", () => {
    expect(judge(request({ method: "POST", token: operator.token }), policy, tokens, NOW_MS, { workspaceRestricted: false }).code).toBe("ok");
  });

  describe("with a policy protect list", () => {
    const protecting = policyWith({
      "restriction.json": {
        workspaceRestriction: {
          protect: [
            { method: "POST", path: "/api/payouts/**" },
            { method: "GET", path: "/api/ledger/{entryId}" },
            { path: "/api/settings/api-tokens/**" },
          ],
        },
      },
    });
    it.each([
      ["a listed method and path", "POST", "/api/payouts/po_1", "workspace_restricted"],
      ["an unlisted method on a listed path passes", "DELETE", "/api/payouts/po_1", "ok"],
      ["an unlisted write passes", "POST", "/api/ledger", "ok"],
      ["a listed read is protected", "GET", "/api/ledger/le_1", "workspace_restricted"],
      ["GET also protects HEAD", "HEAD", "/api/ledger/le_1", "workspace_restricted"],
      ["a template is exact without /**", "GET", "/api/ledger/le_1/lines", "ok"],
      ["no method means every method", "GET", "/api/settings/api-tokens", "workspace_restricted"],
    ])("%s: %s %s → %s", (_name, method, path, code) => {
      const decision = judge(request({ method, path, token: admin.token }), protecting, tokens, NOW_MS, { workspaceRestricted: true });
      expect(decision.code).toBe(code);
    });
  });

  describe("restriction modes", () => {
    // The protect list names POST /api/payouts/** (a write) and GET /api/ledger/{entryId} (a read).
    const protecting = policyWith({
      "restriction.json": { workspaceRestriction: { protect: [{ method: "POST", path: "/api/payouts/**" }, { method: "GET", path: "/api/ledger/{entryId}" }] } },
    });
    // Each operation under mode writes (protected or not), and under mode all, which refuses every one of them.
    const operations = [
      ["default", "GET", "/api/payouts", "ok"],
      ["default", "HEAD", "/api/payouts", "ok"],
      ["default", "POST", "/api/payouts", "workspace_restricted"],
      ["protect list", "POST", "/api/payouts/po_1", "workspace_restricted"],
      ["protect list", "POST", "/api/ledger", "ok"],
      ["protect list", "GET", "/api/ledger/le_1", "workspace_restricted"],
      ["protect list", "GET", "/api/payouts", "ok"],
    ] as const;
    it.each([
      ...operations.flatMap(([which, method, path, underWrites]) => [
        ["writes", which, method, path, underWrites] as const,
        ["all", which, method, path, "workspace_restricted"] as const,
      ]),
      // `true`, as callers and test files said before modes existed, means writes
      [true, "default", "POST", "/api/payouts", "workspace_restricted"] as const,
      [true, "default", "GET", "/api/payouts", "ok"] as const,
    ])("mode %s with the %s policy: %s %s → %s", (mode, which, method, path, code) => {
      const decision = judge(request({ method, path, token: admin.token }), which === "default" ? policy : protecting, tokens, NOW_MS, { workspaceRestricted: mode });
      expect(decision.code).toBe(code);
      if (code === "ok") return;
      const named = mode === true ? "writes" : mode;
      expect(decision).toMatchObject({ httpStatus: 423, reason: "restricted", ruleId: "workspace-restriction", auditEvent: "auth.api_token_workspace_restricted" });
      expect(decision.details).toEqual({ tenant: "acme", workspace: "main", mode: named });
      expect(decision.message).toBe(`workspace \`acme/main\` is ${named === "all" ? "frozen" : "temporarily restricted"}: \`${method} ${path}\` is not allowed`);
    });

    it("still answers scope_denied first for a request the token could never make in a frozen workspace", () => {
      const reader = makeToken({ role: "tenant_operator", keyLevel: "read_only" });
      const decision = judge(request({ method: "POST", token: reader.token }), policy, new Map([[reader.token, reader.record]]), NOW_MS, { workspaceRestricted: "all" });
      expect(decision.code).toBe("scope_denied");
    });
  });
});
