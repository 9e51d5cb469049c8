import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { main } from "../../src/cli/main.js";
import { TokenStore } from "../../src/store/token-store.js";
import { captureCliOutput } from "../support/cli-output.js";
import { EXAMPLE_POLICY_DIR } from "../support/fixtures.js";

let dir: string;
const io = captureCliOutput();

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-cli-"));
  // commands other than `tokens create` refuse a missing store, so each test starts with an empty one
  TokenStore.open({ dataDir: path.join(dir, "data") }).close();
});

afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

function run(...args: string[]): Promise<number> {
  return main(["node", "portcullis", ...args]);
}

function writePolicy(name: string, files: Record<string, unknown>): string {
  const folder = path.join(dir, name);
  fs.mkdirSync(folder);
  for (const [file, content] of Object.entries(files)) fs.writeFileSync(path.join(folder, file), typeof content === "string" ? content : JSON.stringify(content, null, 2));
  return folder;
}

describe("portcullis tokens", () => {
  it("creates a token, prints it once, lists it without the secret, and revokes it", async () => {
    const data = path.join(dir, "data");
    const common = ["--policies", EXAMPLE_POLICY_DIR, "--data-dir", data];
    expect(await run("tokens", "create", "--tenant", "acme", "--workspace", "main", "--name", "ingest", "--role", "tenant_operator", "--level", "read_only", ...common)).toBe(0);
    const token = io.out.trim();
    expect(token).toMatch(/^sk_live_[0-9A-Za-z]{49}$/);
    const id = /created (tok_\w+)/.exec(io.err)![1]!;

    io.out = "";
    expect(await run("tokens", "list", ...common)).toBe(0);
    expect(io.out).toContain(id);
    expect(io.out).toContain("read_only");
    expect(io.out).not.toContain(token);
    expect(io.out).not.toContain(token.slice(8, 30));

    io.out = "";
    expect(await run("tokens", "revoke", id, ...common)).toBe(0);
    expect(await run("tokens", "list", "--all", "--json", ...common)).toBe(0);
    const rows = JSON.parse(io.out.slice(io.out.indexOf("[")));
    expect(rows.find((row: { id: string }) => row.id === id).revokedAtMs).toBeTypeOf("number");
  });

  it.each([
    [["--role", "tenant_operater"], "unknown role `tenant_operater` (did you mean `tenant_operator`?)"],
    [["--scope", "payouts:wirte"], "unknown scope `payouts:wirte` (did you mean `payouts:write`?)"],
    [["--role", "tenant_admin", "--environment", "staging"], "unknown environment `staging`"],
    [["--role", "tenant_admin", "--expires-in", "soon"], "invalid --expires-in `soon`"],
    [["--role", "tenant_admin", "--type", "user"], "a user token needs its creator"],
    [[], "a token needs a role, scopes, or both"],
  ])("refuses %j with one clear message", async (extra, message) => {
    const code = await run("tokens", "create", "--tenant", "acme", "--workspace", "main", "--name", "x", "--policies", EXAMPLE_POLICY_DIR, "--data-dir", path.join(dir, "d"), ...extra);
    expect(code).not.toBe(0);
    expect(io.err).toContain(message);
  });

  it("refuses to revoke an unknown id", async () => {
    expect(await run("tokens", "revoke", "tok_nope", "--data-dir", path.join(dir, "data"))).toBe(1);
    expect(io.err).toMatch(/tok_nope/);
  });
});

