/**
 * `portcullis policy test`: reads test files, builds each case's request,
 * token and stored state, and runs it through the same authorizer the server
 * runs (`createAuthorizer`), with an in-memory token look-up instead of the
 * store. Pure apart from reading the test files.
 */
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { Ajv2020 } from "ajv/dist/2020.js";
import type { AuthzInput, ClientCertificateFacts, Decision, TokenRecord } from "../engine/types.js";
import { explainRequest, formatExplanation, type Explanation } from "../explain/explain.js";
import { compileControls } from "../policy/controls.js";
import { validateControlsShape } from "../policy/schema.js";
import { suggest } from "../policy/suggest.js";
import type { CompiledPolicySet } from "../policy/types.js";
import { createMemoryQuotaCounter } from "../quota/memory-quota-counter.js";
import { createAuthorizer } from "../service/authorize.js";
import { generateToken } from "../token/format.js";
import testSchema from "./policy-test.schema.json" with { type: "json" };

/** The published JSON Schema (2020-12) of a policy test file. */
export const POLICY_TEST_SCHEMA: Readonly<Record<string, unknown>> = testSchema;

const ajv = new Ajv2020({ allErrors: true, strict: false });
const validateFile = ajv.compile(testSchema);
// INVARIANT: compiling the file schema registered its `$defs` under its `$id`.
const validateRequestShape = ajv.getSchema(`${testSchema.$id}#/$defs/request`)!;
const validateTokenShape = ajv.getSchema(`${testSchema.$id}#/$defs/token`)!;

/** Schema violations of `value` as `pointer: message` lines, prefixed with `at`. */
function shapeErrors(validate: typeof validateRequestShape, value: unknown, at: string): string[] {
  if (validate(value)) return [];
  return (validate.errors ?? []).map((e) => {
    const extra = e.keyword === "additionalProperties" ? ` \`${String(e.params["additionalProperty"])}\`` : "";
    return `${at}${e.instancePath}: ${e.message ?? "invalid value"}${extra}`;
  });
}

/** A token as a test file describes it. */
export interface TokenSpec {
  fixture?: string;
  id?: string;
  tenant?: string;
  workspace?: string;
  environment?: string;
  type?: "user" | "service";
  name?: string;
  role?: string | null;
  keyLevel?: string | null;
  scopes?: string[] | null;
  creatorRole?: string | null;
  service?: string | null;
  controls?: Record<string, unknown>;
  createdAt?: string;
  expiresAt?: string | null;
  revokedAt?: string | null;
  rotation?: { successorId?: string; overlapEndsAt: string };
  stored?: boolean;
}

/** A request as a test file describes it. */
export interface RequestSpec {
  fixture?: string;
  method?: string;
  path?: string;
  host?: string;
  headers?: Record<string, string>;
  sourceIp?: string;
  clientCertificate?: { sha256Fingerprint: string; subject?: string; issuerSha256Fingerprint?: string; verified?: boolean; notAfter?: string };
}

/** What a case expects; absent fields are not compared. */
export interface Expectation {
  code: string;
  status?: number;
  reason?: string;
  ruleId?: string;
  headers?: Record<string, string>;
  details?: Record<string, string>;
}

/** One case as a test file holds it. */
export interface CaseSpec {
  name: string;
  description?: string;
  token?: string | TokenSpec | null;
  request: string | RequestSpec;
  tenantSuspended?: boolean;
  workspaceRestricted?: boolean;
  now?: string;
  repeat?: number;
  expect: Expectation;
}

/** A whole test file. */
export interface TestFileSpec {
  description?: string;
  now?: string;
  fixtures?: { tokens?: Record<string, TokenSpec>; requests?: Record<string, RequestSpec> };
  cases: CaseSpec[];
}

/** A problem with a test file itself (exit 2), placed by JSON pointer. */
export interface TestFileError {
  readonly file: string;
  readonly pointer: string;
  readonly message: string;
}

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

/** Every `*.json` file under `dir` (recursively), sorted; `[]` when `dir` does not exist. */
export function findTestFiles(dir: string): string[] {
  let entries: string[];
  try {
    if (!statSync(dir).isDirectory()) return [dir];
    entries = readdirSync(dir, { recursive: true, encoding: "utf8" });
  } catch {
    return [];
  }
  return entries.filter((e) => e.endsWith(".json")).map((e) => join(dir, e)).sort();
}

