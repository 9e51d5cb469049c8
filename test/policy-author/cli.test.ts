/**
 * `portcullis policy test / explain / diff / schema`, run in-process as a user
 * would run them: exit codes, output, and files left untouched.
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
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
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-author-"));
});

afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

const run = (...args: string[]) => main(["node", "portcullis", ...args]);

/** A copy of the bundled policies (without their tests) plus `tests` written as test files. */
function policyCopy(tests: Record<string, unknown> = {}): string {
  const folder = path.join(dir, "policies");
  fs.mkdirSync(path.join(folder, "tests"), { recursive: true });
  for (const name of fs.readdirSync(EXAMPLE_POLICY_DIR)) {
    if (name.endsWith(".json")) fs.copyFileSync(path.join(EXAMPLE_POLICY_DIR, name), path.join(folder, name));
  }
  for (const [name, content] of Object.entries(tests)) fs.writeFileSync(path.join(folder, "tests", name), JSON.stringify(content, null, 2));
  return folder;
}

const NOW = "2026-03-03T10:00:00Z";
const operator = { role: "tenant_operator", workspace: "main" };

describe("policy test", () => {
  it("passes the bundled suite with exit 0 and a summary line", async () => {
    expect(await run("policy", "test", EXAMPLE_POLICY_DIR)).toBe(0);
    expect(io.out).toMatch(/^\d+ passed, 0 failed, 0 skipped\n$/);
  });

  it("reports a failing case with expected vs got and the explanation, exit 1", async () => {
    const folder = policyCopy({
      "wrong.test.json": {
        now: NOW,
        fixtures: { tokens: { operator } },
        cases: [
          { name: "operator reads payouts", token: "operator", request: { method: "GET", path: "/api/payouts" }, expect: { code: "ok" } },
          { name: "operator manages tokens", token: "operator", request: { method: "POST", path: "/api/settings/api-tokens/rate-limits" }, expect: { code: "ok" } },
        ],
      },
    });
    expect(await run("policy", "test", folder)).toBe(1);
    expect(io.out).toContain("FAIL tests/wrong.test.json > operator manages tokens\n  expected code `ok`, got `scope_denied`\n");
    expect(io.out).toContain("    deny    scope -> scope_denied\n");
    expect(io.out).toContain("rule `operation:POST /api/settings/api-tokens/rate-limits` needs `api_tokens:write`");
    expect(io.out).not.toContain("PASS");
    expect(io.out.trimEnd().split("\n").at(-1)).toBe("1 passed, 1 failed, 0 skipped");
  });

  it("writes JUnit XML with a failure element, and --run keeps only matching cases", async () => {
    const folder = policyCopy({
      "wrong.test.json": {
        now: NOW,
        fixtures: { tokens: { operator } },
        cases: [
          { name: "reads <payouts>", token: "operator", request: { method: "GET", path: "/api/payouts" }, expect: { code: "ok" } },
          { name: "writes tokens", token: "operator", request: { method: "POST", path: "/api/settings/api-tokens/rate-limits" }, expect: { code: "ok" } },
        ],
      },
    });
    expect(await run("policy", "test", folder, "--format", "junit")).toBe(1);
    expect(io.out).toContain('<testsuite name="tests/wrong.test.json" tests="2" failures="1" errors="0">');
    expect(io.out).toContain('name="reads &lt;payouts&gt;"');
    expect(io.out).toContain('<failure message="expected code `ok`, got `scope_denied`">');
    io.out = "";
    expect(await run("policy", "test", folder, "--run", "^reads")).toBe(0);
    expect(io.out).toBe("1 passed, 0 failed, 1 skipped\n");
  });

  it("refuses a folder without test files, and an invalid --run pattern, with exit 2", async () => {
    const folder = policyCopy({});
    expect(await run("policy", "test", folder)).toBe(2);
    expect(io.err).toContain(`no test files found in \`${path.join(folder, "tests")}\``);
    expect(await run("policy", "test", EXAMPLE_POLICY_DIR, "--run", "(")).toBe(2);
    expect(io.err).toContain("invalid --run `(`: expected a regular expression");
  });

  it.each([
    {
      name: "an unknown fixture, with a suggestion",
      content: { now: NOW, fixtures: { tokens: { operator } }, cases: [{ name: "x", token: "operatr", request: { method: "GET", path: "/" }, expect: { code: "ok" } }] },
      message: "INVALID tests/bad.test.json /cases/0/token: unknown token fixture `operatr` (did you mean `operator`?)",
    },
    {
      name: "a schema violation",
      content: { now: NOW, cases: [{ name: "x", request: { method: "GET", path: "/" }, expect: { code: "fine" } }] },
      message: "INVALID tests/bad.test.json /cases/0/expect/code: must be equal to one of the allowed values",
    },
    {
      name: "an unknown role, with a suggestion",
      content: { now: NOW, cases: [{ name: "x", token: { role: "tenant_operater" }, request: { method: "GET", path: "/" }, expect: { code: "ok" } }] },
      message: "INVALID tests/bad.test.json /cases/0/token/role: unknown role `tenant_operater` (did you mean `tenant_operator`?)",
    },
    {
      name: "a case without a time",
      content: { cases: [{ name: "x", request: { method: "GET", path: "/" }, expect: { code: "ok" } }] },
      message: "INVALID tests/bad.test.json /cases/0: case needs a `now` (or the file a default `now`)",
    },
    { name: "a file that is not JSON", content: "{", message: "INVALID tests/bad.test.json: cannot read test file:" },
    {
      name: "token controls that do not compile",
      content: { now: NOW, cases: [{ name: "x", token: { role: "tenant_operator", controls: { conditionalAccess: { timeZone: "Mars/Olympus" } } }, request: { method: "GET", path: "/" }, expect: { code: "ok" } }] },
      message: "INVALID tests/bad.test.json /cases/0/token/controls/conditionalAccess/timeZone: unknown time zone `Mars/Olympus`",
    },
  ])("refuses $name with exit 2", async ({ content, message }) => {
    const folder = policyCopy({});
    fs.writeFileSync(path.join(folder, "tests", "bad.test.json"), typeof content === "string" ? content : JSON.stringify(content));
    expect(await run("policy", "test", folder)).toBe(2);
    expect(io.out).toContain(message);
    expect(io.out).toContain("1 invalid test file");
  });
});