describe("commands that only read, or change what exists, refuse a missing store", () => {
  const mistyped = () => path.join(dir, "dta");
  it.each([
    ["tokens list", ["tokens", "list"]],
    ["tokens list --json", ["tokens", "list", "--json"]],
    ["audit list", ["audit", "list"]],
    ["tokens revoke", ["tokens", "revoke", "tok_x"]],
    ["tokens rotate", ["tokens", "rotate", "tok_x"]],
    ["tokens update", ["tokens", "update", "tok_x", "--clear"]],
    ["tenants list", ["tenants", "list"]],
    ["tenants suspend", ["tenants", "suspend", "acme"]],
    ["workspaces list", ["workspaces", "list"]],
  ])("%s names the folder, exits 1 and creates nothing", async (_name, args) => {
    io.err = "";
    expect(await run(...args, "--policies", EXAMPLE_POLICY_DIR, "--data-dir", mistyped())).toBe(1);
    expect(io.err).toContain(`error: no token store at \`${mistyped()}\``);
    expect(fs.existsSync(mistyped())).toBe(false);
  });

  it("tokens create may create a store, and announces the new database and secret", async () => {
    const fresh = path.join(dir, "fresh");
    io.err = "";
    expect(await run("tokens", "create", "--tenant", "acme", "--workspace", "main", "--name", "first", "--role", "tenant_operator", "--policies", EXAMPLE_POLICY_DIR, "--data-dir", fresh)).toBe(0);
    expect(io.err).toContain(`created a new token store: ${path.join(fresh, "portcullis.db")}`);
    expect(io.err).toContain(`created a new server secret: ${path.join(fresh, "secret.key")}`);
    io.err = "";
    expect(await run("tokens", "create", "--tenant", "acme", "--workspace", "main", "--name", "second", "--role", "tenant_operator", "--policies", EXAMPLE_POLICY_DIR, "--data-dir", fresh)).toBe(0);
    expect(io.err).not.toContain("created a new");
  });
});

describe("portcullis serve refuses bad input before binding", () => {
  it("names the file, pointer and line of a malformed policy file", async () => {
    const folder = writePolicy("bad-json", { "policy-set.json": '{\n  "policySet": {\n    "name": "x",,\n  }\n}' });
    expect(await run("serve", "--policies", folder, "--data-dir", path.join(dir, "d"), "--grpc-port", "0", "--http-port", "0")).toBe(1);
    expect(io.err).toContain("the policy set is invalid");
    expect(io.err).toMatch(/policy-set\.json:3:\d+/);
  });

  it("names an unknown scope with a suggestion", async () => {
    const files = Object.fromEntries(fs.readdirSync(EXAMPLE_POLICY_DIR).filter((f) => f.endsWith(".json")).map((f) => [f, fs.readFileSync(path.join(EXAMPLE_POLICY_DIR, f), "utf8")]));
    const roles = JSON.parse(files["roles.json"]!);
    roles.roles[1].scopes.push("ledgr:read");
    files["roles.json"] = JSON.stringify(roles, null, 2);
    const folder = writePolicy("unknown-scope", files);
    expect(await run("serve", "--policies", folder, "--data-dir", path.join(dir, "d"), "--grpc-port", "0", "--http-port", "0")).toBe(1);
    expect(io.err).toMatch(/roles\.json:\d+:\d+ \/roles\/1\/scopes\/\d+: .*`ledgr:read`.*did you mean `ledger:read`/);
  });

  it("refuses a missing policies folder", async () => {
    expect(await run("serve", "--policies", path.join(dir, "nope"), "--data-dir", path.join(dir, "d"), "--grpc-port", "0", "--http-port", "0")).toBe(1);
    expect(io.err).toContain("nope");
    expect(io.err.trim().split("\n").length).toBeLessThanOrEqual(2);
  });

  it("refuses a data folder that cannot be created", async () => {
    const file = path.join(dir, "a-file");
    fs.writeFileSync(file, "");
    expect(await run("serve", "--policies", EXAMPLE_POLICY_DIR, "--data-dir", path.join(file, "data"), "--grpc-port", "0", "--http-port", "0")).toBe(1);
    expect(io.err).toContain(path.join(file, "data"));
    expect(io.err.trim().split("\n")).toHaveLength(1);
  });

  it("refuses a port that is not a port", async () => {
    expect(await run("serve", "--grpc-port", "99999")).toBe(2);
    expect(io.err).toContain("invalid --grpc-port (PORTCULLIS_GRPC_PORT) `99999`");
  });
});

describe("portcullis policy validate", () => {
  it("accepts the bundled policy set", async () => {
    expect(await run("policy", "validate", EXAMPLE_POLICY_DIR)).toBe(0);
    expect(io.out).toMatch(/is valid: 5 files/);
  });
});