/** A fully built case, ready to run. */
interface PreparedCase {
  readonly name: string;
  readonly input: AuthzInput;
  readonly token: TokenRecord | undefined;
  readonly tokenString: string | undefined;
  readonly tenantSuspended: boolean;
  readonly workspaceRestricted: boolean;
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

/** A fixture name resolved, or an inline spec with its `fixture` applied; `undefined` after reporting an error. */
function resolveFixture<T extends { fixture?: string }>(
  given: string | T | null,
  fixtures: Record<string, T>,
  pointer: string,
  kind: string,
  fail: (pointer: string, message: string) => void,
): T | null | undefined {
  if (given === null) return null;
  const name = typeof given === "string" ? given : given.fixture;
  if (name === undefined) return given as T;
  const base = fixtures[name];
  if (base === undefined || !Object.hasOwn(fixtures, name)) {
    const hint = suggest(name, Object.keys(fixtures));
    fail(pointer, `unknown ${kind} fixture \`${name}\`${hint === undefined ? "" : ` (${hint})`}`);
    return undefined;
  }
  return typeof given === "string" ? base : { ...base, ...given };
}

function buildToken(
  policy: CompiledPolicySet,
  spec: TokenSpec,
  caseName: string,
  pointer: string,
  fail: (pointer: string, message: string) => void,
): { record: TokenRecord; string: string } | undefined {
  const environment = spec.environment ?? policy.defaultEnvironment;
  const prefix = [...policy.environmentByPrefix].find(([, env]) => env === environment)?.[0];
  const environments = [...new Set(policy.environmentByPrefix.values())];
  let ok = true;
  const known = (field: string, name: string | null | undefined, catalog: Iterable<string>) => {
    if (name === null || name === undefined) return;
    const list = [...catalog];
    if (list.includes(name)) return;
    const hint = suggest(name, list);
    fail(`${pointer}/${field}`, `unknown ${field === "keyLevel" ? "key level" : field === "creatorRole" ? "role" : field} \`${name}\`${hint === undefined ? "" : ` (${hint})`}`);
    ok = false;
  };
  known("environment", environment, environments);
  known("role", spec.role, policy.roles.keys());
  known("keyLevel", spec.keyLevel, policy.keyLevels.keys());
  known("creatorRole", spec.creatorRole, policy.roles.keys());
  (spec.scopes ?? []).forEach((scope, i) => known(`scopes/${i}`, scope, policy.scopes));
  if (spec.controls !== undefined) {
    // the same two checks `tokens create --controls` makes: the shape, then what compiles (CIDRs, zones, pins)
    const shape = validateControlsShape(spec.controls);
    const compiled = shape.length === 0 ? compileControls(spec.controls as TokenRecord["controls"], "token") : null;
    for (const e of compiled === null ? shape : compiled.ok ? [] : compiled.errors) {
      fail(`${pointer}/controls${e.pointer}`, e.hint === undefined ? e.message : `${e.message} (${e.hint})`);
      ok = false;
    }
  }
  if (!ok || prefix === undefined) return undefined;
  const id = spec.id ?? `tok_${caseName.replace(/[^A-Za-z0-9]+/g, "_").slice(0, 40)}`;
  const ms = (text: string | null | undefined) => (text === null || text === undefined ? null : Date.parse(text));
  const record: TokenRecord = {
    id,
    tenant: spec.tenant ?? "acme",
    workspace: spec.workspace ?? "default",
    environment,
    type: spec.type ?? "service",
    name: spec.name ?? id,
    role: spec.role ?? null,
    keyLevel: spec.keyLevel ?? null,
    scopes: spec.scopes ?? null,
    creatorRole: spec.creatorRole ?? null,
    createdAtMs: ms(spec.createdAt) ?? 0,
    expiresAtMs: ms(spec.expiresAt),
    revokedAtMs: ms(spec.revokedAt),
    service: spec.service ?? null,
    controls: (spec.controls ?? {}) as TokenRecord["controls"],
    lineageId: id,
    successorId: spec.rotation?.successorId ?? null,
    overlapEndsAtMs: ms(spec.rotation?.overlapEndsAt),
  };
  return { record, string: generateToken(prefix) };
}

function buildInput(
  policy: CompiledPolicySet,
  spec: RequestSpec,
  token: { record: TokenRecord; string: string } | null,
  pointer: string,
  fail: (pointer: string, message: string) => void,
): { input: AuthzInput } | undefined {
  if (spec.method === undefined || spec.path === undefined) {
    fail(pointer, "request needs a `method` and a `path`");
    return undefined;
  }
  const headers = new Map<string, string>();
  if (token !== null) headers.set("authorization", `Bearer ${token.string}`);
  for (const [name, value] of Object.entries(spec.headers ?? {})) headers.set(name.toLowerCase(), value);
  const environment = token?.record.environment ?? policy.defaultEnvironment;
  const host = spec.host ?? [...policy.environmentByHost].find(([, env]) => env === environment)?.[0] ?? "";
  const cert = spec.clientCertificate;
  const clientCertificate: ClientCertificateFacts | null =
    cert === undefined
      ? null
      : {
          sha256Fingerprint: cert.sha256Fingerprint.replaceAll(":", "").toLowerCase(),
          subject: cert.subject ?? "",
          issuerSha256Fingerprint: (cert.issuerSha256Fingerprint ?? "").replaceAll(":", "").toLowerCase(),
          verified: cert.verified ?? true,
          notAfterMs: cert.notAfter === undefined ? null : Date.parse(cert.notAfter),
        };
  return { input: { method: spec.method, path: spec.path, host, headers, sourceIp: spec.sourceIp ?? "", clientCertificate } };
}

/** One request to explain outside a test file: what `policy explain` and the explorer page take. */
export interface SingleCase {
  /** A stored token's record, used as it is. */
  readonly record?: TokenRecord;
  /** Inline token facts (a {@link TokenSpec}), or `null` for no token. */
  readonly token?: unknown;
  /** `file#name`: a token fixture of a test file. */
  readonly fixture?: string;
  readonly request: RequestSpec;
  readonly tenantSuspended: boolean;
  readonly workspaceRestricted: boolean;
  readonly nowMs: number;
}

/** Builds the engine input and stored facts of a {@link SingleCase}; errors are messages. */
export function prepareSingleCase(
  policy: CompiledPolicySet,
  single: SingleCase,
): { ok: true; input: AuthzInput; facts: { token: TokenRecord | undefined; tenantSuspended: boolean; workspaceRestricted: boolean } } | { ok: false; errors: string[] } {
  // why: this input comes from a command line or a web form, not from a validated test file
  const shape = [
    ...shapeErrors(validateRequestShape, single.request, "/request"),
    ...(single.token === null || single.token === undefined ? [] : shapeErrors(validateTokenShape, single.token, "/token")),
  ];
  if (shape.length > 0) return { ok: false, errors: shape };
  const errors: string[] = [];
  const fail = (pointer: string, message: string) => errors.push(pointer === "" ? message : `${pointer}: ${message}`);
  let spec: TokenSpec | null = null;
  if (single.fixture !== undefined) {
    const hash = single.fixture.lastIndexOf("#");
    if (hash <= 0) return { ok: false, errors: [`invalid fixture \`${single.fixture}\`: expected \`file#name\``] };
    let file: TestFileSpec;
    try {
      file = JSON.parse(readFileSync(single.fixture.slice(0, hash), "utf8")) as TestFileSpec;
    } catch (error) {
      return { ok: false, errors: [`cannot read fixture file: ${error instanceof Error ? error.message : String(error)}`] };
    }
    const resolved = resolveFixture(single.fixture.slice(hash + 1), file.fixtures?.tokens ?? {}, "", "token", fail);
    if (resolved === undefined) return { ok: false, errors };
    spec = resolved;
  } else if (single.token !== null && single.token !== undefined) {
    spec = single.token as TokenSpec;
  }
  let token: { record: TokenRecord; string: string } | null | undefined = null;
  if (single.record !== undefined) {
    const prefix = [...policy.environmentByPrefix].find(([, env]) => env === single.record!.environment)?.[0];
    if (prefix === undefined) return { ok: false, errors: [`token environment \`${single.record.environment}\` is not in this policy set`] };
    token = { record: single.record, string: generateToken(prefix) };
  } else if (spec !== null) {
    token = buildToken(policy, spec, "explain", "/token", fail);
  }
  if (token === undefined) return { ok: false, errors };
  const built = buildInput(policy, single.request, token, "/request", fail);
  if (built === undefined) return { ok: false, errors };
  const stored = token !== null && spec?.stored !== false ? token.record : undefined;
  return { ok: true, input: built.input, facts: { token: stored, tenantSuspended: single.tenantSuspended, workspaceRestricted: single.workspaceRestricted } };
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
  let decision = authorize(c.input).decision;
  for (let i = 1; i < c.repeat; i++) decision = authorize(c.input).decision;
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
  for (const [key, value] of Object.entries(expect.details ?? {})) check(`detail \`${key}\``, value, decision.details[key]);
  return out;
}

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

/** Exit code of a run: 2 when a test file is invalid, else 1 when a case failed, else 0. */
export function exitCodeOf(run: TestRun): number {
  if (run.errors.length > 0) return 2;
  return run.results.some((r) => !r.passed) ? 1 : 0;
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
