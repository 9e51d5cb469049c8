/** The pure lifecycle rules, table by table: each row names what it proves. */
import { describe, expect, it } from "vitest";
import { effectiveScopes } from "../../src/engine/scope.js";
import type { Identity, TokenRecord } from "../../src/engine/types.js";
import { checkCreateRequest, type CreateTokenRequest } from "../../src/lifecycle/create-request.js";
import { createSpecProblem, type CreateTokenSpec } from "../../src/lifecycle/create-spec.js";
import { selectEmergencyRevocations } from "../../src/lifecycle/emergency.js";
import { escalationProblem } from "../../src/lifecycle/escalation.js";
import { limitCountFilter, limitProblem } from "../../src/lifecycle/limits.js";
import { cappedOverlapEnd, formatDuration, overlapProblem, planRotation, rotationRefusal } from "../../src/lifecycle/rotation.js";
import { tokenStatus } from "../../src/lifecycle/token-status.js";
import type { TokenListing } from "../../src/store/store-interfaces.js";
import { loadExamplePolicy, makeToken, NOW_MS } from "../support/fixtures.js";

const policy = loadExamplePolicy();
const SPEC: CreateTokenSpec = { tenant: "acme", workspace: "main", environment: "live", prefix: "sk_live_", type: "service", name: "n", role: "r" };

function listing(overrides: Partial<TokenListing> = {}): TokenListing {
  return {
    ...makeToken().record,
    prefix: "sk_live_",
    creator: null,
    revokedBy: null,
    lastUsedAtMs: null,
    useCount: 0,
    predecessorId: null,
    rotatedAtMs: null,
    revokedReason: null,
    ...overrides,
  };
}

describe("createSpecProblem", () => {
  it.each<[string, Partial<CreateTokenSpec> & Record<string, unknown>, string | null]>([
    ["a complete service spec passes", {}, null],
    ["an empty tenant is refused", { tenant: " " }, "token tenant must not be empty"],
    ["an unknown type is refused", { type: "robot" as "user" }, "token type must be `user` or `service`, got `robot`"],
    ["an empty role is refused", { role: "" }, "token role must not be empty when given"],
    ["an empty scope list is refused", { scopes: [] }, "token scopes must list at least one scope when given"],
    ["an empty scope is refused", { scopes: ["a", ""] }, "token scopes must not contain an empty scope"],
    ["neither role nor scopes is refused", { role: null }, "a token needs a role, scopes or both"],
    ["a user token without creator is refused", { type: "user" }, "a user token needs a creator"],
    ["a bad service label is refused", { service: "a b" }, "service label `a b` must be 1-128 letters, digits, `.`, `_`, `:` or `-`"],
    ["an expiry now is refused", { expiresAtMs: NOW_MS }, `token expiry \`${NOW_MS}\` must be a time in the future, in ms since the epoch`],
    ["an expiry later passes", { expiresAtMs: NOW_MS + 1 }, null],
  ])("%s", (_name, overrides, expected) => {
    expect(createSpecProblem({ ...SPEC, ...overrides } as CreateTokenSpec, NOW_MS)).toBe(expected);
  });

  it("refuses controls that do not compile, naming the pointer", () => {
    expect(createSpecProblem({ ...SPEC, controls: { ipAllowlist: ["10.0.0.1/8"] } }, NOW_MS)).toMatch(/^controls \/ipAllowlist\/0: /);
  });
});

