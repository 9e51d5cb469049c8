/**
 * Makes every pair (and every single one) of the checks fail together and
 * asserts that the one DESIGN.md ranks first decides. The quota is charged as
 * the authorizer charges it, after the engine; a spent quota is one already
 * charged to its limit of 1, and a request another check denies must not be counted.
 */
import { describe, expect, it } from "vitest";
import { DECISION_CODES_BY_PRECEDENCE, type DecisionCode } from "../../src/engine/codes.js";
import type { TokenControls, TokenRecord } from "../../src/engine/types.js";
import { createMemoryQuotaCounter } from "../../src/quota/memory-quota-counter.js";
import type { QuotaCounter } from "../../src/quota/quota-counter.js";
import { chargeQuota } from "../../src/service/charge-quota.js";
import { loadExamplePolicy, makeToken, NOW_MS, request } from "../support/fixtures.js";
import { judge } from "../support/judge.js";
import { settledNow } from "../../src/service/maybe-promise.js";

const CHECKS = [
  "invalid_request",
  "unauthenticated",
  "tenant_suspended",
  "ip_allowlist_blocked",
  "mtls_required",
  "conditional_access_blocked",
  "scope_denied",
  "workspace_restricted",
  "quota_exceeded",
] as const satisfies readonly DecisionCode[];
type Check = (typeof CHECKS)[number];

const policy = loadExamplePolicy();

/** A write to /api/payouts from 203.0.113.10 that passes every check except those in `failing`. */
function scenario(failing: ReadonlySet<Check>) {
  const controls: TokenControls = {
    ipAllowlist: failing.has("ip_allowlist_blocked") ? ["198.51.100.0/24"] : ["203.0.113.0/24"],
    // no certificate is presented, so requiring one fails
    ...(failing.has("mtls_required") ? { mtls: {} } : {}),
    // NOW_MS is a Monday
    conditionalAccess: { weekdays: failing.has("conditional_access_blocked") ? ["sat"] : ["mon"] },
    quota: { limitPerMinute: 1 },
  };
  const token = makeToken({
    role: "tenant_operator",
    keyLevel: failing.has("scope_denied") ? "read_only" : null,
    revokedAtMs: failing.has("unauthenticated") ? NOW_MS - 1 : null,
    controls,
  });
  const input = request({ method: "POST", path: failing.has("invalid_request") ? "/api/payouts/%00" : "/api/payouts", token: token.token });
  const counter = createMemoryQuotaCounter();
  const charged: string[] = [];
  const spy: QuotaCounter = { charge: (key, limits, nowMs) => (charged.push(key), counter.charge(key, limits, nowMs)) };
  if (failing.has("quota_exceeded")) counter.charge(token.record.id, { limitPerMinute: 1, limitPerDay: null }, NOW_MS);
  const decision = judge(input, policy, new Map<string, TokenRecord>([[token.token, token.record]]), NOW_MS, {
    tenantSuspended: failing.has("tenant_suspended"),
    workspaceRestricted: failing.has("workspace_restricted"),
  });
  const final = settledNow(chargeQuota(decision, spy, NOW_MS));
  // only a request every other check allowed is ever counted
  expect(charged).toEqual(decision.allowed ? [token.record.id] : []);
  return final;
}

const rank = (code: DecisionCode) => DECISION_CODES_BY_PRECEDENCE.indexOf(code);

describe("precedence when several checks fail", () => {
  it("allows when none fails", () => {
    expect(scenario(new Set()).code).toBe("ok");
  });

  it.each(CHECKS)("%s alone decides when it fails alone", (check) => {
    expect(scenario(new Set([check])).code).toBe(check);
  });

  const pairs = CHECKS.flatMap((a, i) => CHECKS.slice(i + 1).map((b) => [a, b] as const));
  it.each(pairs)("%s and %s fail: the earlier in DESIGN.md wins", (a, b) => {
    const winner = rank(a) < rank(b) ? a : b;
    expect(scenario(new Set([a, b])).code).toBe(winner);
  });

  it("every check failing at once is invalid_request", () => {
    expect(scenario(new Set(CHECKS)).code).toBe("invalid_request");
  });

  it("lists the checks in DESIGN.md's order", () => {
    expect(CHECKS.map(rank)).toEqual([...CHECKS.map(rank)].sort((x, y) => x - y));
  });
});
