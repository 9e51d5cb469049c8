/**
 * The bundled policies ship with a test suite (policies/tests); `npm test`
 * runs it here, and checks that it covers every endpoint group, role, key
 * level and control entry the policies declare.
 */
import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { denyingStage } from "../../src/explain/explain.js";
import { findTestFiles, formatTestRun, runPolicyTests } from "../../src/policy-test/run-policy-tests.js";
import { EXAMPLE_POLICY_DIR, loadExamplePolicy } from "../support/fixtures.js";

const policy = loadExamplePolicy();
const files = findTestFiles(path.join(EXAMPLE_POLICY_DIR, "tests"));
const run = runPolicyTests(policy, files, { baseDir: EXAMPLE_POLICY_DIR });

describe("the bundled policy set's test suite", () => {
  it("passes", () => {
    expect(files.length).toBeGreaterThan(0);
    expect(run.errors).toEqual([]);
    expect(run.results.filter((r) => !r.passed).map((r) => formatTestRun({ results: [r], skipped: 0, errors: [] }))).toEqual([]);
  });

  it("covers every endpoint group, role, key level and control entry", () => {
    const ruleIds = new Set(run.results.map((r) => r.decision.ruleId));
    const groups = policy.routeTable.filter((r) => r.method === "read").map((r) => r.ruleId);
    expect(groups.filter((id) => !ruleIds.has(id))).toEqual([]);
    expect(policy.controls.map((c) => c.id).filter((id) => !ruleIds.has(id))).toEqual([]);
    const roles = new Set(run.results.map((r) => r.decision.identity?.role));
    expect([...policy.roles.keys()].filter((role) => !roles.has(role))).toEqual([]);
    const text = files.map((f) => fs.readFileSync(f, "utf8")).join("\n");
    expect([...policy.keyLevels.keys()].filter((level) => !text.includes(`"keyLevel": "${level}"`))).toEqual([]);
  });

  it("explains every case with the stage that decided it, in agreement with the decision", () => {
    for (const r of run.results) {
      expect(r.explanation).not.toBeNull();
      const stage = denyingStage(r.explanation!);
      expect([r.name, stage?.code ?? "ok"]).toEqual([r.name, r.decision.code]);
    }
  });
});