describe("limits", () => {
  const limits = { userTokensPerCreator: 2, serviceTokensPerTenant: 1 };
  it.each<[string, CreateTokenSpec, number, string | null]>([
    ["a service token under the cap passes", SPEC, 0, null],
    ["a service token at the cap is refused", SPEC, 1, "tenant `acme` already has 1 active service token, the policy set's limit"],
    ["a user token under the cap passes", { ...SPEC, type: "user", creator: "ann" }, 1, null],
    ["a user token at the cap is refused", { ...SPEC, type: "user", creator: "ann" }, 2, "creator `ann` already has 2 active user tokens in tenant `acme`, the policy set's limit"],
  ])("%s", (_name, spec, count, expected) => {
    expect(limitProblem(spec, limits, count)).toBe(expected);
  });

  it("counts what the cap of the token's type names, and nothing without a cap", () => {
    expect(limitCountFilter(SPEC, limits)).toEqual({ tenant: "acme", type: "service" });
    expect(limitCountFilter({ ...SPEC, type: "user", creator: "ann" }, limits)).toEqual({ tenant: "acme", type: "user", creator: "ann" });
    expect(limitCountFilter(SPEC, { userTokensPerCreator: null, serviceTokensPerTenant: null })).toBeNull();
  });
});

describe("rotation", () => {
  const head = listing({ id: "tok_a", lineageId: "tok_a" });
  const rotated = listing({ id: "tok_a", lineageId: "tok_a", successorId: "tok_b", overlapEndsAtMs: NOW_MS + 1_000 });
  const successor = listing({ id: "tok_b", lineageId: "tok_a" });
  it.each<[string, TokenRecord, TokenRecord | undefined, number, string | null]>([
    ["the head of a lineage may be rotated", head, undefined, NOW_MS, null],
    ["a revoked token may not", { ...head, revokedAtMs: NOW_MS - 1 }, undefined, NOW_MS, "token `tok_a` is revoked; a revoked token cannot be rotated: create a new token"],
    ["an expired token may not", { ...head, expiresAtMs: NOW_MS }, undefined, NOW_MS, "token `tok_a` has expired; an expired token cannot be rotated: create a new token"],
    ["a token with a usable successor may not", rotated, successor, NOW_MS, "token `tok_a` was already rotated to `tok_b`; rotate that one instead"],
    ["a token whose successor was revoked may, inside its window", rotated, { ...successor, revokedAtMs: NOW_MS }, NOW_MS, null],
    ["a token whose successor expired may, inside its window", rotated, { ...successor, expiresAtMs: NOW_MS }, NOW_MS, null],
    [
      "past its window, with a revoked successor, it may not",
      rotated,
      { ...successor, revokedAtMs: NOW_MS },
      NOW_MS + 1_000,
      `token \`tok_a\` was rotated out at ${new Date(NOW_MS + 1_000).toISOString()} and its successor \`tok_b\` is revoked: create a new token`,
    ],
    ["a vanished successor counts as unusable", rotated, undefined, NOW_MS, null],
  ])("%s", (_name, row, next, nowMs, expected) => {
    expect(rotationRefusal(row, next, nowMs)).toBe(expected);
  });

  it("plans a successor that inherits everything but the secret and its history", () => {
    const row = listing({ id: "tok_a", lineageId: "tok_a", useCount: 9, lastUsedAtMs: 5, scopes: ["x"], service: "svc", creator: "ann", expiresAtMs: NOW_MS + 9_000 });
    const { successor, overlapEndsAtMs } = planRotation(row, { id: "tok_b", hash: "h" }, 60_000, NOW_MS);
    expect(overlapEndsAtMs).toBe(NOW_MS + 60_000);
    expect(successor).toEqual({
      ...row, id: "tok_b", hash: "h", createdAtMs: NOW_MS, useCount: 0, lastUsedAtMs: null, predecessorId: "tok_a", successorId: null, rotatedAtMs: null, overlapEndsAtMs: null,
    });
  });

  it("caps a window, never extends it", () => {
    expect(cappedOverlapEnd(null, 10)).toBe(10);
    expect(cappedOverlapEnd(5, 10)).toBe(5);
    expect(cappedOverlapEnd(15, 10)).toBe(10);
  });

  it.each<[number, string | null]>([
    [0, null],
    [policy.tokens.maxOverlapMs, null],
    [policy.tokens.maxOverlapMs + 1_000, `overlap of ${formatDuration(policy.tokens.maxOverlapMs + 1_000)} exceeds the policy set's maximum of ${formatDuration(policy.tokens.maxOverlapMs)}`],
    [-1, "overlap must be zero or a positive duration"],
  ])("overlap %d ms against the policy set: %s", (overlapMs, expected) => {
    expect(overlapProblem(overlapMs, policy.tokens)).toBe(expected);
  });
});

