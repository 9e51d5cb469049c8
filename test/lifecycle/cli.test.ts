/** The lifecycle commands of the CLI: rotate, emergency-revoke, audit list, limits, last used. */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { main } from "../../src/cli/main.js";
import { createUsageRecorder } from "../../src/service/usage-recorder.js";
import { TokenStore } from "../../src/store/token-store.js";
import { captureCliOutput } from "../support/cli-output.js";
import { EXAMPLE_POLICY_DIR } from "../support/fixtures.js";

let dir: string;
const io = captureCliOutput();
let common: string[];

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-lifecycle-cli-"));
  const policies = path.join(dir, "policies");
  fs.cpSync(EXAMPLE_POLICY_DIR, policies, { recursive: true });
  fs.writeFileSync(path.join(policies, "tokens.json"), JSON.stringify({ tokens: { rotation: { defaultOverlap: "14d", maxOverlap: "30d" }, limits: { serviceTokensPerTenant: 2 } } }));
  common = ["--policies", policies, "--data-dir", path.join(dir, "data")];
  // commands other than `tokens create` refuse a missing store, so each test starts with an empty one
  TokenStore.open({ dataDir: path.join(dir, "data") }).close();
});

afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

async function run(...args: string[]): Promise<number> {
  io.out = "";
  io.err = "";
  // Each real run is its own process; here a dry run's exit code must not leak into the next run.
  process.exitCode = undefined;
  return main(["node", "portcullis", ...args, ...common]);
}

async function createToken(name: string, ...extra: string[]): Promise<{ token: string; id: string }> {
  expect(await run("tokens", "create", "--tenant", "acme", "--workspace", "main", "--name", name, "--role", "tenant_operator", ...extra)).toBe(0);
  return { token: io.out.trim(), id: /created (tok_\w+)/.exec(io.err)![1]! };
}

describe("portcullis tokens rotate", () => {
  it("prints the successor once on stdout and the overlap end on stderr", async () => {
    const first = await createToken("ingest");
    expect(await run("tokens", "rotate", first.id, "--overlap", "7d")).toBe(0);
    const successor = io.out.trim();
    expect(successor).toMatch(/^sk_live_[0-9A-Za-z]{49}$/);
    expect(successor).not.toBe(first.token);
    expect(io.err).toMatch(new RegExp(`rotated ${first.id} to tok_\\w+; ${first.id} stops working at \\d{4}-\\d\\d-\\d\\dT`));

    expect(await run("tokens", "list", "--json")).toBe(0);
    const rows = JSON.parse(io.out);
    expect(rows).toHaveLength(2);
    expect(JSON.stringify(rows)).not.toContain(successor);
    const old = rows.find((row: { id: string }) => row.id === first.id);
    expect(old.overlapEndsAtMs - Date.now()).toBeGreaterThan(7 * 86_400_000 - 60_000);

    expect(await run("tokens", "rotate", first.id)).toBe(3);
    expect(io.err).toMatch(/^error: conflict: token `tok_\w+` was already rotated to `tok_\w+`; rotate that one instead\n$/);
  });

  it("refuses an overlap beyond the policy set's maximum", async () => {
    const first = await createToken("ingest");
    expect(await run("tokens", "rotate", first.id, "--overlap", "31d")).toBe(2);
    expect(io.err).toBe("error: overlap of 31d exceeds the policy set's maximum of 30d\n");
  });
});

describe("portcullis tokens create limits", () => {
  it("refuses past the cap with a conflict message and exit code 3", async () => {
    await createToken("one");
    await createToken("two");
    expect(await run("tokens", "create", "--tenant", "acme", "--workspace", "main", "--name", "three", "--role", "tenant_operator")).toBe(3);
    expect(io.out).toBe("");
    expect(io.err).toBe("error: conflict: tenant `acme` already has 2 active service tokens, the policy set's limit\n");
  });
});

