/**
 * The token, audit and tenant commands on a PostgreSQL store (`--store`, or
 * `PORTCULLIS_STORE_URL`), against a real database of this run.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { main } from "../../src/cli/main.js";
import { PostgresStore } from "../../src/store/postgres/postgres-store.js";
import { captureCliOutput } from "../support/cli-output.js";
import { EXAMPLE_POLICY_DIR } from "../support/fixtures.js";
import { createTestDatabase, postgresUnavailableReason, type TestDatabase } from "../support/postgres.js";

const unavailable = await postgresUnavailableReason();
const io = captureCliOutput();
const SECRET_HEX = "cd".repeat(32);

describe.skipIf(unavailable !== null)("CLI commands with --store postgres://…", () => {
  let database: TestDatabase;
  let dir: string;
  beforeAll(async () => {
    database = await createTestDatabase();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-cli-pg-"));
  });
  afterAll(async () => {
    await database?.drop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });
  afterEach(() => {
    delete process.env.PORTCULLIS_TOKEN_SECRET;
    delete process.env.PORTCULLIS_STORE_URL;
  });

  const run = (...args: string[]) => main(["node", "portcullis", ...args]);

  it("refuses without the shared secret, and makes up none", async () => {
    expect(await run("tokens", "list", "--store", database.url, "--data-dir", dir)).toBe(1);
    expect(io.err).toMatch(/a postgresql store needs the token secret every replica shares: set PORTCULLIS_TOKEN_SECRET/);
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it("creates, lists, revokes, suspends and audits in PostgreSQL, and nothing in the data folder", async () => {
    process.env.PORTCULLIS_TOKEN_SECRET = SECRET_HEX;
    const common = ["--policies", EXAMPLE_POLICY_DIR, "--data-dir", dir, "--store", database.url];
    expect(await run("tokens", "create", "--tenant", "acme", "--workspace", "main", "--name", "ingest", "--role", "tenant_operator", "--level", "read_only", "--json", ...common)).toBe(0);
    const { record } = JSON.parse(io.out) as { token: string; record: { id: string } };
    io.out = "";
    // The URL may come from the environment instead of the flag.
    process.env.PORTCULLIS_STORE_URL = database.url;
    expect(await run("tokens", "list", "--json", "--data-dir", dir)).toBe(0);
    expect((JSON.parse(io.out) as { id: string }[]).map((row) => row.id)).toEqual([record.id]);
    expect(await run("tokens", "revoke", record.id, ...common)).toBe(0);
    expect(await run("tenants", "suspend", "globex", ...common)).toBe(0);
    io.out = "";
    expect(await run("audit", "list", "--json", ...common)).toBe(0);
    const events = (JSON.parse(io.out) as { event: string }[]).map((row) => row.event);
    expect(events).toEqual(expect.arrayContaining(["api_token.created", "api_token.revoked", "tenant.suspended"]));
    expect(fs.readdirSync(dir)).toEqual([]);

    const store = await PostgresStore.open({ url: database.url });
    try {
      expect((await store.tokens.byId(record.id))?.revokedAtMs).not.toBeNull();
      expect((await store.tenantState.listSuspendedTenants()).map((row) => row.tenant)).toEqual(["globex"]);
    } finally {
      await store.close();
    }
  });

  it("lists security events stored in PostgreSQL with audit list --event --since", async () => {
    process.env.PORTCULLIS_TOKEN_SECRET = SECRET_HEX;
    const nowMs = Date.now();
    const store = await PostgresStore.open({ url: database.url });
    try {
      await store.securityEvents.record([
        { minuteMs: nowMs - (nowMs % 60_000), event: "auth.api_token_mtls_required", tokenId: "tok_pg", tenant: "acme", count: 7, lastAtMs: nowMs },
        { minuteMs: 0, event: "auth.api_token_mtls_required", tokenId: "tok_pg", tenant: "acme", count: 3, lastAtMs: 1_000 },
      ]);
    } finally {
      await store.close();
    }
    io.out = "";
    const common = ["--policies", EXAMPLE_POLICY_DIR, "--data-dir", dir, "--store", database.url];
    expect(await run("audit", "list", "--json", "--event", "auth.api_token_mtls_required", "--since", "1h", ...common)).toBe(0);
    expect(JSON.parse(io.out)).toEqual([expect.objectContaining({ kind: "security", tokenId: "tok_pg", count: 7 })]);
  });

  it("refuses a store url that is not postgres://", async () => {
    expect(await run("tokens", "list", "--store", "mysql://localhost/db", "--data-dir", dir)).toBe(2);
    expect(io.err).toMatch(/invalid --store \(PORTCULLIS_STORE_URL\): expected a postgres:\/\/ url/);
  });
});
