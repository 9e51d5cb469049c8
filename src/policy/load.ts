/**
 * Loads a policy folder: reads every `*.json` file directly in it, parses it
 * keeping positions, validates it against the schema, merges the files,
 * cross-checks the result and compiles it. Bad input never throws: every
 * error found is returned, placed and sorted.
 */
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { getNodeValue, parseTree, printParseErrorCode, type Node, type ParseError } from "jsonc-parser";
import {
  compilePolicySet,
  type Located,
  type MergedPolicySet,
} from "./compile.js";
import { crossCheckPolicySet } from "./crosscheck.js";
import {
  computeLineStarts,
  errorAt,
  escapePointerToken,
  positionAt,
  sortPolicyErrors,
  type PolicyError,
  type PolicySource,
} from "./errors.js";
import { readRegularFile } from "./read-regular-file.js";
import { validatePolicyFile } from "./schema.js";
import type { CompiledPolicySet, PolicyFile } from "./types.js";

/** Result of {@link loadPolicySet}. */
export type LoadPolicySetResult =
  | { ok: true; policy: CompiledPolicySet; files: string[] }
  | { ok: false; errors: PolicyError[] };

const PARSE_MESSAGES: ReadonlyMap<string, string> = new Map([
  ["InvalidSymbol", "invalid symbol"],
  ["InvalidNumberFormat", "invalid number"],
  ["PropertyNameExpected", "expected a property name in double quotes"],
  ["ValueExpected", "expected a value"],
  ["ColonExpected", "expected `:`"],
  ["CommaExpected", "expected `,`"],
  ["CloseBraceExpected", "expected `}`"],
  ["CloseBracketExpected", "expected `]`"],
  ["EndOfFileExpected", "expected end of file"],
  ["InvalidCommentToken", "comments are not allowed"],
  ["UnexpectedEndOfComment", "unterminated comment"],
  ["UnexpectedEndOfString", "unterminated string"],
  ["UnexpectedEndOfNumber", "unterminated number"],
  ["InvalidUnicode", "invalid unicode escape"],
  ["InvalidEscapeCharacter", "invalid escape character"],
  ["InvalidCharacter", "invalid character in string"],
]);

/** Sections that may appear in several files; their items are concatenated. */
const ARRAY_SECTIONS = [
  "environments",
  "scopes",
  "endpointGroups",
  "operations",
  "roles",
  "keyLevels",
  "controls",
] as const;

/** Sections the merged set needs at least one item of. */
const REQUIRED_SECTIONS = ["environments", "scopes", "endpointGroups"] as const;

function folderError(dir: string, message: string): PolicyError {
  return { file: dir, pointer: "", line: 0, column: 0, message };
}

function errorCode(error: unknown): string {
  return typeof error === "object" && error !== null && "code" in error ? String(error.code) : String(error);
}

/** Reports object members whose name repeats an earlier one in the same object. */
function findDuplicateKeys(source: PolicySource, node: Node, pointer: string, errors: PolicyError[]): void {
  if (node.type === "object") {
    const seen = new Set<string>();
    for (const prop of node.children ?? []) {
      const key = String(prop.children?.[0]?.value);
      const childPointer = `${pointer}/${escapePointerToken(key)}`;
      if (seen.has(key)) {
        errors.push({ file: source.file, pointer: childPointer, ...positionAt(source, prop.offset), message: `duplicate property \`${key}\`` });
      }
      seen.add(key);
      const value = prop.children?.[1];
      if (value !== undefined) findDuplicateKeys(source, value, childPointer, errors);
    }
  } else if (node.type === "array") {
    (node.children ?? []).forEach((item, i) => findDuplicateKeys(source, item, `${pointer}/${i}`, errors));
  }
}

/** Reads and parses one file; `value` is set only when it parsed cleanly. */
function readPolicyFile(
  dir: string,
  name: string,
  errors: PolicyError[],
): { source: PolicySource; value?: unknown } | undefined {
  const file = join(dir, name);
  const read = readRegularFile(file);
  if (!read.ok) {
    errors.push({ file, pointer: "", line: 0, column: 0, message: read.message });
    return undefined;
  }
  const text = read.text;
  const parseErrors: ParseError[] = [];
  // why: a byte order mark is not JSON; a space keeps every offset in place
  const parsable = text.startsWith("\uFEFF") ? ` ${text.slice(1)}` : text;
  const root = parseTree(parsable, parseErrors, { disallowComments: true, allowTrailingComma: false, allowEmptyContent: false });
  const source: PolicySource = { file, name, text, root, lineStarts: computeLineStarts(text) };
  let lastOffset = -1;
  for (const e of parseErrors) {
    // why: after one syntax error the parser often reports more at the same spot; they add nothing
    if (e.offset === lastOffset) continue;
    lastOffset = e.offset;
    const code = printParseErrorCode(e.error);
    const trailingComma =
      (code === "PropertyNameExpected" || code === "ValueExpected") &&
      /,\s*$/.test(parsable.slice(0, e.offset)) &&
      /^[}\]]/.test(parsable.slice(e.offset));
    const message = trailingComma ? "trailing commas are not allowed" : (PARSE_MESSAGES.get(code) ?? code);
    errors.push({ file, pointer: "", ...positionAt(source, e.offset), message: `invalid JSON: ${message}` });
  }
  if (parseErrors.length > 0 || root === undefined) return { source };
  const before = errors.length;
  findDuplicateKeys(source, root, "", errors);
  if (errors.length > before) return { source };
  return { source, value: getNodeValue(root) };
}