describe("policy explain", () => {
  it("prints every stage in precedence order with its verdict and why", async () => {
    const token = JSON.stringify({ role: "tenant_operator", tenant: "acme", workspace: "treasury" });
    const code = await run("policy", "explain", EXAMPLE_POLICY_DIR, "--token", token, "--path", "/api/payouts", "--source-ip", "198.51.100.20", "--at", "2026-03-03T19:30:00Z");
    expect(code).toBe(0);
    const stageLines = io.out.split("\n").filter((l) => /^  (pass|deny|skipped) /.test(l)).map((l) => l.trim().replace(/\s+/g, " "));
    expect(stageLines).toEqual([
      "pass request",
      "pass authentication",
      "pass tenant",
      "pass ip_allowlist",
      "pass mtls",
      "deny conditional_access -> conditional_access_blocked",
      "skipped scope",
      "skipped workspace",
      "skipped quota",
    ]);
    expect(io.out).toContain("decision: conditional_access_blocked (403) reason `hours` rule `treasury-office`");
    expect(io.out).toContain("`198.51.100.20` is inside `198.51.100.0/24`");
    expect(io.out).toContain("local time `tue 20:30` in `Europe/Berlin`; window `07:00-20:00`, days mon, tue, wed, thu, fri");
  });

  it("names the nearest CIDR on a miss, and the source that replaced others", async () => {
    const token = JSON.stringify({ role: "tenant_operator", workspace: "treasury", controls: { mtls: { required: true } } });
    await run("policy", "explain", EXAMPLE_POLICY_DIR, "--token", token, "--path", "/api/payouts", "--source-ip", "198.51.101.20", "--at", NOW);
    expect(io.out).toContain("nearest miss: `198.51.100.0/24` (23 leading bits in common)");
    expect(io.out).toContain("`ipAllowlist` from `treasury-office` (workspace)");
    expect(io.out).toContain("deny    ip_allowlist -> ip_allowlist_blocked");
  });

  it("answers JSON with the revision, the decision and the stages", async () => {
    await run("policy", "explain", EXAMPLE_POLICY_DIR, "--token", JSON.stringify(operator), "--method", "POST", "--path", "/api/settings/api-tokens/rate-limits", "--at", NOW, "--format", "json");
    const answer = JSON.parse(io.out);
    expect(answer.revision).toMatch(/^[0-9a-f]{64}$/);
    expect(answer.decision.code).toBe("scope_denied");
    expect(answer.stages.map((s: { stage: string }) => s.stage)).toEqual(["request", "authentication", "tenant", "ip_allowlist", "mtls", "conditional_access", "scope", "workspace", "quota"]);
  });

  it("uses a fixture from a test file", async () => {
    const fixtures = path.join(dir, "fixtures.json");
    fs.writeFileSync(fixtures, JSON.stringify({ fixtures: { tokens: { robot: { role: "tenant_operator", service: "payout-robot" } } }, cases: [] }));
    await run("policy", "explain", EXAMPLE_POLICY_DIR, "--fixture", `${fixtures}#robot`, "--method", "POST", "--path", "/api/payouts", "--at", NOW);
    expect(io.out).toContain("decision: mtls_required (403)");
    expect(io.out).toContain("`mtls` from `payout-robot-mtls` (service)");
  });

  it("reads a stored token by id without changing the store", async () => {
    const dataDir = path.join(dir, "data");
    const store = TokenStore.open({ dataDir });
    const { record } = await store.create({ tenant: "acme", workspace: "main", environment: "production", prefix: "sk_live_", type: "service", name: "reader", role: "tenant_reviewer" });
    await store.suspendTenant("acme", { actor: "test" });
    store.close();
    const digest = () => Object.fromEntries(fs.readdirSync(dataDir).map((f) => [f, createHash("sha256").update(fs.readFileSync(path.join(dataDir, f))).digest("hex")]));
    const before = digest();
    const code = await run("policy", "explain", EXAMPLE_POLICY_DIR, "--token-id", record.id, "--data-dir", dataDir, "--path", "/api/ledger", "--at", NOW);
    expect([code, io.err]).toEqual([0, ""]);
    expect(io.out).toContain(`token \`${record.id}\``);
    expect(io.out).toContain("decision: tenant_suspended (403)");
    expect(digest()).toEqual(before);
    expect(await run("policy", "explain", EXAMPLE_POLICY_DIR, "--token-id", "tok_nope", "--data-dir", dataDir, "--path", "/")).toBe(2);
    expect(io.err).toContain("no token `tok_nope`");
  });

  it.each([
    ["--workspace-restricted", "GET", "pass", "workspace is restricted for writes but `GET /api/payouts` is not protected", "decision: ok (200)"],
    ["--workspace-restricted=writes", "POST", "deny", "workspace `acme/main` is temporarily restricted: `POST /api/payouts` is not allowed", "decision: workspace_restricted (423)"],
    ["--workspace-restricted=all", "GET", "deny", "workspace `acme/main` is frozen: `GET /api/payouts` is not allowed", "decision: workspace_restricted (423)"],
  ])("explains the workspace stage with %s for a %s", async (flag, method, verdict, why, decision) => {
    const token = JSON.stringify({ role: "tenant_operator", tenant: "acme", workspace: "main" });
    expect(await run("policy", "explain", EXAMPLE_POLICY_DIR, "--token", token, "--method", method, "--path", "/api/payouts", flag, "--at", NOW)).toBe(0);
    expect(io.out).toMatch(new RegExp(`\\n  ${verdict}\\s+workspace`));
    expect(io.out).toContain(why);
    expect(io.out).toContain(flag.endsWith("all") ? "mode `all` refuses every operation, reads too" : "mode `writes` refuses every write");
    expect(io.out).toContain(decision);
  });

  it("refuses an unknown --workspace-restricted mode with exit 2", async () => {
    expect(await run("policy", "explain", EXAMPLE_POLICY_DIR, "--path", "/", "--workspace-restricted=reads")).toBe(2);
    expect(io.err).toContain("invalid --workspace-restricted `reads`: expected writes or all");
  });

  it("refuses a bad --at with exit 2", async () => {
    expect(await run("policy", "explain", EXAMPLE_POLICY_DIR, "--path", "/", "--at", "yesterday")).toBe(2);
    expect(io.err).toContain("invalid --at `yesterday`");
  });
});