describe("portcullis tokens emergency-revoke", () => {
  it("shows what it would hit and exits non-zero without --yes; revokes the lineage with --yes", async () => {
    const first = await createToken("leaky");
    expect(await run("tokens", "rotate", first.id)).toBe(0);
    const other = await createToken("other");

    expect(await run("tokens", "emergency-revoke", first.id)).toBe(1);
    expect(io.err).toMatch(/^would revoke 2 tokens: tok_\w+, tok_\w+\nrun again with --yes to revoke them\n$/);
    expect(await run("tokens", "list", "--json")).toBe(0);
    expect(JSON.parse(io.out).every((row: { revokedAtMs: number | null }) => row.revokedAtMs === null)).toBe(true);

    expect(await run("tokens", "emergency-revoke", first.id, "--yes", "--reason", "leaked")).toBe(0);
    expect(io.err).toMatch(/^emergency-revoked 2 tokens: /);
    expect(await run("tokens", "list", "--all", "--json")).toBe(0);
    const rows = JSON.parse(io.out) as { id: string; revokedAtMs: number | null; revokedReason: string | null }[];
    expect(rows.filter((row) => row.revokedAtMs !== null)).toHaveLength(2);
    expect(rows.find((row) => row.id === other.id)!.revokedAtMs).toBeNull();
    expect(rows.find((row) => row.id === first.id)!.revokedReason).toBe("emergency: leaked");

    expect(await run("audit", "list", "--tenant", "acme", "--json")).toBe(0);
    const events = JSON.parse(io.out) as { event: string }[];
    expect(events.filter((row) => row.event === "api_token.emergency_revoked")).toHaveLength(2);
  });

  it.each([
    // The read-only token holds no payouts:write.
    ["--scope", ["--scope", "payouts:write"], 1],
    ["--environment", ["--environment", "production"], 2],
    ["--ids", ["--ids", "IDS"], 1],
  ])("selects by %s", async (_name, args, expected) => {
    const a = await createToken("a");
    await createToken("b", "--level", "read_only");
    const resolved = args.map((arg) => (arg === "IDS" ? a.id : arg));
    expect(await run("tokens", "emergency-revoke", ...resolved)).toBe(1);
    expect(Number(/would revoke (\d+) tokens?/.exec(io.err)![1])).toBe(expected);
  });

  it("refuses no target at all, and two kinds of target at once", async () => {
    expect(await run("tokens", "emergency-revoke")).toBe(2);
    expect(io.err).toMatch(/needs a token id or at least one of --service, --environment, --scope, --ids/);
    expect(await run("tokens", "emergency-revoke", "tok_x", "--scope", "payouts:write")).toBe(2);
  });
});

describe("portcullis audit list and tokens list", () => {
  it("shows lifecycle events newest first, with actor and token id, never the token", async () => {
    const first = await createToken("audited");
    expect(await run("tokens", "rotate", first.id)).toBe(0);
    const successor = io.out.trim();
    expect(await run("tokens", "revoke", first.id)).toBe(0);
    expect(await run("audit", "list", "--limit", "10")).toBe(0);
    const lines = io.out.trim().split("\n");
    expect(lines[0]).toMatch(/^TIME\s+EVENT\s+ACTOR\s+TENANT\s+TOKEN/);
    expect(lines[1]).toMatch(/api_token\.revoked\s+cli:\S+\s+acme\s+tok_/);
    expect(io.out).toContain("api_token.rotated");
    expect(io.out).toContain("api_token.created");
    expect(io.out).not.toContain(first.token);
    expect(io.out).not.toContain(successor.slice(8, 30));
    expect(await run("audit", "list", "--limit", "0")).toBe(2);
  });

  it("shows last used and the use count written by the usage recorder", async () => {
    const first = await createToken("used");
    const store = TokenStore.open({ dataDir: path.join(dir, "data") });
    const usage = createUsageRecorder(store);
    for (let i = 0; i < 500; i++) usage.record(first.id, Date.UTC(2026, 10, 23, 10, 0, i % 60));
    await usage.close();
    store.close();
    expect(await run("tokens", "list")).toBe(0);
    expect(io.out).toMatch(/LAST USED\s+USES/);
    expect(io.out).toMatch(/2026-11-23T10:00:59Z\s+500/);
  });
});
