/**
 * No lifecycle state leaves an operator with advice they cannot follow.
 * Rotate A into B with an overlap, then revoke B (it leaked): A keeps working
 * for the rest of its overlap, and A may be rotated again into C; past its
 * overlap A is done and the advice is to create a new token. Every refusal's
 * advice is checked by following it.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { main } from "../../src/cli/main.js";
import { createAuthorizer, type Authorizer } from "../../src/service/authorize.js";
import { createToken } from "../../src/service/tokens.js";
import { StoreError, TokenStore } from "../../src/store/token-store.js";
import { captureCliOutput } from "../support/cli-output.js";
import { EXAMPLE_POLICY_DIR, loadExamplePolicy, NOW_MS, request } from "../support/fixtures.js";

const DAY_MS = 86_400_000;
let dir: string;
let store: TokenStore;
let nowMs: number;
let authorize: Authorizer;
const io = captureCliOutput();

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-dead-end-"));
  nowMs = NOW_MS;
  store = TokenStore.open({ dataDir: dir, secret: Buffer.alloc(32, 5), now: () => nowMs });
  const policy = loadExamplePolicy();
  authorize = createAuthorizer({
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

function issue(): { token: string; id: string } {
  const { token, record } = createToken(store, loadExamplePolicy(), { tenant: "acme", workspace: "main", environment: "production", type: "service", name: "leaky", role: "tenant_operator", actor: "test" }, nowMs);
  return { token, id: record.id };
}

function refusal(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(StoreError);
    return (error as StoreError).message;
  }
  throw new Error("expected a refusal");
}

describe("rotation after the successor was revoked", () => {
  it("lets the predecessor be rotated again while its overlap lasts", () => {
    const a = issue();
    const b = store.rotate(a.id, { overlapMs: 7 * DAY_MS, actor: "test", nowMs });
    nowMs += DAY_MS;
    store.revoke(b.record.id, "test", "leaked");
    expect(authorize(request({ token: a.token })).decision).toMatchObject({ code: "ok" });

    const c = store.rotate(a.id, { overlapMs: 2 * DAY_MS, actor: "test", nowMs });
    expect(c.predecessor.successorId).toBe(c.record.id);
    expect(authorize(request({ token: c.token })).decision).toMatchObject({ code: "ok" });
    // the new rotation caps A's window; it never extends it
    expect(c.predecessor.overlapEndsAtMs).toBe(nowMs + 2 * DAY_MS);
    expect(authorize(request({ token: b.token })).decision).toMatchObject({ code: "unauthenticated", reason: "revoked" });
    // the advice for A now names C, and following it works
    expect(refusal(() => store.rotate(a.id, { overlapMs: 0, actor: "test", nowMs }))).toMatch(new RegExp(`rotate that one instead`));
    expect(store.rotate(c.record.id, { overlapMs: 0, actor: "test", nowMs }).predecessor.id).toBe(c.record.id);
  });

  it("advises creating a new token once the predecessor's overlap is over", () => {
    const a = issue();
    const b = store.rotate(a.id, { overlapMs: DAY_MS, actor: "test", nowMs });
    store.revoke(b.record.id, "test", "leaked");
    nowMs += 2 * DAY_MS;
    expect(authorize(request({ token: a.token })).decision).toMatchObject({ code: "unauthenticated", reason: "rotated" });
    const message = refusal(() => store.rotate(a.id, { overlapMs: 0, actor: "test", nowMs }));
    expect(message).toMatch(/create a new token/);
    expect(message).not.toMatch(/rotate .* instead/);
  });

  it("advises a new token when the successor and the token itself have expired", () => {
    const { token, record } = createToken(store, loadExamplePolicy(), { tenant: "acme", workspace: "main", environment: "production", type: "service", name: "short", role: "tenant_operator", actor: "test", expiresAtMs: nowMs + DAY_MS }, nowMs);
    void token;
    const b = store.rotate(record.id, { overlapMs: 7 * DAY_MS, actor: "test", nowMs });
    expect(b.record.expiresAtMs).toBe(nowMs + DAY_MS);
    nowMs += 2 * DAY_MS;
    // both expired: A cannot be rotated, and the advice says what to do instead
    expect(refusal(() => store.rotate(record.id, { overlapMs: 0, actor: "test", nowMs }))).toMatch(/create a new token/);
  });

  it("says what to do about a revoked token", () => {
    const a = issue();
    store.revoke(a.id, "test");
    expect(refusal(() => store.rotate(a.id, { overlapMs: 0, actor: "test", nowMs }))).toMatch(/revoked.*create a new token/);
  });
});

describe("revoking an already revoked token", () => {
  it("says so on the CLI and changes nothing", async () => {
    const a = issue();
    store.revoke(a.id, "first", "leaked");
    const auditRows = store.listAudit().length;
    io.err = "";
    expect(await main(["node", "portcullis", "tokens", "revoke", a.id, "--data-dir", dir, "--policies", EXAMPLE_POLICY_DIR])).toBe(0);
    expect(io.err).toMatch(new RegExp(`${a.id} \\(leaky\\) was already revoked at \\d{4}-\\d\\d-\\d\\dT.*by first`));
    expect(store.listAudit().length).toBe(auditRows);
  });
});
