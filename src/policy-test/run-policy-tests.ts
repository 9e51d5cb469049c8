/**
 * `portcullis policy test`: reads test files, builds each case's request,
 * token and stored state, and runs it through the same authorizer the server
 * runs (`createAuthorizer`), with an in-memory token look-up instead of the
 * store. Pure apart from reading the test files.
 */
import { settledNow } from "../service/maybe-promise.js";
import { readFileSync } from "node:fs";
import { relative } from "node:path";
import type { AuthzInput, Decision, TokenRecord } from "../engine/types.js";
import type { WorkspaceRestrictionFact } from "../engine/workspace-restriction-mode.js";
import { explainRequest, type Explanation } from "../explain/explain.js";
import type { CompiledPolicySet } from "../policy/types.js";
import { createMemoryQuotaCounter } from "../quota/memory-quota-counter.js";
import { createAuthorizer } from "../service/authorize.js";
import { buildInput, buildToken, resolveFixture } from "./build-case.js";
import { validateFile, type Expectation, type TestFileError, type TestFileSpec } from "./test-file.js";

export { POLICY_TEST_SCHEMA, findTestFiles } from "./test-file.js";
export { prepareSingleCase } from "./build-case.js";
export { formatJunit, formatTestRun, summaryLine } from "./format-test-run.js";

/** The outcome of one case. */
export interface CaseResult {
  readonly file: string;
  readonly name: string;
  readonly passed: boolean;
  /** `expected X, got Y` lines; empty when passed. */
  readonly mismatches: readonly string[];
  readonly decision: Decision;
  /** `null` when the engine failed on this case (the decision is then `unavailable` and a mismatch names the error). */
  readonly explanation: Explanation | null;
  readonly durationMs: number;
}

/** The outcome of a run. */
export interface TestRun {
  readonly results: readonly CaseResult[];
  /** Cases left out by `--run`. */
  readonly skipped: number;
  readonly errors: readonly TestFileError[];
}

/** A fully built case, ready to run. */
interface PreparedCase {
  readonly name: string;
  readonly input: AuthzInput;
  readonly token: TokenRecord | undefined;
  readonly tokenString: string | undefined;
  readonly tenantSuspended: boolean;
  readonly workspaceRestricted: WorkspaceRestrictionFact;
  readonly nowMs: number;
  readonly repeat: number;
  readonly expect: Expectation;
}

/**
 * Runs the test files against a compiled policy set. `run` keeps only cases
 * whose name matches it (a regular expression, case-insensitive). A file with
 * any error runs none of its cases: its errors are returned instead.
 */
export function runPolicyTests(policy: CompiledPolicySet, files: readonly string[], options: { run?: string; baseDir?: string } = {}): TestRun {
  const filter = options.run === undefined ? null : new RegExp(options.run, "i");
  const results: CaseResult[] = [];
  const errors: TestFileError[] = [];
  let skipped = 0;
  for (const path of files) {
    const file = options.baseDir === undefined ? path : relative(options.baseDir, path);
    const prepared = prepareFile(policy, path, file, errors);
    if (prepared === null) continue;
    for (const c of prepared) {
      if (filter !== null && !filter.test(c.name)) {
        skipped++;
        continue;
      }
      results.push(runCase(policy, file, c));
    }
  }
  return { results, skipped, errors };
}

