/** `policySet.environmentHeader` and `policySet.upstream`: what the loader refuses and what it compiles. */
import { afterAll, describe, expect, it } from "vitest";
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
