/** The lifecycle schema step and the policy set's `tokens` section. */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { loadPolicySet } from "../../src/policy/load.js";
import { DATABASE_FILE_NAME, StoreError, TokenStore } from "../../src/store/token-store.js";
import { MIGRATIONS } from "../../src/store/migrations.js";
import { EXAMPLE_POLICY_DIR, NOW_MS } from "../support/fixtures.js";

let dir: string;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-lifecycle-store-"));
});

afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

const SERVICE = { tenant: "acme", workspace: "main", environment: "production", prefix: "sk_live_", type: "service" as const, role: "tenant_operator" };

describe("the rotation schema step", () => {
  it("backfills every existing token as its own lineage", async () => {
    // A database as the build before rotation (step 3) left it.
    const db = new Database(path.join(dir, DATABASE_FILE_NAME));
    for (const step of MIGRATIONS.slice(0, 2)) db.exec(step);
    db.pragma("user_version = 2");
    db.prepare(
      `INSERT INTO tokens (id, hash, prefix, tenant, workspace, environment, type, name, role, created_at) VALUES ('tok_old', 'h', 'sk_live_', 'acme', 'main', 'production', 'service', 'old', 'tenant_operator', 1)`,
    ).run();
    db.close();
    const store = TokenStore.open({ dataDir: dir, secret: Buffer.alloc(32, 1) });
    try {
      expect(await store.getListing("tok_old")).toMatchObject({ lineageId: "tok_old", successorId: null, predecessorId: null, overlapEndsAtMs: null, revokedReason: null });
      const rotated = await store.rotate("tok_old", { overlapMs: 1_000, actor: "test" });
      expect(rotated.record.lineageId).toBe("tok_old");
    } finally {
      store.close();
    }
  });
});

describe("limits in the store", () => {
  it("count the newest unrevoked, unexpired token of each lineage", async () => {
    let nowMs = NOW_MS;
    const store = TokenStore.open({ dataDir: dir, secret: Buffer.alloc(32, 2), now: () => nowMs });
    try {
      const limits = { userTokensPerCreator: 1, serviceTokensPerTenant: 2 };
      const a = await store.create({ ...SERVICE, name: "a", limits });
      await store.create({ ...SERVICE, name: "b", limits, expiresAtMs: NOW_MS + 1_000 });
      await expect(store.create({ ...SERVICE, name: "c", limits })).rejects.toThrow(new StoreError("conflict", "tenant `acme` already has 2 active service tokens, the policy set's limit"));
      await store.rotate(a.record.id, { overlapMs: 60_000, actor: "test" });
      expect(await store.countActive({ tenant: "acme", type: "service" })).toBe(2);
      nowMs += 2_000; // b expired
      await store.create({ ...SERVICE, name: "c", limits });
      expect((await store.create({ ...SERVICE, tenant: "other", name: "d", limits })).record.tenant).toBe("other");
      const user = { ...SERVICE, type: "user" as const, creator: "ann", creatorRole: "tenant_admin", limits };
      await store.create({ ...user, name: "ann 1" });
      await expect(store.create({ ...user, name: "ann 2" })).rejects.toThrow(/creator `ann` already has 1 active user token in tenant `acme`/);
    } finally {
      store.close();
    }
  });

  it("tells listeners which tokens changed, after the commit", async () => {
    const store = TokenStore.open({ dataDir: dir, secret: Buffer.alloc(32, 3) });
    try {
      const seen: string[][] = [];
      store.onTokensChanged((ids) => seen.push([...ids]));
      const a = (await store.create({ ...SERVICE, name: "a" })).record;
      const b = (await store.rotate(a.id, { overlapMs: 1_000, actor: "test" })).record;
      await store.revoke(b.id, "test", "done");
      expect(await store.emergencyRevoke({ lineageOf: a.id }, { actor: "test", reason: "emergency" })).toEqual([a.id]);
      await expect(store.rotate(b.id, { overlapMs: 1_000, actor: "test" })).rejects.toThrow(/is revoked/);
      expect(seen).toEqual([[a.id, b.id], [b.id], [a.id]]);
    } finally {
      store.close();
    }
  });
});

describe("the policy set's tokens section", () => {
  function withTokens(tokens: unknown, extra: Record<string, unknown> = {}): string {
    const folder = path.join(dir, "policies");
    fs.cpSync(EXAMPLE_POLICY_DIR, folder, { recursive: true });
    fs.writeFileSync(path.join(folder, "tokens.json"), JSON.stringify({ tokens }, null, 2));
    for (const [file, content] of Object.entries(extra)) fs.writeFileSync(path.join(folder, file), JSON.stringify(content, null, 2));
    return folder;
  }

  it("defaults to a 90-day overlap and no limits when absent", () => {
    const loaded = loadPolicySet(EXAMPLE_POLICY_DIR);
    expect(loaded.ok && loaded.policy.tokens).toEqual({ defaultOverlapMs: 90 * 86_400_000, maxOverlapMs: 90 * 86_400_000, userTokensPerCreator: null, serviceTokensPerTenant: null });
  });

  it("compiles durations and limits, and a lower maximum lowers the default", () => {
    const full = loadPolicySet(withTokens({ rotation: { defaultOverlap: "7d", maxOverlap: "2w" }, limits: { userTokensPerCreator: 10, serviceTokensPerTenant: 5 } }));
    expect(full.ok && full.policy.tokens).toEqual({ defaultOverlapMs: 7 * 86_400_000, maxOverlapMs: 14 * 86_400_000, userTokensPerCreator: 10, serviceTokensPerTenant: 5 });
    fs.rmSync(path.join(dir, "policies"), { recursive: true });
    const maxOnly = loadPolicySet(withTokens({ rotation: { maxOverlap: "30d" } }));
    expect(maxOnly.ok && maxOnly.policy.tokens.defaultOverlapMs).toBe(30 * 86_400_000);
  });

  it.each([
    ["a default beyond the maximum", { rotation: { defaultOverlap: "60d", maxOverlap: "30d" } }, "/tokens/rotation/defaultOverlap", /default overlap `60d` exceeds the maximum overlap `30d`/],
    ["a malformed duration", { rotation: { maxOverlap: "90 days" } }, "/tokens/rotation/maxOverlap", /./],
    ["a zero limit", { limits: { serviceTokensPerTenant: 0 } }, "/tokens/limits/serviceTokensPerTenant", /./],
    ["an unknown field", { limits: { tokensPerUser: 3 } }, "/tokens/limits", /./],
  ])("refuses %s with its file and pointer", (_name, tokens, pointer, message) => {
    const loaded = loadPolicySet(withTokens(tokens));
    expect(loaded.ok).toBe(false);
    if (loaded.ok) return;
    const error = loaded.errors.find((e) => e.file.endsWith("tokens.json"));
    expect(error, JSON.stringify(loaded.errors)).toBeDefined();
    expect(error!.pointer.startsWith(pointer)).toBe(true);
    expect(error!.message).toMatch(message);
  });

  it("refuses a second tokens section", () => {
    const loaded = loadPolicySet(withTokens({ limits: { serviceTokensPerTenant: 3 } }, { "more.json": { tokens: { limits: { userTokensPerCreator: 3 } } } }));
    expect(loaded.ok).toBe(false);
    if (!loaded.ok) expect(loaded.errors.map((e) => e.message)).toContainEqual(expect.stringMatching(/section `tokens` is already defined in/));
  });
});