function prepareFile(policy: CompiledPolicySet, path: string, file: string, errors: TestFileError[]): PreparedCase[] | null {
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(path, "utf8"));
  } catch (error) {
    errors.push({ file, pointer: "", message: `cannot read test file: ${error instanceof Error ? error.message : String(error)}` });
    return null;
  }
  if (!validateFile(value)) {
    for (const e of validateFile.errors ?? []) {
      const extra = e.keyword === "additionalProperties" ? ` \`${String(e.params["additionalProperty"])}\`` : "";
      errors.push({ file, pointer: e.instancePath, message: `${e.message ?? "invalid value"}${extra}` });
    }
    return null;
  }
  const spec = value as unknown as TestFileSpec;
  const before = errors.length;
  const fail = (pointer: string, message: string) => errors.push({ file, pointer, message });
  const tokens = spec.fixtures?.tokens ?? {};
  const requests = spec.fixtures?.requests ?? {};
  const cases: PreparedCase[] = [];
  const names = new Set<string>();
  spec.cases.forEach((c, i) => {
    const at = `/cases/${i}`;
    if (names.has(c.name)) fail(`${at}/name`, `duplicate case name \`${c.name}\``);
    names.add(c.name);
    const nowText = c.now ?? spec.now;
    if (nowText === undefined) return fail(at, "case needs a `now` (or the file a default `now`)");
    const nowMs = Date.parse(nowText);
    const tokenSpec = resolveFixture(c.token ?? null, tokens, `${at}/token`, "token", fail);
    const requestSpec = resolveFixture(c.request, requests, `${at}/request`, "request", fail);
    if (tokenSpec === undefined || requestSpec === undefined || requestSpec === null) return;
    const token = tokenSpec === null ? null : buildToken(policy, tokenSpec, c.name, `${at}/token`, fail);
    if (token === undefined) return;
    const input = buildInput(policy, requestSpec, token, `${at}/request`, fail);
    if (input === undefined) return;
    cases.push({
      name: c.name,
      input: input.input,
      token: token === null || tokenSpec?.stored === false ? undefined : token.record,
      tokenString: token?.string,
      tenantSuspended: c.tenantSuspended ?? false,
      workspaceRestricted: c.workspaceRestricted ?? false,
      nowMs,
      repeat: c.repeat ?? 1,
      expect: c.expect,
    });
  });
  return errors.length > before ? null : cases;
}

function runCase(policy: CompiledPolicySet, file: string, c: PreparedCase): CaseResult {
  const startMs = performance.now();
  const facts = { token: c.token, tenantSuspended: c.tenantSuspended, workspaceRestricted: c.workspaceRestricted };
  let failure: string | null = null;
  const authorize = createAuthorizer({
    policy: () => policy,
    tokens: { find: (raw) => (raw === c.tokenString ? c.token : undefined) },
    tenantState: { tenantSuspended: () => c.tenantSuspended, workspaceRestricted: () => c.workspaceRestricted },
    now: () => c.nowMs,
    onError: (error) => {
      failure = error instanceof Error ? error.message : String(error);
    },
    quota: createMemoryQuotaCounter(),
  });
  let decision = settledNow(authorize(c.input)).decision;
  for (let i = 1; i < c.repeat; i++) decision = settledNow(authorize(c.input)).decision;
  const mismatches = compare(c.expect, decision);
  let explanation: Explanation | null = null;
  if (failure !== null) mismatches.push(`the engine failed: ${failure}`);
  else explanation = explainRequest(c.input, policy, facts, c.nowMs, decision);
  return { file, name: c.name, passed: mismatches.length === 0, mismatches, decision, explanation, durationMs: performance.now() - startMs };
}

function compare(expect: Expectation, decision: Decision): string[] {
  const out: string[] = [];
  const check = (what: string, want: unknown, got: unknown) => {
    if (want !== undefined && want !== got) out.push(`expected ${what} \`${String(want)}\`, got \`${String(got)}\``);
  };
  check("code", expect.code, decision.code);
  check("status", expect.status, decision.httpStatus);
  check("reason", expect.reason, decision.reason);
  check("rule id", expect.ruleId, decision.ruleId);
  for (const [name, value] of Object.entries(expect.headers ?? {})) {
    const lower = name.toLowerCase();
    check(`header \`${lower}\``, value, decision.responseHeaders.find(([n]) => n === lower)?.[1]);
  }
  for (const [name, value] of Object.entries(expect.upstreamHeaders ?? {})) {
    const lower = name.toLowerCase();
    const got = decision.upstreamHeaders.find(([n]) => n === lower)?.[1];
    if (value === null && got !== undefined) out.push(`expected no upstream header \`${lower}\`, got \`${got}\``);
    else if (value !== null) check(`upstream header \`${lower}\``, value, got);
  }
  for (const [key, value] of Object.entries(expect.details ?? {})) check(`detail \`${key}\``, value, decision.details[key]);
  return out;
}

/** Exit code of a run: 2 when a test file is invalid, else 1 when a case failed, else 0. */
export function exitCodeOf(run: TestRun): number {
  if (run.errors.length > 0) return 2;
  return run.results.some((r) => !r.passed) ? 1 : 0;
}

