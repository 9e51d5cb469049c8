/**
 * Schema step 4: tokens rebuilt as a WITHOUT ROWID table keyed by hash. A
 * database left by the build before it must come through with every column,
 * its listing order and its indexes, and the decision path's look-up must be
 * one primary-key search.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { MIGRATIONS } from "../../src/store/migrations.js";
import { DATABASE_FILE_NAME, TokenStore } from "../../src/store/token-store.js";
import { generateToken } from "../../src/token/format.js";
import { hashToken } from "../../src/token/hash.js";

const SECRET = Buffer.alloc(32, 7);
const CREATED_AT = Date.UTC(2026, 0, 1);

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-schema-"));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A database at schema version 3 holding three tokens created in the same millisecond, inserted in the order c, a, b. */
function schemaThreeDatabase(): Record<string, string> {
  const db = new Database(path.join(dir, DATABASE_FILE_NAME));
  for (const step of MIGRATIONS.slice(0, 3)) db.exec(step);
  db.pragma("user_version = 3");
  const tokens: Record<string, string> = {};
  const insert = db.prepare(`
    INSERT INTO tokens (id, hash, prefix, tenant, workspace, environment, type, name, role, key_level, scopes, creator, creator_role,
      created_at, expires_at, revoked_at, revoked_by, last_used_at, use_count, controls, service, lineage_id, predecessor_id,
      successor_id, rotated_at, overlap_ends_at, revoked_reason)
    VALUES (@id, @hash, 'sk_live_', 'acme', 'main', 'live', 'service', @name, @role, @keyLevel, @scopes, 'ops@acme', 'tenant_admin',
      @createdAt, @expiresAt, @revokedAt, @revokedBy, 1767225600500, 42, @controls, 'billing', @lineage, NULL, NULL, NULL, NULL, @reason)`);
  for (const [id, extra] of [
    ["tok_c", { role: null, scopes: JSON.stringify(["payouts:read"]), revokedAt: null, revokedBy: null, reason: null }],
    ["tok_a", { role: "tenant_operator", scopes: null, revokedAt: CREATED_AT + 5, revokedBy: "ops@acme", reason: "leaked" }],
    ["tok_b", { role: "tenant_operator", scopes: null, revokedAt: null, revokedBy: null, reason: null }],
  ] as const) {
    const token = generateToken("sk_live_");
    tokens[id] = token;
    insert.run({
      id,
      hash: hashToken(SECRET, token),
      name: `name of ${id}`,
      keyLevel: id === "tok_b" ? "read_only" : null,
      createdAt: CREATED_AT,
      expiresAt: CREATED_AT + 86_400_000,
      controls: JSON.stringify({ ipAllowlist: ["203.0.113.0/24"] }),
      lineage: id,
      ...extra,
    });
  }
  db.close();
  return tokens;
}

describe("the hash-keyed schema step", () => {
  it("keeps every token with all its columns and its listing order", async () => {
    const tokens = schemaThreeDatabase();
    const before = new Database(path.join(dir, DATABASE_FILE_NAME), { readonly: true });
    const rowsBefore = before.prepare("SELECT * FROM tokens ORDER BY id").all();
    before.close();

    const store = TokenStore.open({ dataDir: dir, secret: SECRET, now: () => CREATED_AT + 10 });
    try {
      const db = new Database(path.join(dir, DATABASE_FILE_NAME), { readonly: true });
      const rowsAfter = db.prepare("SELECT * FROM tokens ORDER BY id").all() as Record<string, unknown>[];
      expect(rowsAfter.map(({ seq: _seq, ...rest }) => rest)).toEqual(rowsBefore);
      expect(db.pragma("user_version", { simple: true })).toBe(MIGRATIONS.length);
      expect((db.prepare("SELECT sql FROM sqlite_master WHERE name = 'tokens'").get() as { sql: string }).sql).toMatch(/WITHOUT ROWID/);
      const indexes = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'tokens' AND sql IS NOT NULL").all() as { name: string }[]).map((r) => r.name);
      expect(indexes.sort()).toEqual(["tokens_active_heads", "tokens_id", "tokens_lineage", "tokens_seq", "tokens_tenant", "tokens_tenant_workspace"]);
      // The decision path's look-up: one search of the primary key, no second table access.
      const plan = db.prepare("EXPLAIN QUERY PLAN SELECT id, controls FROM tokens WHERE hash = ?").all("x") as { detail: string }[];
      expect(plan.map((step) => step.detail)).toEqual(["SEARCH tokens USING PRIMARY KEY (hash=?)"]);
      db.close();

      // Ties on created_at keep the order the rows were inserted in (c, a, b), as rowid gave them.
      expect((await store.list({ includeRevoked: true })).map((listing) => listing.id)).toEqual(["tok_c", "tok_a", "tok_b"]);
      expect(store.findByToken(tokens.tok_b!)).toMatchObject({ id: "tok_b", keyLevel: "read_only", service: "billing" });
      expect(store.findByToken(tokens.tok_a!)).toMatchObject({ id: "tok_a", revokedAtMs: CREATED_AT + 5 });
      expect(await store.getListing("tok_c")).toMatchObject({ scopes: ["payouts:read"], useCount: 42, lastUsedAtMs: 1767225600500 });
    } finally {
      store.close();
    }
  });

  it("lists a token created after the step after the migrated ones, rotation included", async () => {
    schemaThreeDatabase();
    const store = TokenStore.open({ dataDir: dir, secret: SECRET, now: () => CREATED_AT });
    try {
      const created = await store.create({ tenant: "acme", workspace: "main", environment: "live", prefix: "sk_live_", type: "service", name: "new", role: "tenant_operator" });
      const rotated = await store.rotate("tok_b", { overlapMs: 1_000, actor: "test" });
      expect((await store.list({ includeRevoked: true })).map((listing) => listing.id)).toEqual(["tok_c", "tok_a", "tok_b", created.record.id, rotated.record.id]);
      expect((await store.lineageOf("tok_b")).map((listing) => listing.id)).toEqual(["tok_b", rotated.record.id]);
      expect(store.findByToken(created.token)?.id).toBe(created.record.id);
    } finally {
      store.close();
    }
  });
});
