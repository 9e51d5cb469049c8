import fs from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import { effectiveControls } from "../../src/engine/effective-controls.js";
import type { TokenRecord } from "../../src/engine/types.js";
import type { ControlEntrySpec } from "../../src/policy/types.js";
import { makeToken, NOW_MS, request } from "../support/fixtures.js";
import { judge } from "../support/judge.js";
import { fingerprint, loadWith, policyWith, removePolicyFolders } from "./support.js";

afterAll(removePolicyFolders);

const CONTROLS: ControlEntrySpec[] = [
  {
    id: "ws-main",
    selector: { workspace: "acme/main" },
    ipAllowlist: ["10.0.0.0/8"],
    mtls: { caFingerprints: [fingerprint("0f")] },
    conditionalAccess: { methods: ["GET"] },
  },
  { id: "role-brand", selector: { role: "tenant_brand" }, ipAllowlist: ["172.16.0.0/12"] },
  { id: "role-admin-no-mtls", selector: { role: "tenant_admin" }, mtls: { required: false } },
  { id: "env-sandbox", selector: { environment: "sandbox" }, ipAllowlist: ["192.168.0.0/16"] },
  { id: "svc-robot", selector: { service: "robot" }, ipAllowlist: ["198.51.100.0/24"], mtls: { fingerprints: [fingerprint("ab")] } },
];

const policy = policyWith({ "controls.json": { controls: CONTROLS } });

describe("which source's controls apply, per kind", () => {
  it.each<[string, Partial<TokenRecord>, string | null, string | null, string | null]>([
    ["workspace default for everything", { role: "tenant_operator" }, "ws-main", "ws-main", "ws-main"],
    ["role beats workspace, for the kind it sets only", { role: "tenant_brand" }, "role-brand", "ws-main", "ws-main"],
    ["environment beats role", { role: "tenant_brand", environment: "sandbox" }, "env-sandbox", "ws-main", "ws-main"],
    ["service beats environment", { role: "tenant_brand", environment: "sandbox", service: "robot" }, "svc-robot", "svc-robot", "ws-main"],
    ["a role can switch off the workspace's mtls", { role: "tenant_admin" }, "ws-main", "role-admin-no-mtls", "ws-main"],
    ["token beats every policy source, kind by kind (no merging)", { id: "tok_own", service: "robot", controls: { ipAllowlist: ["203.0.113.0/24"] } }, "token:tok_own", "svc-robot", "ws-main"],
    ["a tenant/workspace selector does not match another tenant", { tenant: "globex" }, null, null, null],
    ["nothing applies to another workspace", { workspace: "treasury" }, null, null, null],
  ])("%s", (_name, fields, ip, mtls, ca) => {
    const controls = effectiveControls(makeToken(fields).record, policy);
    expect([controls.ipAllowlist?.ruleId ?? null, controls.mtls?.ruleId ?? null, controls.conditionalAccess?.ruleId ?? null]).toEqual([ip, mtls, ca]);
  });

  it("a token's own allowlist replaces the policy's instead of adding to it", () => {
    const own = makeToken({ role: "tenant_operator", controls: { ipAllowlist: ["203.0.113.0/24"], mtls: { required: false } } });
    const tokens = new Map([[own.token, own.record]]);
    expect(judge(request({ token: own.token, sourceIp: "203.0.113.10" }), policy, tokens, NOW_MS).code).toBe("ok");
    // 10.0.0.1 is on the workspace default, which the token's own list replaced
    expect(judge(request({ token: own.token, sourceIp: "10.0.0.1" }), policy, tokens, NOW_MS).code).toBe("ip_allowlist_blocked");
    // the workspace's conditional access still applies: it was not replaced
    expect(judge(request({ method: "POST", token: own.token, sourceIp: "203.0.113.10" }), policy, tokens, NOW_MS).reason).toBe("method");
  });

  it("is memoised per record and policy set", () => {
    const { record } = makeToken();
    expect(effectiveControls(record, policy)).toBe(effectiveControls(record, policy));
  });

  it("fails closed when a stored token's controls do not compile", () => {
    const broken = makeToken({ controls: { ipAllowlist: [] } });
    expect(() => effectiveControls(broken.record, policy)).toThrow(/controls of token/);
  });
});

interface ErrorCase {
  name: string;
  controls: unknown;
  pointer: string;
  message: string | RegExp;
}

