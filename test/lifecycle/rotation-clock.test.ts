/**
 * Rotation, expiry and revocation under an injected clock, through the real
 * store and the real authorizer: inside the overlap window and one second past
 * it, rotation of a rotated token, chains, expiry.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { AuthzInput } from "../../src/engine/types.js";
import type { AuthorizeResult } from "../../src/service/authorize.js";
import { createSyncAuthorizer } from "../support/sync-authorizer.js";
import { main } from "../../src/cli/main.js";
import { createToken } from "../../src/service/tokens.js";
import { StoreError, TokenStore } from "../../src/store/token-store.js";
import { captureCliOutput } from "../support/cli-output.js";
import { EXAMPLE_POLICY_DIR, loadExamplePolicy, NOW_MS, request } from "../support/fixtures.js";

const DAY_MS = 86_400_000;

let dir: string;
let store: TokenStore;
let nowMs: number;
let authorize: (input: AuthzInput) => AuthorizeResult;
const io = captureCliOutput();

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-clock-"));
  nowMs = NOW_MS;
  store = TokenStore.open({ dataDir: dir, secret: Buffer.alloc(32, 3), now: () => nowMs });
  const policy = loadExamplePolicy();
  authorize = createSyncAuthorizer({
    policy: () => policy,
    tokens: { find: (token) => store.findByToken(token) },
    tenantState: { tenantSuspended: () => false, workspaceRestricted: () => false },
    now: () => nowMs,
    onError: (error) => {
      throw error;
    },
  });
});

afterEach(() => {
  store.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function issue(expiresAtMs: number | null = null): Promise<{ token: string; id: string }> {
  const { token, record } = await createToken(
    store,
    loadExamplePolicy(),
    { tenant: "acme", workspace: "main", environment: "production", type: "service", name: "clocked", role: "tenant_operator", expiresAtMs, actor: "test" },
    nowMs,
  );
  return { token, id: record.id };
}

function decide(token: string) {
  return authorize(request({ token })).decision;
}

describe("rotation with an injected clock", () => {
  it("keeps the predecessor valid, with a warning, until the overlap ends, then answers rotated", async () => {
    const old = await issue();
    const rotated = await store.rotate(old.id, { overlapMs: 7 * DAY_MS, actor: "test", nowMs });
    const endMs = NOW_MS + 7 * DAY_MS;
    expect(rotated.predecessor).toMatchObject({ id: old.id, successorId: rotated.record.id, overlapEndsAtMs: endMs });
    expect(rotated.record).toMatchObject({ lineageId: old.id, successorId: null, overlapEndsAtMs: null });

    nowMs = endMs - 1_000; // one second before the end: still inside
    const inside = decide(old.token);
    expect(inside).toMatchObject({ allowed: true, code: "ok" });
    expect(inside.warnings).toEqual([{ code: "token_rotating", message: expect.stringContaining(new Date(endMs).toISOString()) }]);
    expect(decide(rotated.token)).toMatchObject({ allowed: true, warnings: [] });

    nowMs = endMs; // the end itself is already outside
    expect(decide(old.token)).toMatchObject({ allowed: false, code: "unauthenticated", reason: "rotated", httpStatus: 401 });

    nowMs = endMs + 1_000; // one second past
    expect(decide(old.token)).toMatchObject({ allowed: false, code: "unauthenticated", reason: "rotated" });
    expect(decide(rotated.token)).toMatchObject({ allowed: true });
  });

  it("refuses to rotate a token that already has a successor, naming it", async () => {
    const old = await issue();
    const first = await store.rotate(old.id, { overlapMs: DAY_MS, actor: "test", nowMs });
    const again = await (async () => {
      try {
        await store.rotate(old.id, { overlapMs: DAY_MS, actor: "test", nowMs });
      } catch (error) {
        return error;
      }
      return null;
    })();
    expect(again).toBeInstanceOf(StoreError);
    expect((again as StoreError).kind).toBe("conflict");
    expect((again as StoreError).message).toBe(`token \`${old.id}\` was already rotated to \`${first.record.id}\`; rotate that one instead`);
  });

  it.each([
    ["revoked", async (id: string) => await store.revoke(id, "test"), /is revoked/],
    ["expired", () => void (nowMs += 2 * DAY_MS), /has expired/],
  ])("refuses to rotate a %s token", async (_name, spoil, message) => {
    const old = await issue(NOW_MS + DAY_MS);
    await spoil(old.id);
    await expect(store.rotate(old.id, { overlapMs: DAY_MS, actor: "test", nowMs })).rejects.toThrow(message);
  });

  it("keeps chains consistent: a later, shorter window caps every older token of the lineage", async () => {
    const a = await issue();
    const b = await store.rotate(a.id, { overlapMs: 30 * DAY_MS, actor: "test", nowMs });
    nowMs += DAY_MS;
    const c = await store.rotate(b.record.id, { overlapMs: 2 * DAY_MS, actor: "test", nowMs });
    expect((await store.get(a.id))!.overlapEndsAtMs).toBe(nowMs + 2 * DAY_MS); // was NOW + 30d, capped
    expect((await store.get(b.record.id))!.overlapEndsAtMs).toBe(nowMs + 2 * DAY_MS);
    expect(new Set(await Promise.all([a.id, b.record.id, c.record.id].map(async (id) => (await store.get(id))!.lineageId)))).toEqual(new Set([a.id]));
    // A longer later window never extends an older token's.
    nowMs += DAY_MS;
    await store.rotate(c.record.id, { overlapMs: 30 * DAY_MS, actor: "test", nowMs });
    expect((await store.get(a.id))!.overlapEndsAtMs).toBe(NOW_MS + 3 * DAY_MS);
    nowMs = NOW_MS + 3 * DAY_MS + 1_000;
    expect(decide(a.token)).toMatchObject({ reason: "rotated" });
    expect(decide(c.token)).toMatchObject({ allowed: true, warnings: [expect.objectContaining({ code: "token_rotating" })] });
  });

  it("inherits the predecessor's expiry, and expiry still ends the overlap early", async () => {
    const old = await issue(NOW_MS + DAY_MS);
    const rotated = await store.rotate(old.id, { overlapMs: 7 * DAY_MS, actor: "test", nowMs });
    expect(rotated.record.expiresAtMs).toBe(NOW_MS + DAY_MS);
    nowMs = NOW_MS + DAY_MS - 1_000;
    expect(decide(old.token)).toMatchObject({ allowed: true });
    nowMs = NOW_MS + DAY_MS + 1_000;
    expect(decide(old.token)).toMatchObject({ allowed: false, reason: "expired" });
    expect(decide(rotated.token)).toMatchObject({ allowed: false, reason: "expired" });
  });

  it("treats revocation as final whatever the window says", async () => {
    const old = await issue();
    const rotated = await store.rotate(old.id, { overlapMs: 7 * DAY_MS, actor: "test", nowMs });
    await store.revoke(old.id, "test");
    expect(decide(old.token)).toMatchObject({ allowed: false, reason: "revoked" });
    expect(decide(rotated.token)).toMatchObject({ allowed: true });
  });

  it("writes api_token.rotated with the successor id and never the token", async () => {
    const old = await issue();
    const rotated = await store.rotate(old.id, { overlapMs: DAY_MS, actor: "cli:ann", nowMs });
    const [created, event] = await store.listAudit({ tenant: "acme", limit: 2 });
    expect(event).toMatchObject({ event: "api_token.rotated", actor: "cli:ann", tokenId: old.id, data: { successorId: rotated.record.id, overlapEndsAtMs: NOW_MS + DAY_MS } });
    expect(created).toMatchObject({ event: "api_token.created", tokenId: rotated.record.id, data: expect.objectContaining({ predecessorId: old.id }) });
    expect(JSON.stringify(await store.listAudit({ limit: 100 }))).not.toContain(rotated.token.slice(8, 30));
  });
});

// No lifecycle state may leave an operator with advice they cannot follow:
// rotate A into B, revoke B (it leaked), and A can still be replaced.
/** The message of the store's refusal; fails when `run` does not refuse. */
async function refusal(run: () => Promise<unknown>): Promise<string> {
  try {
    await run();
  } catch (error) {
    expect(error).toBeInstanceOf(StoreError);
    return (error as StoreError).message;
  }
  throw new Error("expected a refusal");
}

