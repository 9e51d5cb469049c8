/**
 * How a policy test run reads: like a test runner on a terminal, or as JUnit
 * XML for CI systems.
 */
import { formatExplanation } from "../explain/explain.js";
import type { CaseResult, TestRun } from "./run-policy-tests.js";

/** Formats a run like a test runner: failures with expected vs got and the explanation, then a summary line. */
export function formatTestRun(run: TestRun, verbose = false): string {
  const lines: string[] = [];
  for (const e of run.errors) lines.push(`INVALID ${e.file}${e.pointer === "" ? "" : ` ${e.pointer}`}: ${e.message}`);
  for (const r of run.results) {
    if (r.passed && !verbose) continue;
    lines.push(`${r.passed ? "PASS" : "FAIL"} ${r.file} > ${r.name}`);
    if (!r.passed) {
      for (const m of r.mismatches) lines.push(`  ${m}`);
      if (r.explanation !== null) lines.push(formatExplanation(r.explanation, "  "));
    }
  }
  lines.push(summaryLine(run));
  return lines.join("\n") + "\n";
}

/** `N passed, N failed, N skipped (N files invalid)`. */
export function summaryLine(run: TestRun): string {
  const passed = run.results.filter((r) => r.passed).length;
  const failed = run.results.length - passed;
  const invalid = new Set(run.errors.map((e) => e.file)).size;
  return `${passed} passed, ${failed} failed, ${run.skipped} skipped${invalid === 0 ? "" : `, ${invalid} invalid test file${invalid === 1 ? "" : "s"}`}`;
}

const escapeXml = (text: string) =>
  text.replace(/[<>&"']/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;", "'": "&apos;" })[c] ?? c);

/** JUnit XML, one `testsuite` per test file, for CI systems. */
export function formatJunit(run: TestRun): string {
  const byFile = new Map<string, CaseResult[]>();
  for (const r of run.results) byFile.set(r.file, [...(byFile.get(r.file) ?? []), r]);
  const out = ['<?xml version="1.0" encoding="UTF-8"?>', "<testsuites>"];
  for (const [file, results] of byFile) {
    const failures = results.filter((r) => !r.passed).length;
    out.push(`  <testsuite name="${escapeXml(file)}" tests="${results.length}" failures="${failures}" errors="0">`);
    for (const r of results) {
      const open = `    <testcase classname="${escapeXml(file)}" name="${escapeXml(r.name)}" time="${(r.durationMs / 1000).toFixed(4)}"`;
      if (r.passed) out.push(`${open}/>`);
      else {
        out.push(`${open}>`);
        out.push(`      <failure message="${escapeXml(r.mismatches.join("; "))}">${escapeXml(r.explanation === null ? "" : formatExplanation(r.explanation))}</failure>`);
        out.push("    </testcase>");
      }
    }
    out.push("  </testsuite>");
  }
  for (const file of new Set(run.errors.map((e) => e.file))) {
    const messages = run.errors.filter((e) => e.file === file).map((e) => `${e.pointer} ${e.message}`.trim());
    out.push(`  <testsuite name="${escapeXml(file)}" tests="1" failures="0" errors="1">`);
    out.push(`    <testcase classname="${escapeXml(file)}" name="test file"><error message="invalid test file">${escapeXml(messages.join("\n"))}</error></testcase>`);
    out.push("  </testsuite>");
  }
  out.push("</testsuites>");
  return out.join("\n") + "\n";
}
