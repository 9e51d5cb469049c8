/**
 * A token whose record carries 10,000 CIDRs: its allowlist is compiled once
 * per record version, in slices between which other decisions are answered,
 * never in one piece on the event loop while every other request waits.
 */
import { describe, expect, it } from "vitest";
import type { TokenRecord } from "../../src/engine/types.js";
import { createAuthorizer, type AuthorizeResult } from "../../src/service/authorize.js";
import { isPromise } from "../../src/service/maybe-promise.js";
import { loadExamplePolicy, makeToken, NOW_MS, request } from "../support/fixtures.js";

const policy = loadExamplePolicy();

/** `count` CIDRs: /24s of 10.0.0.0/8, then the one holding 203.0.113.10. */
function cidrs(count: number): string[] {
  const list = Array.from({ length: count - 1 }, (_, i) => `10.${(i >> 8) & 255}.${i & 255}.0/24`);
  list.push("203.0.113.0/24");
  return list;
}

function authorizerOver(tokens: ReadonlyMap<string, TokenRecord>) {
  return createAuthorizer({
    policy: () => policy,
    tokens: { find: (token) => tokens.get(token) },
    tenantState: { tenantSuspended: () => false, workspaceRestricted: () => false },
    now: () => NOW_MS,
    onError: (error) => {
      throw error;
    },
  });
}

const payouts = (token: string, sourceIp = "203.0.113.10") => request({ method: "GET", path: "/api/payouts/po_1", token, sourceIp });

describe("a token with 10,000 CIDRs", () => {
  it("is decided after its allowlist compiled in slices, while other decisions are answered at once", async () => {
    const big = makeToken({ role: "tenant_operator", controls: { ipAllowlist: cidrs(10_000) } });
    const small = makeToken({ role: "tenant_operator" });
    const authorize = authorizerOver(new Map([big, small].map((t) => [t.token, t.record])));

    const first = authorize(payouts(big.token));
    expect(isPromise(first)).toBe(true);
    // While the big token's first decision is pending, others are answered, on later turns of the event loop too.
    let turns = 0;
    let settled = false;
    const others: AuthorizeResult[] = [];
    void (first as Promise<AuthorizeResult>).then(() => (settled = true));
    await new Promise<void>((resolve) => {
      const turn = (): void => {
        if (settled || turns > 10_000) return resolve();
        turns++;
        const other = authorize(payouts(small.token));
        expect(isPromise(other)).toBe(false);
        others.push(other as AuthorizeResult);
        setImmediate(turn);
      };
      setImmediate(turn);
    });
    expect(turns).toBeGreaterThanOrEqual(10);
    expect(others.every((r) => r.decision.code === "ok")).toBe(true);
    expect((await first).decision.code).toBe("ok");

    // Compiled once: the next decisions for this record, and for a re-read record with the same list, answer at once.
    const again = authorize(payouts(big.token, "10.0.3.7"));
    expect(isPromise(again)).toBe(false);
    expect((again as AuthorizeResult).decision.code).toBe("ok");
    const blocked = authorize(payouts(big.token, "198.51.100.7"));
    expect((blocked as AuthorizeResult).decision.code).toBe("ip_allowlist_blocked");
    expect((blocked as AuthorizeResult).decision.ruleId).toBe(`token:${big.record.id}`);
    const reread = authorizerOver(new Map([[big.token, structuredClone(big.record)]]))(payouts(big.token));
    expect(isPromise(reread)).toBe(false);
  });

  it("compiles a changed list again, and concurrent first decisions share one compile", async () => {
    const big = makeToken({ role: "tenant_operator", controls: { ipAllowlist: cidrs(5_000) } });
    const tokens = new Map([[big.token, big.record]]);
    const authorize = authorizerOver(tokens);
    const both = [authorize(payouts(big.token)), authorize(payouts(big.token, "198.51.100.7"))];
    expect(both.every(isPromise)).toBe(true);
    expect((await Promise.all(both)).map((r) => r.decision.code)).toEqual(["ok", "ip_allowlist_blocked"]);

    // The record now allows 198.51.100.0/24 instead: a new version, compiled again.
    tokens.set(big.token, { ...big.record, controls: { ipAllowlist: [...cidrs(5_000).slice(0, -1), "198.51.100.0/24"] } });
    const changed = authorize(payouts(big.token, "198.51.100.7"));
    expect(isPromise(changed)).toBe(true);
    expect((await changed).decision.code).toBe("ok");
    expect(((await authorize(payouts(big.token))) as AuthorizeResult).decision.code).toBe("ip_allowlist_blocked");
  });

  it("fails closed when the stored list does not compile", async () => {
    const bad = makeToken({ role: "tenant_operator", controls: { ipAllowlist: [...cidrs(2_000), "10.0.0.1/8"] } });
    const errors: unknown[] = [];
    const authorize = createAuthorizer({
      policy: () => policy,
      tokens: { find: () => bad.record },
      tenantState: { tenantSuspended: () => false, workspaceRestricted: () => false },
      now: () => NOW_MS,
      onError: (error) => errors.push(error),
    });
    expect((await authorize(payouts(bad.token))).decision.code).toBe("unavailable");
    expect(errors).toHaveLength(1);
  });
});
