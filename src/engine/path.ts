/**
 * Request-target normalisation: the path the engine judges must be the path the
 * upstream will serve, whatever encoding tricks the client used.
 */
import type { PathParameterMode } from "../policy/types.js";

/** A request target split into a normalised path and its raw query. */
export interface NormalizedTarget {
  /** `/`-joined segments with dot segments resolved, no empty segments, no trailing slash. */
  readonly path: string;
  /** The path's segments; `[]` for `/`. */
  readonly segments: readonly string[];
  /** Raw query without the `?`, not decoded; `""` when absent. */
  readonly query: string;
}

/** Why a target could not be normalised. */
export type PathRejection =
  | "not_origin_form"
  | "bad_percent_encoding"
  | "encoded_slash"
  | "encoded_backslash"
  | "encoded_nul"
  | "forbidden_character"
  /** `..;`, `.;x`, `;x` or `..%3B`: servlet containers drop the parameter and resolve the dot segment. */
  | "dot_segment_parameters"
  /** A `;` parameter elsewhere while the policy set refuses them. */
  | "path_parameters"
  /** `%25` followed by two hex digits: an upstream that decodes twice would see another character. */
  | "double_encoding"
  /** Escaped bytes that are not well-formed UTF-8: overlong forms such as `%C0%AE` decode to `.` in lax decoders. */
  | "invalid_utf8"
  /** Characters that NFKC turns into others (`%EF%BC%8E`, fullwidth `.`), as normalising upstreams do. */
  | "unnormalized_unicode"
  /** A segment of dots and spaces other than `.` and `..` (`...`, `..%20`): Windows trims it to a dot segment. */
  | "ambiguous_dot_segment";

/** Options of {@link normalizePath}. */
export interface NormalizePathOptions {
  /** Default `refuse`. */
  readonly parameters?: PathParameterMode;
}

/** Character classes for bytes below 128: 0 forbidden, 1 allowed as-is, 2 unreserved. */
const CHAR_CLASS = buildCharClass();

function buildCharClass(): Uint8Array {
  const table = new Uint8Array(128);
  const unreserved = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~";
  // RFC 3986 pchar minus unreserved and pct-encoded: sub-delims, ":" and "@".
  const otherPchar = "!$&'()*+,;=:@";
  for (const c of unreserved) table[c.charCodeAt(0)] = 2;
  for (const c of otherPchar) table[c.charCodeAt(0)] = 1;
  return table;
}

function hexValue(code: number): number {
  if (code >= 48 && code <= 57) return code - 48;
  if (code >= 65 && code <= 70) return code - 55;
  if (code >= 97 && code <= 102) return code - 87;
  return -1;
}

const HEX_UPPER = "0123456789ABCDEF";

/**
 * Normalises a raw request target (`/a/./b//c/%7Ex?q=1`) per RFC 3986 §6.2.2:
 * percent-encoded unreserved characters are decoded, other escapes are kept
 * with upper-case hex, dot segments are resolved (never above the root),
 * empty segments and a trailing slash are dropped.
 *
 * An encoded slash, backslash or NUL is rejected rather than decoded: upstreams
 * disagree on whether `%2F` separates segments, so no answer is safe. Raw
 * characters outside RFC 3986's `pchar` (spaces, backslashes, `#`, non-ASCII)
 * are rejected for the same reason. So is every spelling some upstream
 * resolves differently from RFC 3986 (see {@link PathRejection}): a dot or
 * empty segment with `;` parameters, double encoding, malformed UTF-8, NFKC
 * compatibility characters, dot-and-space segments; and, unless
 * `options.parameters` is `keep`, any `;` parameter.
 */
