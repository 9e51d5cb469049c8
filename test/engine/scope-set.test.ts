import { describe, expect, it } from "vitest";
import { holdsScope, scopeSetOf } from "../../src/engine/scope.js";
import type { TokenRecord } from "../../src/engine/types.js";
import { loadPolicySet } from "../../src/policy/load.js";
import { EXAMPLE_POLICY_DIR, loadExamplePolicy, makeToken } from "../support/fixtures.js";

const policy = loadExamplePolicy();

/** What the shared set must equal: every catalog scope the token holds, judged one by one. */
function expected(record: TokenRecord): string[] {
  return [...policy.scopes].filter((scope) => holdsScope(record, policy, scope)).sort();
}

describe("scopeSetOf", () => {
  it("hands tokens of one role the same list and string, so cached tokens do not each hold a copy", () => {
    const a = makeToken({ role: "tenant_operator" }).record;
    const b = makeToken({ role: "tenant_operator", tenant: "globex", name: "other" }).record;
    expect(scopeSetOf(a, policy)).toBe(scopeSetOf(b, policy));
    expect(scopeSetOf(a, policy).scopes).toEqual(expected(a));
    expect(scopeSetOf(a, policy).joined).toBe(expected(a).join(" "));
    expect(Object.isFrozen(scopeSetOf(a, policy).scopes)).toBe(true);
  });

  it("keeps apart every field that changes the scopes", () => {
    const records = [
      makeToken({ role: "tenant_operator" }).record,
      makeToken({ role: "tenant_operator", keyLevel: "read_only" }).record,
      makeToken({ role: "tenant_admin" }).record,
      makeToken({ role: "tenant_operator", scopes: null }).record,
      makeToken({ role: "tenant_operator", scopes: [] }).record,
      makeToken({ role: "tenant_operator", scopes: ["payouts:read"] }).record,
      makeToken({ role: "tenant_operator", scopes: ["payouts:read", "payouts:write"] }).record,
      makeToken({ role: null, scopes: ["payouts:read"] }).record,
      makeToken({ type: "user", role: "tenant_admin", creatorRole: "tenant_brand" }).record,
      makeToken({ type: "user", role: "tenant_admin", creatorRole: null }).record,
    ];
    for (const record of records) expect(scopeSetOf(record, policy).scopes).toEqual(expected(record));
  });

  it("ignores a creator role on a service token, as holdsScope does", () => {
    const plain = makeToken({ type: "service", role: "tenant_admin" }).record;
    const withCreator = makeToken({ type: "service", role: "tenant_admin", creatorRole: "tenant_brand" }).record;
    expect(scopeSetOf(withCreator, policy)).toBe(scopeSetOf(plain, policy));
  });

  it("computes afresh under a new policy set", () => {
    const record = makeToken({ role: "tenant_operator" }).record;
    const loaded = loadPolicySet(EXAMPLE_POLICY_DIR);
    if (!loaded.ok) throw new Error("the example policy set does not load");
    const reloaded = loaded.policy;
    expect(reloaded).not.toBe(policy);
    expect(scopeSetOf(record, reloaded)).not.toBe(scopeSetOf(record, policy));
    expect(scopeSetOf(record, reloaded).scopes).toEqual(scopeSetOf(record, policy).scopes);
  });
});