const errorCases: ErrorCase[] = [
  {
    name: "two workspace entries for one workspace setting the same kind",
    controls: { controls: [{ id: "a", selector: { workspace: "acme/main" }, ipAllowlist: ["10.0.0.0/8"] }, { id: "b", selector: { workspace: "main" }, ipAllowlist: ["11.0.0.0/8"] }] },
    pointer: "/controls/1/ipAllowlist",
    message: /control entry `b` and `a` at .* both set `ipAllowlist` at the workspace level/,
  },
  {
    name: "two environment-level entries that overlap",
    controls: { controls: [{ id: "a", selector: { environment: "production", role: "tenant_admin" }, mtls: {} }, { id: "b", selector: { environment: "production" }, mtls: {} }] },
    pointer: "/controls/1/mtls",
    message: /both set `mtls` at the environment level/,
  },
  {
    name: "a cidr with host bits",
    controls: { controls: [{ id: "a", selector: { workspace: "main" }, ipAllowlist: ["198.51.100.7/24"] }] },
    pointer: "/controls/0/ipAllowlist/0",
    message: "cidr `198.51.100.7/24` has host bits set",
  },
  {
    name: "an invalid address",
    controls: { controls: [{ id: "a", selector: { workspace: "main" }, ipAllowlist: ["10.0.0.256"] }] },
    pointer: "/controls/0/ipAllowlist/0",
    message: "`10.0.0.256` is not an ip address or cidr",
  },
  {
    name: "an unknown zone",
    controls: { controls: [{ id: "a", selector: { workspace: "main" }, conditionalAccess: { timeZone: "Europe/Berln" } }] },
    pointer: "/controls/0/conditionalAccess/timeZone",
    message: "unknown time zone `Europe/Berln`",
  },
  {
    name: "a malformed time",
    controls: { controls: [{ id: "a", selector: { workspace: "main" }, conditionalAccess: { hours: { start: "9:00", end: "17:00" } } }] },
    pointer: "/controls/0/conditionalAccess/hours/start",
    message: "invalid time `9:00`: expected `HH:MM` on a 24-hour clock",
  },
  {
    name: "a malformed fingerprint",
    controls: { controls: [{ id: "a", selector: { workspace: "main" }, mtls: { fingerprints: ["ab:cd"] } }] },
    pointer: "/controls/0/mtls/fingerprints/0",
    message: "`ab:cd` is not a sha-256 fingerprint: expected 64 hex digits, with or without colons",
  },
  {
    name: "an unknown role",
    controls: { controls: [{ id: "a", selector: { role: "tenant_operater" }, mtls: {} }] },
    pointer: "/controls/0/selector/role",
    message: "unknown role `tenant_operater`",
  },
  {
    name: "an unknown environment in conditional access",
    controls: { controls: [{ id: "a", selector: { workspace: "main" }, conditionalAccess: { environments: ["prod"] } }] },
    pointer: "/controls/0/conditionalAccess/environments/0",
    message: "unknown environment `prod`",
  },
  {
    name: "an empty selector",
    controls: { controls: [{ id: "a", selector: {}, mtls: {} }] },
    pointer: "/controls/0/selector",
    message: "selector must name at least one of `workspace`, `environment`, `service` or `role`",
  },
  {
    name: "an entry without controls",
    controls: { controls: [{ id: "a", selector: { workspace: "main" } }] },
    pointer: "/controls/0",
    message: "control entry `a` sets no control",
  },
  {
    name: "a bad protect pattern",
    controls: { workspaceRestriction: { protect: [{ path: "/api/**/x" }] } },
    pointer: "/workspaceRestriction/protect/0/path",
    message: /path pattern/,
  },
];

describe("policy controls are checked at load", () => {
  it.each(errorCases)("refuses $name with file, pointer and line", ({ controls, pointer, message }) => {
    const result = loadWith({ "controls.json": controls });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    const error = result.errors.find((e) => e.pointer === pointer);
    expect(error, JSON.stringify(result.errors)).toBeDefined();
    expect(error!.file).toMatch(/controls\.json$/);
    expect(error!.message).toMatch(typeof message === "string" ? new RegExp(`^${message.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`) : message);
    expect(error!.line).toBeGreaterThan(1);
    const lineText = fs.readFileSync(error!.file, "utf8").split("\n")[error!.line - 1]!;
    expect(lineText.trim()).not.toBe("");
  });

  it("suggests the network a cidr with host bits meant", () => {
    const result = loadWith({ "controls.json": errorCases[2]!.controls });
    expect(!result.ok && result.errors[0]!.hint).toBe("did you mean `198.51.100.0/24`?");
  });

  it("accepts same-level entries whose selectors cannot match one token, or that set different kinds", () => {
    const result = loadWith({
      "controls.json": {
        controls: [
          { id: "a", selector: { workspace: "acme/main" }, ipAllowlist: ["10.0.0.0/8"] },
          { id: "b", selector: { workspace: "globex/main" }, ipAllowlist: ["11.0.0.0/8"] },
          { id: "c", selector: { workspace: "main" }, mtls: {} },
          { id: "d", selector: { environment: "production" }, ipAllowlist: ["12.0.0.0/8"] },
        ],
      },
    });
    expect(result.ok, JSON.stringify(!result.ok && result.errors)).toBe(true);
  });

  it("refuses a second workspaceRestriction section", () => {
    const result = loadWith({
      "controls.json": { workspaceRestriction: { protect: [{ path: "/api/payouts/**" }] } },
      "more.json": { workspaceRestriction: {} },
    });
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.errors.map((e) => e.message)).toContainEqual(expect.stringMatching(/^section `workspaceRestriction` is already defined in `.*controls\.json`$/));
  });
});