describe("selectEmergencyRevocations", () => {
  it("takes each unrevoked token once, of the named tenant only, in order", () => {
    const a = listing({ id: "tok_a" });
    const b = listing({ id: "tok_b", revokedAtMs: 1 });
    const c = listing({ id: "tok_c", tenant: "other" });
    expect(selectEmergencyRevocations([a, b, c, a], "acme").map((row) => row.id)).toEqual(["tok_a"]);
    expect(selectEmergencyRevocations([c, a, b], undefined).map((row) => row.id)).toEqual(["tok_c", "tok_a"]);
  });
});

describe("tokenStatus", () => {
  it.each<[string, Partial<TokenRecord>, string]>([
    ["plain", {}, "active"],
    ["revoked wins over everything", { revokedAtMs: 1, expiresAtMs: 1, overlapEndsAtMs: 1 }, "revoked"],
    ["expired at its expiry instant", { expiresAtMs: NOW_MS }, "expired"],
    ["inside its window", { overlapEndsAtMs: NOW_MS + 1 }, "rotating"],
    ["at its window's end", { overlapEndsAtMs: NOW_MS }, "rotated"],
  ])("%s", (_name, overrides, expected) => {
    expect(tokenStatus(makeToken(overrides).record, NOW_MS)).toBe(expected);
  });
});

describe("escalationProblem", () => {
  const operator = makeToken({ role: "tenant_operator" }).record;
  const caller: Identity = {
    tokenId: operator.id, tenant: "acme", workspace: "main", environment: "production", tokenType: "service", role: "tenant_operator", name: "op",
    scopes: effectiveScopes(operator, policy),
  };
  it("lets a caller mint what it holds", () => {
    expect(escalationProblem(makeToken({ role: "tenant_operator" }).record, caller, policy)).toBeNull();
  });
  it("refuses a token holding more than the caller, naming up to five scopes", () => {
    expect(escalationProblem(makeToken({ role: "tenant_admin" }).record, caller, policy)).toMatch(/^the new token would hold \d+ scopes the calling token does not: (`[^`]+`, ){4}`[^`]+`, \.\.\.$/);
  });
  it("refuses another environment", () => {
    expect(escalationProblem(makeToken({ environment: "sandbox" }).record, caller, policy)).toBe("a `production` token cannot create tokens for the `sandbox` environment");
  });
});

describe("checkCreateRequest", () => {
  const base: CreateTokenRequest = { tenant: "acme", workspace: "main", environment: "production", type: "service", name: "n", role: "tenant_operator", actor: "t" };
  it("attaches the environment's prefix and the policy set's caps", () => {
    const checked = checkCreateRequest(policy, base, NOW_MS);
    expect(checked.ok && checked.spec.prefix).toBe("sk_live_");
    expect(checked.ok && checked.spec.limits).toEqual({ userTokensPerCreator: policy.tokens.userTokensPerCreator, serviceTokensPerTenant: policy.tokens.serviceTokensPerTenant });
  });
  it.each<[string, Partial<CreateTokenRequest>, RegExp]>([
    ["an unknown role, with a suggestion", { role: "tenant_operater" }, /^unknown role `tenant_operater` \(did you mean `tenant_operator`\?\)$/],
    ["an unknown environment", { environment: "moon" }, /^unknown environment `moon`/],
    ["a user token without its creator's role: it would not be bounded by it", { type: "user", creator: "ann" }, /^a user token needs its creator and the creator's role/],
    ["a bad workspace", { workspace: "a/b" }, /^workspace `a\/b` must be 1-128/],
  ])("refuses %s", (_name, overrides, expected) => {
    const checked = checkCreateRequest(policy, { ...base, ...overrides }, NOW_MS);
    expect(checked.ok ? null : checked.message).toMatch(expected);
  });
});
