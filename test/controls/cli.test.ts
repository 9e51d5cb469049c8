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
let common: string[];

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-cli-controls-"));
  common = ["--policies", EXAMPLE_POLICY_DIR, "--data-dir", path.join(dir, "data")];
  // commands other than `tokens create` refuse a missing store, so each test starts with an empty one
  TokenStore.open({ dataDir: path.join(dir, "data") }).close();
});

afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

const run = (...args: string[]) => main(["node", "portcullis", ...args]);
const create = (...extra: string[]) => run("tokens", "create", "--tenant", "acme", "--workspace", "main", "--name", "robot", "--role", "tenant_operator", ...common, ...extra);

async function listJson(...args: string[]): Promise<any[]> {
  io.out = "";
  expect(await run(...args, "--json", ...common)).toBe(0);
  return JSON.parse(io.out);
}

describe("token controls from the cli", () => {
  it("creates a token with a service label and controls, then replaces and clears them", async () => {
    expect(await create("--service", "payout-robot", "--ip-allow", "198.51.100.0/24", "2001:db8::/48", "--mtls-ca", "0F".repeat(32), "--controls", '{"conditionalAccess":{"readOnly":true}}')).toBe(0);
    const id = /created (tok_\w+)/.exec(io.err)![1]!;
    let [row] = await listJson("tokens", "list");
    expect(row).toMatchObject({
      id,
      service: "payout-robot",
      controls: { ipAllowlist: ["198.51.100.0/24", "2001:db8::/48"], mtls: { caFingerprints: ["0F".repeat(32)] }, conditionalAccess: { readOnly: true } },
    });

    expect(await run("tokens", "update", id, "--ip-allow", "203.0.113.7", ...common)).toBe(0);
    expect(io.err).toContain(`updated controls of ${id}`);
    [row] = await listJson("tokens", "list");
    expect(row.controls).toEqual({ ipAllowlist: ["203.0.113.7"] });

    io.out = "";
    expect(await run("tokens", "list", ...common)).toBe(0);
    expect(io.out).toMatch(/payout-robot\s+ipAllowlist/);

    expect(await run("tokens", "update", id, "--clear", ...common)).toBe(0);
    [row] = await listJson("tokens", "list");
    expect(row.controls).toEqual({});
  });

  it("sets and replaces a quota with --quota-per-minute and --quota-per-day", async () => {
    expect(await create("--quota-per-minute", "60", "--quota-per-day", "10000")).toBe(0);
    const id = /created (tok_\w+)/.exec(io.err)![1]!;
    let [row] = await listJson("tokens", "list");
    expect(row.controls).toEqual({ quota: { limitPerMinute: 60, limitPerDay: 10000 } });
    expect(await run("tokens", "update", id, "--quota-per-day", "500", ...common)).toBe(0);
    [row] = await listJson("tokens", "list");
    expect(row.controls).toEqual({ quota: { limitPerDay: 500 } });
  });

  it.each([
    [["--quota-per-minute", "0"], "invalid --quota-per-minute `0`: expected a whole number of requests, at least 1"],
    [["--quota-per-day", "99999999999"], "invalid --quota-per-day"],
    [["--ip-allow", "198.51.100.1/24"], "controls /ipAllowlist/0: cidr `198.51.100.1/24` has host bits set (did you mean `198.51.100.0/24`?)"],
    [["--mtls-fingerprint", "abc"], "controls /mtls/fingerprints/0: `abc` is not a sha-256 fingerprint"],
    [["--controls", '{"conditionalAccess":{"environments":["productoin"]}}'], "unknown environment `productoin` (did you mean `production`?)"],
    [["--controls", "{nope"], "invalid --controls: not json"],
    [["--controls", '{"ipAllowlist":["10.0.0.0/8"]}', "--ip-allow", "10.0.0.0/8"], "`ipAllowlist` is set both by --controls and by a flag"],
    [["--service", "a b"], "service label `a b`"],
  ])("refuses %j at create with one clear message", async (extra, message) => {
    expect(await create(...extra)).toBe(1);
    expect(io.err).toContain(message);
    expect(await listJson("tokens", "list")).toEqual([]);
  });

  it("refuses an update with nothing to update", async () => {
    expect(await run("tokens", "update", "tok_x", ...common)).toBe(2);
    expect(io.err).toContain("nothing to update");
  });
});

