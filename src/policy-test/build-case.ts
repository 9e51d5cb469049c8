/**
 * Turns a test file's token and request descriptions into what the engine
 * reads: a token record with a real token string of its environment, and an
 * `AuthzInput`. Shared by test files, `policy explain` and the explorer.
 */
import { readFileSync } from "node:fs";
import type { AuthzInput, ClientCertificateFacts, TokenRecord } from "../engine/types.js";
import type { WorkspaceRestrictionFact } from "../engine/workspace-restriction-mode.js";
import { compileControls } from "../policy/controls.js";
import { validateControlsShape } from "../policy/schema.js";
import { suggest } from "../policy/suggest.js";
import type { CompiledPolicySet } from "../policy/types.js";
import { generateToken } from "../token/format.js";
import { shapeErrors, validateRequestShape, validateTokenShape, type RequestSpec, type TestFileSpec, type TokenSpec } from "./test-file.js";

/** A fixture name resolved, or an inline spec with its `fixture` applied; `undefined` after reporting an error. */
export function resolveFixture<T extends { fixture?: string }>(
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

/** Builds a token record from its description; `undefined` after reporting an error through `fail`. */
export function buildToken(
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

/** Builds the engine input of a request description; `undefined` after reporting an error through `fail`. */
export function buildInput(
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
  readonly workspaceRestricted: WorkspaceRestrictionFact;
  readonly nowMs: number;
}

/** Builds the engine input and stored facts of a {@link SingleCase}; errors are messages. */
export function prepareSingleCase(
  policy: CompiledPolicySet,
  single: SingleCase,
): { ok: true; input: AuthzInput; facts: { token: TokenRecord | undefined; tenantSuspended: boolean; workspaceRestricted: WorkspaceRestrictionFact } } | { ok: false; errors: string[] } {
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

