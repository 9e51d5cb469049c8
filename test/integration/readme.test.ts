import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createToken } from "../../src/service/tokens.js";
import { EXAMPLE_POLICY_DIR, REPO_ROOT } from "../support/fixtures.js";
import { startTestServer, type TestServer } from "../support/server.js";

const readme = fs.readFileSync(path.join(REPO_ROOT, "README.md"), "utf8");
const packageJson = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, "package.json"), "utf8"));

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await t.stop();
});

describe("README", () => {
  it("starts with the two commands, and they are scripts that exist", () => {
    const firstBlock = /```sh\n([\s\S]*?)```/.exec(readme)![1]!;
    expect(firstBlock).toMatch(/^npm ci && npm start\b/m);
    expect(firstBlock).toMatch(/^npm test\b/m);
    expect(packageJson.scripts.start).toContain("serve");
    expect(packageJson.scripts.test).toContain("vitest run");
  });

  it("first-decision curl gets the answer the README shows", async () => {
    const create = /portcullis tokens create (.*)\)/.exec(readme)![1]!;
    const flags = Object.fromEntries([...create.matchAll(/--([\w-]+) (\S+)/g)].map((m) => [m[1]!, m[2]!]));
    const { token } = await createToken(
      t.server.store,
      t.server.policy(),
      { tenant: flags.tenant!, workspace: flags.workspace!, name: flags.name!, role: flags.role!, environment: flags.environment!, type: "service", actor: "readme" },
      Date.now(),
    );
    const url = /curl -s localhost:8181(\S+)/.exec(readme)![1]!;
    const payload = /-d '(.*)'$/m.exec(readme)![1]!.replace(`'"$TOKEN"'`, token);
    const response = await fetch(`${t.httpUrl}${url}`, { method: "POST", headers: { "content-type": "application/json" }, body: payload });
    const json = (await response.json()) as Record<string, unknown>;
    expect(json).toMatchObject({ allowed: true, httpStatus: 200, code: "ok", ruleId: "group:/api/payouts" });
    expect(json.identity).toMatchObject({ tenant: "acme", workspace: "main", environment: "test", role: "tenant_operator" });
  });

  it("read_only variant is denied as the README says", async () => {
    const { token } = await createToken(
      t.server.store,
      t.server.policy(),
      { tenant: "acme", workspace: "main", name: "ro", role: "tenant_operator", keyLevel: "read_only", environment: "test", type: "service", actor: "readme" },
      Date.now(),
    );
    const payload = /-d '(.*)'$/m.exec(readme)![1]!.replace(`'"$TOKEN"'`, token);
    const json = (await (await fetch(`${t.httpUrl}/portcullis.v1.AuthorizationService/Authorize`, { method: "POST", headers: { "content-type": "application/json" }, body: payload })).json()) as Record<string, unknown>;
    expect(json).toMatchObject({ httpStatus: 403, code: "scope_denied", details: { required_scope: "payouts:write" } });
  });
});

/** The `sh` blocks of the README's "A first decision", in order. */
function firstDecisionBlocks(): string[] {
  const section = readme.slice(readme.indexOf("## A first decision"), readme.indexOf("\n## ", readme.indexOf("## A first decision") + 3));
  return [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((match) => match[1]!);
}

/**
 * Runs a README block with bash as a reader would after `npm link`: from a
 * folder outside the checkout, with `portcullis` on PATH as the link npm makes
 * (`<prefix>/bin/portcullis` -> the checkout's `bin/portcullis.js`), and the
 * policy and data folders given by the variables the README names. Runs
 * asynchronously: the server under test shares this process's event loop.
 */
function runAsReader(block: string, linkDir: string, elsewhere: string): Promise<{ stdout: string; stderr: string }> {
  const script = block.replaceAll("localhost:8181", `127.0.0.1:${t.server.httpPort}`);
  const env = { ...process.env, PATH: `${linkDir}:${process.env.PATH}`, PORTCULLIS_POLICY_DIR: EXAMPLE_POLICY_DIR, PORTCULLIS_DATA_DIR: t.dataDir };
  return new Promise((resolve, reject) =>
    execFile("bash", ["-euo", "pipefail", "-c", script], { cwd: elsewhere, env, timeout: 20_000 }, (error, stdout, stderr) =>
      error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve({ stdout, stderr }),
    ),
  );
}

describe("README commands, run from outside the checkout", () => {
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-reader-"));
  const linkDir = path.join(scratch, "prefix", "bin");
  const elsewhere = path.join(scratch, "elsewhere");
  beforeAll(() => {
    // What `npm link` puts on PATH: the package's `bin` entry, linked.
    expect(packageJson.bin).toEqual({ portcullis: "bin/portcullis.js" });
    fs.mkdirSync(linkDir, { recursive: true });
    fs.mkdirSync(elsewhere);
    fs.symlinkSync(path.join(REPO_ROOT, packageJson.bin.portcullis), path.join(linkDir, "portcullis"));
  });
  afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

  it("tells the reader to `npm link`, and never to use npx for the CLI", () => {
    expect(readme).toMatch(/^`npm link` once puts the `portcullis` command on your `PATH`/m);
    for (const block of readme.matchAll(/```sh\n([\s\S]*?)```/g)) expect(block[1]).not.toMatch(/npx portcullis/);
  });

  it("creates a token with the CLI and gets the allow the README shows", async () => {
    const [allowBlock] = firstDecisionBlocks();
    const { stdout } = await runAsReader(allowBlock!, linkDir, elsewhere);
    expect(JSON.parse(stdout)).toMatchObject({ allowed: true, httpStatus: 200, code: "ok", ruleId: "group:/api/payouts", identity: { tenant: "acme", environment: "test" } });
  });

  it("creates a read-only token and reads the deny's `allowed` as false with jq", async () => {
    const denyBlock = firstDecisionBlocks()[1]!;
    expect(denyBlock).toContain("--level read_only");
    const { stdout } = await runAsReader(denyBlock, linkDir, elsewhere);
    expect(stdout).toBe("false\n");
    const { stdout: answer } = await runAsReader(denyBlock.replace("| jq .allowed", ""), linkDir, elsewhere);
    expect(JSON.parse(answer)).toMatchObject({ allowed: false, httpStatus: 403, code: "scope_denied", details: { required_scope: "payouts:write" } });
  });
});
