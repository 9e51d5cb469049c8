/**
 * The token format: `<prefix><random><checksum>`. Pure apart from
 * `crypto.randomBytes`, so the store, the CLI and the engine share one
 * definition of what a token looks like.
 *
 * - `random` is 32 bytes from the CSPRNG written as one big-endian base62
 *   number, left-padded with `0` to 43 characters (62^43 > 2^256, so every
 *   value fits and the length never varies).
 * - `checksum` is CRC-32 of `prefix + random`, base62, padded to 6 characters
 *   (62^6 > 2^32). CRC-32 catches every single-character typo (any error burst
 *   of at most 32 bits), so a mistyped token is rejected without a store look-up.
 *   It is not a MAC: forgeries are stopped by the keyed hash in the store.
 */
import { randomBytes } from "node:crypto";
import { crc32 } from "node:zlib";

/** The base62 alphabet, in digit order: `0-9A-Za-z`. */
export const BASE62_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/** Characters of the random part: 32 bytes as a fixed-width base62 number. */
export const TOKEN_RANDOM_LENGTH = 43;

/** Characters of the checksum: CRC-32 as a fixed-width base62 number. */
export const TOKEN_CHECKSUM_LENGTH = 6;

/** Characters after the prefix: random part plus checksum. */
export const TOKEN_BODY_LENGTH = TOKEN_RANDOM_LENGTH + TOKEN_CHECKSUM_LENGTH;

const RANDOM_BYTES = 32;
const TOKEN_ID_PREFIX = "tok_";
const TOKEN_ID_RANDOM_LENGTH = 20;

/**
 * Base62 digit value per ASCII code, -1 for anything else. Built once so that
 * parsing is a table look-up per character, with no regex on the request path.
 */
const DIGIT_VALUE: Int8Array = (() => {
  const table = new Int8Array(128).fill(-1);
  for (let i = 0; i < BASE62_ALPHABET.length; i++) table[BASE62_ALPHABET.charCodeAt(i)] = i;
  return table;
})();

/** Result of {@link parseToken}: the matched prefix, or why the string is not a token. */
export type ParseTokenResult =
  | { readonly ok: true; readonly prefix: string }
  | { readonly ok: false; readonly reason: "malformed" | "bad_checksum" };

const MALFORMED: ParseTokenResult = Object.freeze({ ok: false, reason: "malformed" });
const BAD_CHECKSUM: ParseTokenResult = Object.freeze({ ok: false, reason: "bad_checksum" });

/**
 * Generates a new secret token for `prefix`. The result is `prefix.length + 49`
 * characters long and is shown to its owner once; only its keyed hash is kept.
 *
 * @example
 * ```ts
 * const token = generateToken("sk_live_"); // "sk_live_3fT0…Qk9a2"
 * ```
 */
export function generateToken(prefix: string): string {
  // BigInt is fine here: generation happens once per token, never per request.
  const random = encodeFixed(BigInt("0x" + randomBytes(RANDOM_BYTES).toString("hex")), TOKEN_RANDOM_LENGTH);
  const head = prefix + random;
  return head + encodeFixed(BigInt(crc32(head)), TOKEN_CHECKSUM_LENGTH);
}

/**
 * Checks that `raw` has the token format for one of `prefixes` and that its
 * checksum matches. Runs on every request: no regex, no BigInt, one substring.
 *
 * The prefix is chosen by length as well as by `startsWith`, because the body
 * has a fixed length: at most one declared prefix can fit, so `sk_live_` and
 * `sk_live_eu_` never shadow each other and the order of `prefixes` does not
 * matter (callers may still pass them longest first).
 *
 * @returns `malformed` for an unknown prefix, a wrong length or a character
 * outside base62; `bad_checksum` when only the checksum disagrees (a typo).
 */
export function parseToken(raw: string, prefixes: readonly string[]): ParseTokenResult {
  const prefixLength = raw.length - TOKEN_BODY_LENGTH;
  if (prefixLength < 0) return MALFORMED;
  let prefix: string | undefined;
  for (const candidate of prefixes) {
    if (candidate.length === prefixLength && raw.startsWith(candidate)) {
      prefix = candidate;
      break;
    }
  }
  if (prefix === undefined) return MALFORMED;

  for (let i = prefixLength; i < raw.length; i++) {
    const code = raw.charCodeAt(i);
    if (code >= 128 || DIGIT_VALUE[code]! < 0) return MALFORMED;
  }

  // 62^6 < 2^53, so the checksum decodes exactly in a double.
  let checksum = 0;
  for (let i = raw.length - TOKEN_CHECKSUM_LENGTH; i < raw.length; i++) {
    checksum = checksum * 62 + DIGIT_VALUE[raw.charCodeAt(i)]!;
  }
  if (checksum !== crc32(raw.slice(0, raw.length - TOKEN_CHECKSUM_LENGTH))) return BAD_CHECKSUM;
  return { ok: true, prefix };
}

/**
 * Generates a public token id: `tok_` and 20 base62 characters (about 119 bits).
 * Ids are not secrets; they are safe to log, show and put in headers.
 */
export function newTokenId(): string {
  let id = TOKEN_ID_PREFIX;
  while (id.length < TOKEN_ID_PREFIX.length + TOKEN_ID_RANDOM_LENGTH) {
    for (const byte of randomBytes(32)) {
      // Rejection sampling: 248 = 4 * 62, so bytes below it map to digits without modulo bias.
      if (byte < 248 && id.length < TOKEN_ID_PREFIX.length + TOKEN_ID_RANDOM_LENGTH) {
        id += BASE62_ALPHABET[byte % 62];
      }
    }
  }
  return id;
}

/** Writes `value` in base62, most significant digit first, left-padded with `0` to `width`. */
function encodeFixed(value: bigint, width: number): string {
  let out = "";
  for (let i = 0; i < width; i++) {
    out = BASE62_ALPHABET[Number(value % 62n)] + out;
    value /= 62n;
  }
  // INVARIANT: callers pass values below 62^width (32 bytes < 62^43, CRC-32 < 62^6).
  return out;
}