export function normalizePath(
  target: string,
  options: NormalizePathOptions = {},
): { ok: true; value: NormalizedTarget } | { ok: false; reason: PathRejection } {
  const keepParameters = options.parameters === "keep";
  const queryStart = target.indexOf("?");
  const end = queryStart === -1 ? target.length : queryStart;
  const query = queryStart === -1 ? "" : target.slice(queryStart + 1);
  if (end === 0 || target.charCodeAt(0) !== 47 /* / */) return { ok: false, reason: "not_origin_form" };

  const segments: string[] = [];
  let segment = "";
  let dirty = false; // segment differs from its raw slice
  let suspect = false; // segment holds `;`, `%3B`, `%25`, an escaped non-ASCII byte or starts with a dot
  let rawParameter = false; // segment holds a raw `;`
  let segmentStart = 1;
  for (let i = 1; i <= end; i++) {
    const code = i === end ? 47 : target.charCodeAt(i);
    if (code === 47) {
      const value = dirty ? segment : target.slice(segmentStart, i);
      if (suspect) {
        const reason = judgeSuspectSegment(value, rawParameter && !keepParameters);
        if (reason !== null) return { ok: false, reason };
      }
      suspect = false;
      rawParameter = false;
      if (value === "..") {
        segments.pop();
      } else if (value !== "" && value !== ".") {
        segments.push(value);
      }
      segment = "";
      dirty = false;
      segmentStart = i + 1;
      continue;
    }
    if (code === 37 /* % */) {
      if (i + 2 >= end) return { ok: false, reason: "bad_percent_encoding" };
      const high = hexValue(target.charCodeAt(i + 1));
      const low = hexValue(target.charCodeAt(i + 2));
      if (high < 0 || low < 0) return { ok: false, reason: "bad_percent_encoding" };
      const byte = high * 16 + low;
      if (byte === 0x2f) return { ok: false, reason: "encoded_slash" };
      if (byte === 0x5c) return { ok: false, reason: "encoded_backslash" };
      if (byte === 0x00) return { ok: false, reason: "encoded_nul" };
      if (!dirty) {
        segment = target.slice(segmentStart, i);
        dirty = true;
      }
      if (byte === 0x3b || byte === 0x25 || byte >= 0x80 || (byte === 0x2e && segment === "")) suspect = true;
      segment += byte < 128 && CHAR_CLASS[byte] === 2 ? String.fromCharCode(byte) : "%" + HEX_UPPER[high] + HEX_UPPER[low];
      i += 2;
      continue;
    }
    if (code >= 128 || CHAR_CLASS[code] === 0) return { ok: false, reason: "forbidden_character" };
    if (code === 59 /* ; */) {
      suspect = true;
      rawParameter = true;
    } else if (code === 46 /* . */ && i === segmentStart) suspect = true;
    if (dirty) segment += target[i];
  }
  return { ok: true, value: { path: "/" + segments.join("/"), segments, query } };
}

// Up to the first `;` or `%3B`: what a servlet container keeps of a segment.
const PARAMETER_START = /;|%3B/;
// Dots, then dots and spaces: `...`, `..%20`, `.%20` (Windows trims trailing dots and spaces).
const DOTS_AND_SPACES = /^\.(?:\.|%20)*$/;
const DOUBLE_ENCODING = /%25[0-9A-Fa-f]{2}/;

/**
 * The rare segments that need a closer look, already in normal form (escapes
 * upper-case, unreserved decoded). Returns why one is refused, or `null`.
 */
function judgeSuspectSegment(value: string, refuseParameters: boolean): PathRejection | null {
  const parameterAt = value.search(PARAMETER_START);
  if (parameterAt !== -1) {
    const head = value.slice(0, parameterAt);
    // `..;x` is `..` to Tomcat, Jetty and Spring; `;x` is an empty segment they merge away.
    if (head === "" || DOTS_AND_SPACES.test(head)) return "dot_segment_parameters";
    if (refuseParameters && value.includes(";")) return "path_parameters";
  }
  if (value !== "." && value !== ".." && DOTS_AND_SPACES.test(value)) return "ambiguous_dot_segment";
  if (DOUBLE_ENCODING.test(value)) return "double_encoding";
  if (value.includes("%")) {
    let text: string;
    try {
      // decodeURIComponent refuses overlong forms, surrogates and truncated sequences (ECMA-262 Decode)
      text = decodeURIComponent(value);
    } catch {
      return "invalid_utf8";
    }
    if (text.normalize("NFKC") !== text) return "unnormalized_unicode";
  }
  return null;
}
