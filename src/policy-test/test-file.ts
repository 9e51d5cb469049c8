/**
 * The policy test file format: its JSON Schema, the shapes it describes,
 * and where test files are found.
 */
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { Ajv2020 } from "ajv/dist/2020.js";
import type { WorkspaceRestrictionFact } from "../engine/workspace-restriction-mode.js";
import testSchema from "./policy-test.schema.json" with { type: "json" };

/** The published JSON Schema (2020-12) of a policy test file. */
export const POLICY_TEST_SCHEMA: Readonly<Record<string, unknown>> = testSchema;

const ajv = new Ajv2020({ allErrors: true, strict: false });
export const validateFile = ajv.compile(testSchema);
// INVARIANT: compiling the file schema registered its `$defs` under its `$id`.
export const validateRequestShape = ajv.getSchema(`${testSchema.$id}#/$defs/request`)!;
export const validateTokenShape = ajv.getSchema(`${testSchema.$id}#/$defs/token`)!;

/** Schema violations of `value` as `pointer: message` lines, prefixed with `at`. */
export function shapeErrors(validate: typeof validateRequestShape, value: unknown, at: string): string[] {
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
  /** Headers an allow forwards upstream, with these values; `null` for one that must not be forwarded. */
  upstreamHeaders?: Record<string, string | null>;
  details?: Record<string, string>;
}

/** One case as a test file holds it. */
export interface CaseSpec {
  name: string;
  description?: string;
  token?: string | TokenSpec | null;
  request: string | RequestSpec;
  tenantSuspended?: boolean;
  /** `true` or `"writes"`: restricted for writes; `"all"`: frozen. */
  workspaceRestricted?: WorkspaceRestrictionFact;
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