describe("portcullis tenants and workspaces", () => {
  it("suspends, lists and resumes a tenant", async () => {
    expect(await run("tenants", "suspend", "acme", "--reason", "unpaid", ...common)).toBe(0);
    expect(io.err).toContain("suspended tenant acme");
    expect(await listJson("tenants", "list")).toMatchObject([{ tenant: "acme", reason: "unpaid", suspendedBy: expect.stringMatching(/^cli:/) }]);
    io.out = "";
    expect(await run("tenants", "list", ...common)).toBe(0);
    expect(io.out).toMatch(/^TENANT\s+SUSPENDED\s+BY\s+REASON\nacme\s/);
    expect(await run("tenants", "resume", "acme", ...common)).toBe(0);
    expect(await listJson("tenants", "list")).toEqual([]);
    expect(await run("tenants", "resume", "acme", ...common)).toBe(0);
    expect(io.err).toContain("tenant acme was not suspended");
  });

  it("restricts, lists and unrestricts a workspace", async () => {
    expect(await run("workspaces", "restrict", "acme", "main", "--reason", "incident 7", ...common)).toBe(0);
    expect(await run("workspaces", "restrict", "globex", "main", ...common)).toBe(0);
    expect(await listJson("workspaces", "list", "--tenant", "acme")).toMatchObject([{ tenant: "acme", workspace: "main", reason: "incident 7" }]);
    expect(await run("workspaces", "unrestrict", "acme", "main", ...common)).toBe(0);
    expect((await listJson("workspaces", "list")).map((w) => w.tenant)).toEqual(["globex"]);
  });

  it("restricts with each mode (writes by default), lists the mode and audits it", async () => {
    expect(await run("workspaces", "restrict", "acme", "main", "--reason", "incident 7", ...common)).toBe(0);
    expect(io.err).toContain("restricted workspace acme/main (mode writes)");
    expect(await run("workspaces", "restrict", "acme", "vault", "--mode", "all", "--reason", "frozen for audit", ...common)).toBe(0);
    expect(io.err).toContain("restricted workspace acme/vault (mode all)");
    expect(await run("workspaces", "restrict", "acme", "ops", "--mode", "writes", ...common)).toBe(0);
    expect(await listJson("workspaces", "list")).toMatchObject([
      { workspace: "main", mode: "writes", reason: "incident 7" },
      { workspace: "ops", mode: "writes", reason: null },
      { workspace: "vault", mode: "all", reason: "frozen for audit" },
    ]);
    io.out = "";
    expect(await run("workspaces", "list", ...common)).toBe(0);
    expect(io.out).toMatch(/^TENANT\s+WORKSPACE\s+MODE\s+RESTRICTED\s+BY\s+REASON\n/);
    expect(io.out).toMatch(/\nacme\s+vault\s+all\s+\S+\s+cli:\S+\s+frozen for audit\n/);
    // the other mode on a restricted workspace changes it
    expect(await run("workspaces", "restrict", "acme", "main", "--mode", "all", ...common)).toBe(0);
    expect((await listJson("workspaces", "list")).find((w) => w.workspace === "main")).toMatchObject({ mode: "all" });
    const store = TokenStore.open({ dataDir: path.join(dir, "data") });
    try {
      expect((await store.listAudit({ tenant: "acme", limit: 1 }))[0]).toMatchObject({ event: "workspace.restricted", data: { workspace: "main", mode: "all", previousMode: "writes" } });
    } finally {
      store.close();
    }
  });

  it.each([["frozen"], ["ALL"], [""]])("refuses the mode `%s` with a clear error and exit code 2, restricting nothing", async (mode) => {
    expect(await run("workspaces", "restrict", "acme", "main", "--mode", mode, ...common)).toBe(2);
    expect(io.err).toContain(`argument '${mode}' is invalid. Allowed choices are writes, all.`);
    expect(await listJson("workspaces", "list")).toEqual([]);
  });

  it("refuses a tenant name that is not an identifier", async () => {
    expect(await run("tenants", "suspend", "a/b", ...common)).toBe(1);
    expect(io.err).toContain("tenant `a/b` must be");
  });
});