/** Merges validated files; reports a second `policySet` and missing sections. */
function mergeFiles(
  dir: string,
  files: readonly { source: PolicySource; value: PolicyFile }[],
  errors: PolicyError[],
): MergedPolicySet | undefined {
  let policySet: Located<PolicyFile["policySet"] & object> | undefined;
  let workspaceRestriction: Located<PolicyFile["workspaceRestriction"] & object> | undefined;
  let tokens: Located<PolicyFile["tokens"] & object> | undefined;
  const lists = new Map<string, Located<unknown>[]>(ARRAY_SECTIONS.map((s) => [s, []]));
  for (const { source, value } of files) {
    if (value.policySet !== undefined) {
      if (policySet === undefined) {
        policySet = { value: value.policySet, file: source.file, pointer: "/policySet" };
      } else {
        errors.push(errorAt(source, "/policySet", `section \`policySet\` is already defined in \`${policySet.file}\``, "keep one `policySet` section per folder"));
      }
    }
    if (value.workspaceRestriction !== undefined) {
      if (workspaceRestriction === undefined) {
        workspaceRestriction = { value: value.workspaceRestriction, file: source.file, pointer: "/workspaceRestriction" };
      } else {
        errors.push(
          errorAt(source, "/workspaceRestriction", `section \`workspaceRestriction\` is already defined in \`${workspaceRestriction.file}\``, "keep one `workspaceRestriction` section per folder"),
        );
      }
    }
    if (value.tokens !== undefined) {
      if (tokens === undefined) {
        tokens = { value: value.tokens, file: source.file, pointer: "/tokens" };
      } else {
        errors.push(errorAt(source, "/tokens", `section \`tokens\` is already defined in \`${tokens.file}\``, "keep one `tokens` section per folder"));
      }
    }
    for (const section of ARRAY_SECTIONS) {
      (value[section] ?? []).forEach((item: unknown, i: number) => {
        lists.get(section)?.push({ value: item, file: source.file, pointer: `/${section}/${i}` });
      });
    }
  }
  if (policySet === undefined) errors.push(folderError(dir, "policy set needs a `policySet` section"));
  for (const section of REQUIRED_SECTIONS) {
    if (lists.get(section)?.length === 0) {
      errors.push(folderError(dir, `policy set needs at least one entry in \`${section}\``));
    }
  }
  if (policySet === undefined || errors.length > 0) return undefined;
  // INVARIANT: every file passed the schema, so each list holds items of its section's type
  return { policySet, workspaceRestriction, tokens, ...Object.fromEntries(lists) } as unknown as MergedPolicySet;
}

/**
 * Loads, validates and compiles the policy set in `dir`: every `*.json` file
 * directly in it (not in subfolders), in name order. Never throws for bad
 * input. Stages run in order (parse and schema per file, then merge and
 * cross-checks, then compile) and a stage runs only when the ones before it
 * found nothing, so that its errors are not echoes of earlier ones. Errors of a
 * stage are collected across all files and sorted by file, line and column.
 *
 * @example
 * const result = loadPolicySet("policies");
 * if (!result.ok) throw new PolicyLoadError(result.errors);
 * result.policy.routes.match("GET", ["api", "payouts"], false);
 */
export function loadPolicySet(dir: string): LoadPolicySetResult {
  let names: string[];
  try {
    names = readdirSync(dir, { withFileTypes: true })
      .filter((e) => !e.isDirectory() && e.name.endsWith(".json"))
      .map((e) => e.name)
      .sort();
  } catch (error) {
    const code = errorCode(error);
    const message =
      code === "ENOENT"
        ? `policy folder \`${dir}\` does not exist`
        : code === "ENOTDIR"
          ? `\`${dir}\` is not a folder`
          : `cannot read policy folder \`${dir}\`: ${code}`;
    return { ok: false, errors: [folderError(dir, message)] };
  }
  if (names.length === 0) {
    return { ok: false, errors: [folderError(dir, `policy folder \`${dir}\` has no \`*.json\` files`)] };
  }

  const errors: PolicyError[] = [];
  const sources: PolicySource[] = [];
  const parsed: { source: PolicySource; value: PolicyFile }[] = [];
  for (const name of names) {
    const read = readPolicyFile(dir, name, errors);
    if (read === undefined) continue;
    sources.push(read.source);
    if (!("value" in read)) continue;
    const schemaErrors = validatePolicyFile(read.source, read.value);
    errors.push(...schemaErrors);
    if (schemaErrors.length === 0) parsed.push({ source: read.source, value: read.value as PolicyFile });
  }
  if (errors.length > 0) return { ok: false, errors: sortPolicyErrors(errors) };

  const merged = mergeFiles(dir, parsed, errors);
  if (merged === undefined) return { ok: false, errors: sortPolicyErrors(errors) };

  errors.push(...crossCheckPolicySet(merged, new Map(sources.map((s) => [s.file, s]))));
  if (errors.length > 0) return { ok: false, errors: sortPolicyErrors(errors) };

  try {
    const policy = compilePolicySet(merged, sources);
    return { ok: true, policy, files: sources.map((s) => s.file) };
  } catch (error) {
    // why: compile trusts the checks above; if one missed something, refuse instead of crashing
    const detail = error instanceof Error ? error.message : String(error);
    return { ok: false, errors: [folderError(dir, `cannot compile policy set: ${detail}`)] };
  }
}