describe("rotation after the successor was revoked", () => {
  it("lets the predecessor be rotated again while its overlap lasts", async () => {
    const a = await issue();
    const b = await store.rotate(a.id, { overlapMs: 7 * DAY_MS, actor: "test", nowMs });
    nowMs += DAY_MS;
    await store.revoke(b.record.id, "test", "leaked");
    expect(decide(a.token)).toMatchObject({ code: "ok" });

    const c = await store.rotate(a.id, { overlapMs: 2 * DAY_MS, actor: "test", nowMs });
    expect(c.predecessor.successorId).toBe(c.record.id);
    expect(decide(c.token)).toMatchObject({ code: "ok" });
    // the new rotation caps A's window; it never extends it
    expect(c.predecessor.overlapEndsAtMs).toBe(nowMs + 2 * DAY_MS);
    expect(decide(b.token)).toMatchObject({ code: "unauthenticated", reason: "revoked" });
    // the advice for A now names C, and following it works
    expect((await refusal(async () => await store.rotate(a.id, { overlapMs: 0, actor: "test", nowMs })))).toMatch(new RegExp(`rotate that one instead`));
    expect((await store.rotate(c.record.id, { overlapMs: 0, actor: "test", nowMs })).predecessor.id).toBe(c.record.id);
  });

  it("advises creating a new token once the predecessor's overlap is over", async () => {
    const a = await issue();
    const b = await store.rotate(a.id, { overlapMs: DAY_MS, actor: "test", nowMs });
    await store.revoke(b.record.id, "test", "leaked");
    nowMs += 2 * DAY_MS;
    expect(decide(a.token)).toMatchObject({ code: "unauthenticated", reason: "rotated" });
    const message = (await refusal(async () => await store.rotate(a.id, { overlapMs: 0, actor: "test", nowMs })));
    expect(message).toMatch(/create a new token/);
    expect(message).not.toMatch(/rotate .* instead/);
  });

  it("advises a new token when the successor and the token itself have expired", async () => {
    const record = await issue(nowMs + DAY_MS);
    const b = await store.rotate(record.id, { overlapMs: 7 * DAY_MS, actor: "test", nowMs });
    expect(b.record.expiresAtMs).toBe(nowMs + DAY_MS);
    nowMs += 2 * DAY_MS;
    // both expired: A cannot be rotated, and the advice says what to do instead
    expect((await refusal(async () => await store.rotate(record.id, { overlapMs: 0, actor: "test", nowMs })))).toMatch(/create a new token/);
  });

  it("says what to do about a revoked token", async () => {
    const a = await issue();
    await store.revoke(a.id, "test");
    expect((await refusal(async () => await store.rotate(a.id, { overlapMs: 0, actor: "test", nowMs })))).toMatch(/revoked.*create a new token/);
  });
});

describe("revoking an already revoked token", () => {
  it("says so on the CLI and changes nothing", async () => {
    const a = await issue();
    await store.revoke(a.id, "first", "leaked");
    const auditRows = (await store.listAudit()).length;
    io.err = "";
    expect(await main(["node", "portcullis", "tokens", "revoke", a.id, "--data-dir", dir, "--policies", EXAMPLE_POLICY_DIR])).toBe(0);
    expect(io.err).toMatch(new RegExp(`${a.id} \\(clocked\\) was already revoked at \\d{4}-\\d\\d-\\d\\dT.*by first`));
    expect((await store.listAudit()).length).toBe(auditRows);
  });
});