describe("policy diff", () => {
  it("lists a lost permission and exits 1, so that CI asks for a review", async () => {
    const before = policyCopy();
    const after = path.join(dir, "after");
    fs.cpSync(before, after, { recursive: true });
    const rolesFile = path.join(after, "roles.json");
    const roles = JSON.parse(fs.readFileSync(rolesFile, "utf8"));
    const brand = roles.roles.find((r: { name: string }) => r.name === "tenant_brand");
    brand.scopes = brand.scopes.filter((s: string) => s !== "payouts:read").concat("ledger:read");
    fs.writeFileSync(rolesFile, JSON.stringify(roles));
    expect(await run("policy", "diff", before, after)).toBe(1);
    expect(io.out).toContain("permissions lost:\n  - role `tenant_brand`, key level `none`: read /api/payouts/**\n");
    expect(io.out).toContain("+ role `tenant_brand`, key level `read_only`: read /api/ledger/**");
    expect(io.out).toContain("(review needed)");
    io.out = "";
    expect(await run("policy", "diff", before, after, "--format", "json")).toBe(1);
    expect(JSON.parse(io.out).lost).toBe(true);
  });

  it("reports catalog, route and control changes", async () => {
    const before = policyCopy();
    const after = path.join(dir, "after");
    fs.cpSync(before, after, { recursive: true });
    const edit = (file: string, change: (json: any) => void) => {
      const json = JSON.parse(fs.readFileSync(path.join(after, file), "utf8"));
      change(json);
      fs.writeFileSync(path.join(after, file), JSON.stringify(json));
    };
    edit("scopes.json", (j) => j.scopes.find((m: { module: string }) => m.module === "payouts").scopes.push({ scope: "payouts:approve" }));
    edit("routes.json", (j) => j.operations.push({ method: "POST", path: "/api/payouts/{id}/approve", scope: "payouts:approve" }));
    edit("controls.json", (j) => (j.controls[0].selector = { workspace: "acme/vault" }));
    // the new operation is carved out of a group whose write scope operators hold: they lose it
    expect(await run("policy", "diff", before, after)).toBe(1);
    expect(io.out).toContain("- role `tenant_operator`, key level `none`: POST /api/payouts/{id}/approve\n");
    expect(io.out).toContain("routes whose scope changed:\n  ~ POST /api/payouts/{id}/approve: payouts:write -> payouts:approve\n");
    expect(io.out).toContain("scopes added:\n  + payouts:approve\n");
    expect(io.out).toContain("routes added:\n  + POST /api/payouts/{id}/approve\n");
    expect(io.out).toContain("~ treasury-office: selects tenant=acme,workspace=treasury; sets conditionalAccess, ipAllowlist -> selects tenant=acme,workspace=vault; sets conditionalAccess, ipAllowlist");
    // `*` grants the new scope too, so an unrestricted admin keeps the route
    expect(io.out).not.toContain("role `tenant_admin`, key level `none`");
  });

  it("compares a folder with a git revision", async () => {
    const repo = path.join(dir, "repo");
    fs.mkdirSync(repo);
    fs.cpSync(policyCopy(), path.join(repo, "policies"), { recursive: true });
    const git = (...args: string[]) => execFileSync("git", args, { cwd: repo, stdio: "pipe", env: { ...process.env, GIT_AUTHOR_NAME: "t", GIT_AUTHOR_EMAIL: "t@example.com", GIT_COMMITTER_NAME: "t", GIT_COMMITTER_EMAIL: "t@example.com" } });
    git("init", "-q");
    git("add", ".");
    git("commit", "-qm", "policies");
    const routes = path.join(repo, "policies", "routes.json");
    const json = JSON.parse(fs.readFileSync(routes, "utf8"));
    json.endpointGroups = json.endpointGroups.filter((g: { basePath: string }) => g.basePath !== "/api/disputes");
    fs.writeFileSync(routes, JSON.stringify(json));
    const cwd = process.cwd();
    process.chdir(repo);
    try {
      expect(await run("policy", "diff", "HEAD:policies", "policies")).toBe(1);
    } finally {
      process.chdir(cwd);
    }
    expect(io.out).toContain("routes removed:\n  - read /api/disputes/**\n  - write /api/disputes/**\n");
    expect(await run("policy", "diff", "HEAD:nowhere", EXAMPLE_POLICY_DIR)).toBe(1);
    expect(io.err).toContain("cannot read `HEAD:nowhere` from git");
  });
});

describe("policy schema", () => {
  it("prints the policy file schema, and with --tests the test file schema", async () => {
    await run("policy", "schema");
    expect(JSON.parse(io.out).$id).toMatch(/policy\.schema\.json$/);
    io.out = "";
    await run("policy", "schema", "--tests");
    expect(JSON.parse(io.out).title).toBe("Portcullis policy test file");
  });
});
