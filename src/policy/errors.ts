/**
 * Policy load errors: where each one is (file, JSON pointer, line and column)
 * and how a list of them reads on a terminal.
 */
import type { Node } from "jsonc-parser";

/** One problem found while loading a policy folder, placed in its source file. */
export interface PolicyError {
  /** Path of the file as given to the loader joined with the file name; the folder itself for folder-level errors. */
  file: string;
  /** JSON pointer (RFC 6901) to the offending value; empty for the whole file or folder. */
  pointer: string;
  /** 1-based line; 0 when the error has no position (folder-level errors). */
  line: number;
  /** 1-based column in UTF-16 code units; 0 when the error has no position. */
  column: number;
  /** Lower-case message without final period; user input in backticks. */
  message: string;
  /** A suggestion such as "did you mean `payouts:write`?". */
  hint?: string;
}

/** Thrown by callers that need an exception (start-up, CLI); carries every error found. */
export class PolicyLoadError extends Error {
  /** The errors, sorted by file, line and column. */
  readonly errors: readonly PolicyError[];

  /** Builds the error; its message is {@link formatPolicyErrors} of `errors`. */
  constructor(errors: readonly PolicyError[]) {
    super(formatPolicyErrors(errors));
    this.name = "PolicyLoadError";
    this.errors = errors;
  }
}

/**
 * Formats errors one per line, e.g.
 * `policies/roles.json:12:5 /roles/2/scopes/0: unknown scope `payouts:wirte` (did you mean `payouts:write`?)`.
 * Errors without a position print as `file: message`.
 */
export function formatPolicyErrors(errors: readonly PolicyError[]): string {
  return errors
    .map((e) => {
      const where = e.line > 0 ? `${e.file}:${e.line}:${e.column}` : e.file;
      const pointer = e.pointer === "" ? "" : ` ${e.pointer}`;
      const hint = e.hint === undefined ? "" : ` (${e.hint})`;
      return `${where}${pointer}: ${e.message}${hint}`;
    })
    .join("\n");
}

/** Sorts errors in place by file, then line, then column, and returns them. */
export function sortPolicyErrors(errors: PolicyError[]): PolicyError[] {
  return errors.sort(
    (a, b) =>
      (a.file < b.file ? -1 : a.file > b.file ? 1 : 0) || a.line - b.line || a.column - b.column,
  );
}

/** One policy file as read: its path, text and jsonc-parser syntax tree. */
export interface PolicySource {
  /** Path as given to the loader joined with the file name. */
  readonly file: string;
  /** File name only; what the revision hash covers. */
  readonly name: string;
  readonly text: string;
  /** Syntax tree; `undefined` when the file did not parse. */
  readonly root: Node | undefined;
  /** Offset of the start of each line, for offset to line/column. */
  readonly lineStarts: readonly number[];
}

/** Returns the offsets at which each line of `text` starts (the first line after any byte order mark). */
export function computeLineStarts(text: string): number[] {
  // why: editors do not count a byte order mark as a column
  const starts = [text.startsWith("\uFEFF") ? 1 : 0];
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    // why: a lone CR ends a line too (JSON allows CR, LF and CRLF as whitespace)
    if (c === 10 || (c === 13 && text.charCodeAt(i + 1) !== 10)) starts.push(i + 1);
  }
  return starts;
}

/** Converts a character offset into a 1-based line and column. */
export function positionAt(source: PolicySource, offset: number): { line: number; column: number } {
  const starts = source.lineStarts;
  let lo = 0;
  let hi = starts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if ((starts[mid] ?? 0) <= offset) lo = mid;
    else hi = mid - 1;
  }
  return { line: lo + 1, column: offset - (starts[lo] ?? 0) + 1 };
}

/** Splits a JSON pointer into unescaped reference tokens. */
export function parsePointer(pointer: string): string[] {
  if (pointer === "") return [];
  return pointer
    .slice(1)
    .split("/")
    .map((t) => t.replace(/~1/g, "/").replace(/~0/g, "~"));
}

/** Escapes one reference token for use in a JSON pointer. */
export function escapePointerToken(token: string | number): string {
  return String(token).replace(/~/g, "~0").replace(/\//g, "~1");
}

/**
 * Finds the offset of the node a pointer names: the property (its key) for an
 * object member, the value for an array item. Stops at the deepest node that
 * exists, so a pointer to a missing property lands on its parent object.
 */
export function offsetOfPointer(root: Node | undefined, pointer: string): number {
  if (root === undefined) return 0;
  let node: Node = root;
  let offset = root.offset;
  for (const token of parsePointer(pointer)) {
    const children = node.children ?? [];
    if (node.type === "object") {
      const prop = children.find((p) => p.children?.[0]?.value === token);
      const value = prop?.children?.[1];
      if (prop === undefined || value === undefined) break;
      offset = prop.offset;
      node = value;
    } else if (node.type === "array") {
      const item = /^(0|[1-9][0-9]*)$/.test(token) ? children[Number(token)] : undefined;
      if (item === undefined) break;
      offset = item.offset;
      node = item;
    } else {
      break;
    }
  }
  return offset;
}

/** Builds a {@link PolicyError} placed at the node `pointer` names in `source`. */
export function errorAt(
  source: PolicySource,
  pointer: string,
  message: string,
  hint?: string,
): PolicyError {
  const { line, column } = positionAt(source, offsetOfPointer(source.root, pointer));
  const error: PolicyError = { file: source.file, pointer, line, column, message };
  if (hint !== undefined) error.hint = hint;
  return error;
}
