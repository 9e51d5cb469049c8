/** Last-used stamps through the real server: a burst of decisions is a handful of store transactions. */
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { request } from "../support/fixtures.js";
import { seedToken, startLoggedServer, type LoggedServer } from "./helpers.js";

let t: LoggedServer;

beforeAll(async () => {
  t = await startLoggedServer();
});

afterAll(async () => {
  await t?.stop();
});

describe("last-used stamps", () => {
  it("turn 10,000 decisions into a handful of transactions, with exact counts in the store", async () => {
    const tokens = await Promise.all([0, 1, 2].map(async (i) => await seedToken(t.server, { name: `burst ${i}`, role: "tenant_operator" })));
    const denied = await seedToken(t.server, { name: "read only", role: "tenant_operator", keyLevel: "read_only" });
    const recordUse = vi.spyOn(t.server.store, "recordUse");
    const startedAtMs = Date.now();
    for (let i = 0; i < 10_000; i++) {
      const { decision } = await t.server.authorize(request({ token: tokens[i % 3]!.token }));
      expect(decision.allowed).toBe(true);
      // Yield now and then, as a server between requests does, so timers may fire.
      if (i % 2_500 === 2_499) await new Promise((resolve) => setImmediate(resolve));
    }
    // A scope denial still identified the token: it counts as a use; an unknown token does not.
    expect((await t.server.authorize(request({ token: denied.token, method: "POST" }))).decision.code).toBe("scope_denied");
    await t.server.usage.flush();
    expect(recordUse.mock.calls.length).toBeGreaterThanOrEqual(1);
    expect(recordUse.mock.calls.length).toBeLessThanOrEqual(5);
    const rows = new Map((await t.server.store.list({ tenant: "acme" })).map((row) => [row.id, row]));
    expect(tokens.map((token) => rows.get(token.id)!.useCount)).toEqual([3_334, 3_333, 3_333]);
    expect(rows.get(denied.id)!.useCount).toBe(1);
    for (const token of tokens) expect(rows.get(token.id)!.lastUsedAtMs).toBeGreaterThanOrEqual(startedAtMs);
    recordUse.mockRestore();
  });
});
