/**
 * `portcullis webhooks deliveries` on a SQLite data folder and on a
 * PostgreSQL store URL: the CLI's own lifecycle writes enqueue events, a
 * fan-out makes deliveries, and the command lists them with its filters.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { main } from "../../src/cli/main.js";
import { PostgresStore } from "../../src/store/postgres/postgres-store.js";
import { SqliteStore } from "../../src/store/sqlite/sqlite-store.js";
import type { Store } from "../../src/store/store-interfaces.js";
import { selectWebhookEvents } from "../../src/webhooks/webhook-events.js";
import { captureCliOutput } from "../support/cli-output.js";
import { EXAMPLE_POLICY_DIR } from "../support/fixtures.js";
import { createTestDatabase, postgresUnavailableReason, type TestDatabase } from "../support/postgres.js";

const unavailable = await postgresUnavailableReason();
const io = captureCliOutput();
const run = (...args: string[]) => main(["node", "portcullis", ...args]);
const dirs: string[] = [];
let database: TestDatabase | undefined;

afterEach(() => {
  delete process.env.PORTCULLIS_TOKEN_SECRET;
});
afterAll(async () => {
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
  await database?.drop();
});

interface Target {
  readonly name: string;
  setUp(): Promise<{ flags: string[]; open(): Promise<Store> }>;
}

const targets: Target[] = [
  {
    name: "SQLite",
    async setUp() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-cli-webhooks-"));
      dirs.push(dir);
      return { flags: ["--policies", EXAMPLE_POLICY_DIR, "--data-dir", dir], open: async () => SqliteStore.open({ dataDir: dir }) };
    },
  },
];
if (unavailable === null) {
  targets.push({
    name: "PostgreSQL",
    async setUp() {
      database = await createTestDatabase();
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-cli-webhooks-pg-"));
      dirs.push(dir);
      const url = database.url;
      return { flags: ["--policies", EXAMPLE_POLICY_DIR, "--data-dir", dir, "--store", url], open: () => PostgresStore.open({ url }) };
    },
  });
}

describe.each(targets)("webhooks deliveries on $name", (target) => {
  it("lists deliveries newest first, filtered by endpoint, status and limit", async () => {
    process.env.PORTCULLIS_TOKEN_SECRET = "ef".repeat(32);
    const { flags, open } = await target.setUp();
    expect(await run("tokens", "create", "--tenant", "acme", "--workspace", "main", "--name", "ingest", "--role", "tenant_operator", "--json", ...flags)).toBe(0);
    const { record } = JSON.parse(io.out) as { record: { id: string } };
    expect(await run("tokens", "revoke", record.id, ...flags)).toBe(0);
    // what a server does with the events the CLI enqueued: fan out, try one and fail
    const store = await open();
    try {
      const routes = [
        { id: "siem", events: selectWebhookEvents(["*"]) },
        { id: "ops", events: selectWebhookEvents(["api_token.revoked"]) },
      ];
      expect(await store.webhooks.fanOut(routes, { nowMs: Date.now(), capacity: 100, limit: 100 })).toMatchObject({ events: 2, deliveries: 3 });
      const [claimed] = await store.webhooks.claim({ endpointIds: ["ops"], nowMs: Date.now(), leaseUntilMs: Date.now() + 1_000, leaseId: "l", limit: 1 });
      await store.webhooks.complete(claimed!.eventId, "ops", "l", { kind: "failed", atMs: Date.now(), error: "HTTP 410 (gave up after 1 attempts)" });
    } finally {
      await store.close();
    }

    io.out = "";
    expect(await run("webhooks", "deliveries", ...flags)).toBe(0);
    const lines = io.out.trim().split("\n");
    expect(lines[0]).toMatch(/^CREATED\s+ENDPOINT\s+EVENT\s+STATUS\s+ATTEMPTS\s+NEXT ATTEMPT\s+DELIVERED\s+LAST ERROR\s+EVENT ID$/);
    expect(lines).toHaveLength(4);

    io.out = "";
    expect(await run("webhooks", "deliveries", "--status", "failed", "--json", ...flags)).toBe(0);
    const failed = JSON.parse(io.out) as { endpointId: string; type: string; status: string; attempts: number; lastError: string; body: string }[];
    expect(failed).toMatchObject([{ endpointId: "ops", type: "api_token.revoked", status: "failed", attempts: 1, lastError: "HTTP 410 (gave up after 1 attempts)" }]);
    expect(JSON.parse(failed[0]!.body)).toMatchObject({ type: "api_token.revoked", tokenId: record.id });

    io.out = "";
    expect(await run("webhooks", "deliveries", "--endpoint", "siem", "--status", "pending", "--json", ...flags)).toBe(0);
    expect((JSON.parse(io.out) as { type: string }[]).map((row) => row.type).sort()).toEqual(["api_token.created", "api_token.revoked"]);

    io.out = "";
    expect(await run("webhooks", "deliveries", "--limit", "1", "--json", ...flags)).toBe(0);
    expect(JSON.parse(io.out)).toHaveLength(1);

    expect(await run("webhooks", "deliveries", "--status", "lost", ...flags)).toBe(2);
    expect(io.err).toMatch(/invalid --status `lost`: expected pending, delivered or failed/);
    expect(await run("webhooks", "deliveries", "--limit", "0", ...flags)).toBe(2);
  });
});
