/**
 * docs/policy-authoring.md's walk-through, run: the example change (payout
 * approvals), its test file and the outputs the guide quotes must be what
 * the commands print.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../../src/cli/main.js";
import { captureCliOutput } from "../support/cli-output.js";
import { EXAMPLE_POLICY_DIR, REPO_ROOT } from "../support/fixtures.js";

const io = captureCliOutput();
const guide = fs.readFileSync(path.join(REPO_ROOT, "docs", "policy-authoring.md"), "utf8");
let dir: string;
let folder: string;

/** The guide's fenced blocks, in order. */
const blocks = [...guide.matchAll(/```(\w*)\n([\s\S]*?)```/g)].map((m) => ({ lang: m[1], text: m[2]! }));
const jsonBlock = (needle: string) => JSON.parse(blocks.find((b) => b.lang === "json" && b.text.includes(needle))!.text);
/** Lines of the output block that follows the command containing `command`, `...` elisions left out. */
const quotedLines = (needle: string) =>
  blocks
    .find((b) => b.lang === "" && b.text.includes(needle))!
    .text.split("\n")
    .filter((l) => l.trim() !== "" && l.trim() !== "...");

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-guide-"));
  folder = path.join(dir, "policies");
  fs.cpSync(EXAMPLE_POLICY_DIR, folder, { recursive: true });
  const edit = (file: string, change: (json: any) => void) => {
    const json = JSON.parse(fs.readFileSync(path.join(folder, file), "utf8"));
    change(json);
    fs.writeFileSync(path.join(folder, file), JSON.stringify(json, null, 2));
  };
  // section 2 of the guide: the scope and the operation, as it shows them
  const scope = JSON.parse(blocks.find((b) => b.lang === "json" && b.text.includes('"scope": "payouts:approve", "description"'))!.text);
  const operation = JSON.parse(blocks.find((b) => b.lang === "json" && b.text.includes('"path": "/api/payouts/{payoutId}/approve", "scope"'))!.text);
  edit("scopes.json", (j) => j.scopes.find((m: { module: string }) => m.module === "payouts").scopes.push(scope));
  edit("routes.json", (j) => j.operations.push(operation));
  fs.writeFileSync(path.join(folder, "tests", "approvals.test.json"), JSON.stringify(jsonBlock('"admins approve payouts"'), null, 2));
});

afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe("docs/policy-authoring.md", () => {
  it("section 4: the test run prints what the guide quotes, and exits 1", async () => {
    expect(await main(["node", "portcullis", "policy", "test", folder, "--run", "approve"])).toBe(1);
    for (const line of quotedLines("FAIL tests/approvals.test.json")) expect(io.out).toContain(line);
  });

  it("section 5: explain prints what the guide quotes", async () => {
    const args = ["policy", "explain", EXAMPLE_POLICY_DIR, "--token", '{"role":"tenant_operator","workspace":"treasury"}', "--path", "/api/payouts", "--source-ip", "198.51.100.20", "--at", "2026-03-03T19:30:00Z"];
    expect(await main(["node", "portcullis", ...args])).toBe(0);
    for (const line of quotedLines("decision: conditional_access_blocked")) expect(io.out).toContain(line);
  });

  it("section 6: diff prints what the guide quotes, and exits 1", async () => {
    expect(await main(["node", "portcullis", "policy", "diff", EXAMPLE_POLICY_DIR, folder])).toBe(1);
    for (const line of quotedLines("permissions lost:")) expect(io.out).toContain(line);
  });
});
