/** `policySet.environmentHeader` and `policySet.upstream`: what the loader refuses and what it compiles. */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runPolicyTests } from "../../src/policy-test/run-policy-tests.js";
import { compileUpstream } from "../../src/policy/upstream.js";
import { loadWith, policyWith, removePolicyFolders } from "../controls/support.js";

afterAll(removePolicyFolders);

const settings = (extra: Record<string, unknown>) => ({
  "policy-set.json": {
    policySet: { name: "t", defaultEnvironment: "production", ...extra },
    environments: [
      { name: "production", tokenPrefix: "sk_live_", hosts: ["api.example.com"] },
      { name: "sandbox", tokenPrefix: "sk_sandbox_" },
    ],
  },
});

describe("policy set header settings the loader refuses", () => {
  it.each([
    { name: "the credential header as environment header", extra: { environmentHeader: "Authorization" }, pointer: "/policySet/environmentHeader", message: "cannot name the environment" },
    { name: "host as environment header", extra: { environmentHeader: "host" }, pointer: "/policySet/environmentHeader", message: "cannot name the environment" },
    { name: "a header name with a space", extra: { environmentHeader: "x env" }, pointer: "/policySet/environmentHeader", message: "" },
    { name: "an upstream field under a reserved header", extra: { upstream: { headers: { scopes: "Cookie" } } }, pointer: "/policySet/upstream/headers/scopes", message: "cannot carry an identity field" },
    { name: "two fields under one header, in any case", extra: { upstream: { headers: { tenant: "x-who", workspace: "X-Who" } } }, pointer: "/policySet/upstream/headers/workspace", message: "already carries `tenant`" },
    { name: "an unknown field in headers", extra: { upstream: { headers: { secret: "x-secret" } } }, pointer: "/policySet/upstream/headers", message: "" },
    { name: "an unknown field in metadata", extra: { upstream: { metadata: ["scope"] } }, pointer: "/policySet/upstream/metadata/0", message: "" },
  ])("$name", ({ extra, pointer, message }) => {
    const result = loadWith(settings(extra));
    expect(result.ok).toBe(false);
    if (result.ok) return;
    const error = result.errors.find((e) => e.pointer.startsWith(pointer));
    expect(error, JSON.stringify(result.errors)).toBeDefined();
    expect(error!.message).toContain(message);
  });
});

describe("compiled upstream choice", () => {
  it("defaults to ids, tenant, workspace, environment, type and role as headers; no scopes anywhere", () => {
    expect(compileUpstream(undefined)).toEqual({
      headers: [
        ["tokenId", "x-portcullis-token-id"],
        ["tenant", "x-portcullis-tenant"],
        ["workspace", "x-portcullis-workspace"],
        ["environment", "x-portcullis-environment"],
        ["tokenType", "x-portcullis-token-type"],
        ["role", "x-portcullis-role"],
      ],
      metadata: [
        ["tokenId", "token_id"],
        ["tenant", "tenant"],
        ["workspace", "workspace"],
        ["environment", "environment"],
        ["role", "role"],
      ],
    });
  });

  it("a list given replaces its default whole, in field order, names lower-cased", () => {
    expect(compileUpstream({ headers: { scopes: "X-Scopes", tenant: "X-Tenant" }, metadata: [] })).toEqual({
      headers: [
        ["tenant", "x-tenant"],
        ["scopes", "x-scopes"],
      ],
      metadata: [],
    });
  });

  it("the bundled policy set says explicitly what it forwards, which is the default", () => {
    const bundled = policyWith({});
    expect(bundled.upstream).toEqual(compileUpstream(undefined));
    expect(bundled.environmentHeader).toBe("x-example-environment");
  });
});

describe("policy test expectations on upstream headers", () => {
  it("fail with what was forwarded: a header expected absent, a value that differs", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-upstream-expect-"));
    try {
      const file = path.join(dir, "upstream.test.json");
      const request = { method: "GET", path: "/api/payouts" };
      fs.writeFileSync(
        file,
        JSON.stringify({
          now: "2026-03-03T10:00:00Z",
          cases: [
            { name: "absent", token: { role: "tenant_operator" }, request, expect: { code: "ok", upstreamHeaders: { "x-portcullis-tenant": null } } },
            { name: "differs", token: { role: "tenant_operator" }, request, expect: { code: "ok", upstreamHeaders: { "X-Portcullis-Scopes": "payouts:read" } } },
            { name: "holds", token: { role: "tenant_operator" }, request, expect: { code: "ok", upstreamHeaders: { "x-portcullis-scopes": null, "x-portcullis-role": "tenant_operator" } } },
          ],
        }),
      );
      const run = runPolicyTests(policyWith({}), [file], { baseDir: dir });
      expect(run.errors).toEqual([]);
      expect(run.results.map((r) => [r.name, r.passed, r.mismatches])).toEqual([
        ["absent", false, ["expected no upstream header `x-portcullis-tenant`, got `acme`"]],
        ["differs", false, ["expected upstream header `x-portcullis-scopes` `payouts:read`, got `undefined`"]],
        ["holds", true, []],
      ]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
