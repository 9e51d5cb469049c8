/**
 * Loads a policy folder: reads every `*.json` file directly in it (but
 * `*.schema.json`, a schema the folder carries for editors), parses it
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
import { loadTrustedCas } from "./trusted-cas.js";
import { loadWebhookEndpoints } from "./webhook-endpoints.js";
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

/** Sections that appear once per folder. */
const OBJECT_SECTIONS = ["policySet", "workspaceRestriction", "tokens"] as const;

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

/**
 * Marks the sections a file that did not parse (or repeated a property) names
 * at its top level as incomplete: what they held is unknown. With no tree at
 * all, every section is.
 */
function markUnreadSections(root: Node | undefined, incomplete: Set<string>): void {
  const names = root?.type === "object" ? (root.children ?? []).map((prop) => String(prop.children?.[0]?.value)) : undefined;
  for (const section of [...ARRAY_SECTIONS, ...OBJECT_SECTIONS]) {
    if (names === undefined || names.includes(section)) incomplete.add(section);
  }
}

/**
 * The parts of a parsed file that no schema error touches: items of list
 * sections and whole single sections. Sections that lost something are added
 * to `incomplete`, so that later checks do not report references into them.
 * Returns `undefined` when the file is not an object at all.
 */
function keepValidParts(value: unknown, schemaErrors: readonly PolicyError[], incomplete: Set<string>): PolicyFile | undefined {
  if (schemaErrors.length === 0) return value as PolicyFile;
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    markUnreadSections(undefined, incomplete);
    return undefined;
  }
  const touches = (pointer: string) => schemaErrors.some((e) => e.pointer === pointer || e.pointer.startsWith(`${pointer}/`));
  const record = value as Record<string, unknown>;
  const kept: Record<string, unknown> = {};
  for (const section of OBJECT_SECTIONS) {
    if (!(section in record)) continue;
    if (touches(`/${section}`)) incomplete.add(section);
    else kept[section] = record[section];
  }
  for (const section of ARRAY_SECTIONS) {
    const items = record[section];
    if (items === undefined) continue;
    if (!Array.isArray(items) || schemaErrors.some((e) => e.pointer === `/${section}`)) {
      incomplete.add(section);
      continue;
    }
    // why: positions are kept (holes, not a shorter list) so that pointers still name the right item
    kept[section] = items.map((item, i) => (touches(`/${section}/${i}`) ? undefined : item));
    if (items.some((_, i) => touches(`/${section}/${i}`))) incomplete.add(section);
  }
  // INVARIANT: each kept part passed the schema on its own
  return kept as PolicyFile;
}

/** Merges validated files; reports a second `policySet` and missing sections. */
function mergeFiles(
  dir: string,
  files: readonly { source: PolicySource; value: PolicyFile }[],
  errors: PolicyError[],
  incomplete: ReadonlySet<string>,
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
        if (item !== undefined) lists.get(section)?.push({ value: item, file: source.file, pointer: `/${section}/${i}` });
      });
    }
  }
  if (policySet === undefined && !incomplete.has("policySet")) errors.push(folderError(dir, "policy set needs a `policySet` section"));
  let missing = false;
  for (const section of REQUIRED_SECTIONS) {
    if (lists.get(section)?.length === 0) {
      missing = true;
      if (!incomplete.has(section)) errors.push(folderError(dir, `policy set needs at least one entry in \`${section}\``));
    }
  }
  if (policySet === undefined || missing) return undefined;
  // INVARIANT: every file passed the schema, so each list holds items of its section's type
  return { policySet, workspaceRestriction, tokens, ...Object.fromEntries(lists) } as unknown as MergedPolicySet;
}

/**
 * Loads, validates and compiles the policy set in `dir`: every `*.json` file
 * directly in it (not in subfolders), in name order. Never throws for bad
 * input. Stages run in order (parse and schema per file, then merge and
 * cross-checks, then compile). Every stage runs on what passed the ones
 * before it: an item with a schema error is left out of the merge, and a
 * reference into a section that lost items is not checked, so that errors are
 * not echoes of earlier ones. Compilation runs only when nothing was found.
 * Errors are collected across all files and sorted by file, line and column.
 *
 * @example
 * const result = loadPolicySet("policies");
 * if (!result.ok) throw new PolicyLoadError(result.errors);
 * result.policy.routes.match("GET", ["api", "payouts"], false);
 *
 * `options.readWebhookSecrets` (default `true`): `false` checks each webhook
 * secret reference's form but reads no secret (every endpoint's `secret` is
 * empty), for commands that send no webhooks (`tokens …`), so that an
 * operator's shell needs no webhook secret to create a token.
 */
export function loadPolicySet(dir: string, options: { readonly readWebhookSecrets?: boolean } = {}): LoadPolicySetResult {
  let names: string[];
  try {
    names = readdirSync(dir, { withFileTypes: true })
      .filter((e) => !e.isDirectory() && e.name.endsWith(".json"))
      .map((e) => e.name)
      // A policy folder may carry its JSON Schema (`policy.schema.json`) for editors: it is not a policy file.
      .filter((name) => !name.endsWith(".schema.json"))
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
  const incomplete = new Set<string>();
  for (const name of names) {
    const read = readPolicyFile(dir, name, errors);
    if (read === undefined) {
      markUnreadSections(undefined, incomplete);
      continue;
    }
    sources.push(read.source);
    if (!("value" in read)) {
      markUnreadSections(read.source.root, incomplete);
      continue;
    }
    const schemaErrors = validatePolicyFile(read.source, read.value);
    errors.push(...schemaErrors);
    const kept = keepValidParts(read.value, schemaErrors, incomplete);
    if (kept !== undefined) parsed.push({ source: read.source, value: kept });
  }

  // why: later stages run on what passed the earlier ones, so one run reports
  // every error findable (authors fix a file once, not round after round)
  const merged = mergeFiles(dir, parsed, errors, incomplete);
  if (merged === undefined) return { ok: false, errors: sortPolicyErrors(errors) };

  errors.push(...crossCheckPolicySet(merged, new Map(sources.map((s) => [s.file, s])), incomplete));
  if (errors.length > 0) return { ok: false, errors: sortPolicyErrors(errors) };

  const cas = loadTrustedCas(dir, merged.policySet, new Map(sources.map((s) => [s.file, s])));
  // why: secrets are read, never hashed into the revision (it is shown in /readyz and on every decision)
  const webhooks = loadWebhookEndpoints(dir, merged.policySet, new Map(sources.map((s) => [s.file, s])), process.env, options.readWebhookSecrets ?? true);
  if (!cas.ok || !webhooks.ok) return { ok: false, errors: sortPolicyErrors([...(cas.ok ? [] : cas.errors), ...(webhooks.ok ? [] : webhooks.errors)]) };

  try {
    const policy = compilePolicySet(merged, [...sources, ...cas.revisionSources], cas.trust, webhooks.endpoints);
    return { ok: true, policy, files: sources.map((s) => s.file) };
  } catch (error) {
    // why: compile trusts the checks above; if one missed something, refuse instead of crashing
    const detail = error instanceof Error ? error.message : String(error);
    return { ok: false, errors: [folderError(dir, `cannot compile policy set: ${detail}`)] };
  }
}
