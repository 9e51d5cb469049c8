/** The `tokenExchange` policy section: defaults, and lifetimes outside 1 s to 15 minutes refused with their place. */
import { expect, it } from "vitest";
import { loadPolicySet } from "../../src/policy/load.js";
import { jwtPolicyDir } from "./support.js";

it("applies the defaults: 15 minutes, 10 exchanges per minute, /v1/auth/exchange", () => {
  const folder = jwtPolicyDir();
  const loaded = loadPolicySet(folder.dir);
  folder.remove();
  expect(loaded.ok && loaded.policy.tokenExchange).toMatchObject({ maxLifetimeMs: 900_000, path: "/v1/auth/exchange", quota: { limitPerMinute: 10, limitPerDay: null } });
});

it.each(["16m", "1h", "0s"])("refuses a maxLifetime of %s", (maxLifetime) => {
  const folder = jwtPolicyDir({ maxLifetime });
  const loaded = loadPolicySet(folder.dir);
  folder.remove();
  expect(loaded.ok).toBe(false);
  if (!loaded.ok) expect(loaded.errors).toContainEqual(expect.objectContaining({ pointer: "/policySet/tokenExchange/maxLifetime", message: expect.stringMatching(/outside `1s` to `15m`/) }));
});

it("refuses a section without an audience", () => {
  const folder = jwtPolicyDir({ audience: undefined } as never);
  const loaded = loadPolicySet(folder.dir);
  folder.remove();
  expect(loaded.ok).toBe(false);
});
