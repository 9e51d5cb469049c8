/**
 * `portcullis store copy`: an embedded SQLite store copied into a real
 * PostgreSQL database reads back the same through the PostgreSQL store, and
 * its tokens verify there with the same secret.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { main } from "../../src/cli/main.js";
import { PostgresStore } from "../../src/store/postgres/postgres-store.js";
import { SqliteStore } from "../../src/store/sqlite/sqlite-store.js";
import type { SecurityEventCount } from "../../src/store/store-interfaces.js";
import { TokenStore } from "../../src/store/token-store.js";
import { hashToken } from "../../src/token/hash.js";
import { captureCliOutput } from "../support/cli-output.js";
import { createTestDatabase, postgresUnavailableReason, type TestDatabase } from "../support/postgres.js";

const unavailable = await postgresUnavailableReason();
const io = captureCliOutput();

describe.skipIf(unavailable !== null)("portcullis store copy", () => {
  let dir: string;
  let database: TestDatabase;
  const plaintexts: string[] = [];
  let sqlite: {
    listing: Awaited<ReturnType<TokenStore["list"]>>;
    audit: Awaited<ReturnType<TokenStore["listAudit"]>>;
    tenants: Awaited<ReturnType<TokenStore["listSuspendedTenants"]>>;
    workspaces: Awaited<ReturnType<TokenStore["listRestrictedWorkspaces"]>>;
    securityEvents: SecurityEventCount[];
  };

  beforeAll(async () => {
    database = await createTestDatabase();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-copy-"));
    const store = TokenStore.open({ dataDir: dir });
    const base = { tenant: "acme", workspace: "main", environment: "live", prefix: "sk_live_", name: "sync" } as const;
    const service = await store.create({ ...base, type: "service", role: "billing_reader", service: "billing", controls: { ipAllowlist: ["10.0.0.0/8"] } });
    const user = await store.create({ ...base, type: "user", creator: "ana", creatorRole: "admin", scopes: ["invoices:read"], expiresAtMs: Date.now() + 86_400_000 });
    const rotated = await store.rotate(service.record.id, { overlapMs: 60_000, actor: "ops" });
    const revoked = await store.create({ ...base, tenant: "globex", type: "service", role: "billing_reader" });
    await store.revoke(revoked.record.id, "ops", "leaked");
    await store.recordUse(new Map([[user.record.id, { lastUsedAtMs: 1_700_000_000_123, count: 7 }]]));
    await store.suspendTenant("globex", { actor: "ops", reason: "unpaid" });
    await store.restrictWorkspace("acme", "staging", { actor: "ops", reason: "incident", mode: "all" });
    plaintexts.push(service.token, user.token, rotated.token, revoked.token);
    sqlite = {
      listing: await store.list({ includeRevoked: true }),
      audit: await store.listAudit({ limit: 1_000 }),
      tenants: await store.listSuspendedTenants(),
      workspaces: await store.listRestrictedWorkspaces(),
      securityEvents: [],
    };
    store.close();
    const embedded = SqliteStore.open({ dataDir: dir });
    await embedded.securityEvents.record([
      { minuteMs: 1_700_000_040_000, event: "auth.api_token_ip_allowlist_blocked", tokenId: service.record.id, tenant: "acme", count: 50, lastAtMs: 1_700_000_041_000 },
      { minuteMs: 1_700_000_040_000, event: "auth.api_token_unauthenticated", tokenId: null, tenant: null, count: 3, lastAtMs: 1_700_000_040_500 },
    ]);
    sqlite.securityEvents = await embedded.securityEvents.list({ limit: 1_000 });
    await embedded.close();
  });

  afterAll(async () => {
    await database?.drop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  afterEach(() => {
    delete process.env.PORTCULLIS_TOKEN_SECRET;
  });

  it("copies tokens, lineages, use stamps, the audit trail and tenant state, which read back the same", async () => {
    expect(await main(["node", "portcullis", "store", "copy", "--from", dir, "--to", database.url])).toBe(0);
    expect(io.err).toContain("copied 4 tokens (3 lineages, 1 with use stamps), ");
    expect(io.err).toContain("2 security event rows, 1 suspended tenants and 1 restricted workspaces");
    expect(io.err).toMatch(/secret\.key: give every replica its contents as PORTCULLIS_TOKEN_SECRET/);

    const secret = Buffer.from(fs.readFileSync(path.join(dir, "secret.key"), "utf8").trim(), "hex");
    const store = await PostgresStore.open({ url: database.url, secret });
    try {
      expect(await store.tokens.list({ includeRevoked: true })).toEqual(sqlite.listing);
      expect(await store.audit.list({ limit: 1_000 })).toEqual(sqlite.audit);
      expect(await store.tenantState.listSuspendedTenants()).toEqual(sqlite.tenants);
      expect(await store.tenantState.listRestrictedWorkspaces({})).toEqual(sqlite.workspaces);
      expect(sqlite.securityEvents).toHaveLength(2);
      expect(await store.securityEvents.list({ limit: 1_000 })).toEqual(sqlite.securityEvents);
      for (const plaintext of plaintexts) {
        const record = await store.tokens.findByHash(hashToken(secret, plaintext));
        expect(sqlite.listing.map((listing) => listing.id)).toContain(record?.id);
      }
      // New rows continue after the copied ones instead of colliding with their ids.
      await store.transaction((tx) => tx.audit.append({ atMs: 1, event: "tenant.suspended", actor: "ops", tokenId: null, tenant: "x", data: {} }));
      const [newest] = await store.audit.list({ limit: 1 });
      expect(newest!.id).toBe(Math.max(...sqlite.audit.map((row) => row.id)) + 1);
    } finally {
      await store.close();
    }
  });

  it("refuses to copy into a database that is not empty, and changes nothing there", async () => {
    expect(await main(["node", "portcullis", "store", "copy", "--from", dir, "--to", database.url])).toBe(3);
    expect(io.err).toMatch(/error: conflict: the target `postgres:\/\/.*` is not empty \(4 tokens, \d+ audit events, 1 suspended tenants, 1 restricted workspaces\); store copy only fills an empty database/);
  });

  it("refuses a store whose secret would not be copied along, rather than inventing a new one", async () => {
    const bare = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-copy-bare-"));
    try {
      fs.copyFileSync(path.join(dir, "portcullis.db"), path.join(bare, "portcullis.db"));
      const other = await createTestDatabase();
      try {
        expect(await main(["node", "portcullis", "store", "copy", "--from", bare, "--to", other.url])).toBe(1);
        expect(io.err).toMatch(/no `secret\.key` in .* and `PORTCULLIS_TOKEN_SECRET` is not set/);
        expect(fs.existsSync(path.join(bare, "secret.key"))).toBe(false);
      } finally {
        await other.drop();
      }
    } finally {
      fs.rmSync(bare, { recursive: true, force: true });
    }
  });

  it("refuses a missing store and a target that is not a postgres url", async () => {
    expect(await main(["node", "portcullis", "store", "copy", "--from", path.join(dir, "nope"), "--to", database.url])).toBe(1);
    expect(io.err).toMatch(/no token store at/);
    expect(await main(["node", "portcullis", "store", "copy", "--from", dir, "--to", "/var/lib/portcullis"])).toBe(1);
    expect(io.err).toMatch(/--to must be a postgres:\/\/ url/);
  });
});
