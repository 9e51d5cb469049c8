import { crc32 } from "node:zlib";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  BASE62_ALPHABET,
  TOKEN_BODY_LENGTH,
  TOKEN_CHECKSUM_LENGTH,
  TOKEN_RANDOM_LENGTH,
  generateToken,
  newTokenId,
  parseToken,
} from "../../src/token/format.js";

const PREFIXES = ["sk_live_eu_", "sk_sandbox_", "sk_live_", "sk_test_"] as const;

function decodeBase62(text: string): bigint {
  let value = 0n;
  for (const char of text) value = value * 62n + BigInt(BASE62_ALPHABET.indexOf(char));
  return value;
}

/** Rebuilds a token from a prefix and random part with a correct checksum. */
function withChecksum(prefix: string, random: string): string {
  let crc = BigInt(crc32(prefix + random));
  let checksum = "";
  for (let i = 0; i < TOKEN_CHECKSUM_LENGTH; i++) {
    checksum = BASE62_ALPHABET[Number(crc % 62n)] + checksum;
    crc /= 62n;
  }
  return prefix + random + checksum;
}

describe("generateToken and parseToken", () => {
  it.each(PREFIXES)("round-trips a token with prefix %s to that prefix", (prefix) => {
    for (let i = 0; i < 50; i++) {
      const token = generateToken(prefix);
      expect(token).toHaveLength(prefix.length + TOKEN_BODY_LENGTH);
      expect(parseToken(token, PREFIXES)).toEqual({ ok: true, prefix });
    }
  });

  it("matches a prefix that is itself a prefix of another, whatever the order of the list", () => {
    const short = generateToken("sk_live_");
    const long = generateToken("sk_live_eu_");
    for (const prefixes of [["sk_live_", "sk_live_eu_"], ["sk_live_eu_", "sk_live_"]]) {
      expect(parseToken(short, prefixes)).toEqual({ ok: true, prefix: "sk_live_" });
      expect(parseToken(long, prefixes)).toEqual({ ok: true, prefix: "sk_live_eu_" });
    }
  });

  it("carries at least 32 bytes of entropy in a fixed 43-character base62 random part", () => {
    const seen = new Set<string>();
    let max = 0n;
    for (let i = 0; i < 2000; i++) {
      const token = generateToken("sk_test_");
      expect(token.length).toBeGreaterThanOrEqual("sk_test_".length + 43);
      const random = token.slice("sk_test_".length, "sk_test_".length + TOKEN_RANDOM_LENGTH);
      expect(random).toMatch(/^[0-9A-Za-z]{43}$/);
      const value = decodeBase62(random);
      expect(value < 1n << 256n).toBe(true);
      if (value > max) max = value;
      seen.add(random);
    }
    expect(seen.size).toBe(2000);
    // With 2000 draws of 256 bits, the top bit is set in some draw unless the source is broken.
    expect(max >= 1n << 255n).toBe(true);
  });

  it("accepts the smallest and the largest 43-digit random parts", () => {
    const random = "0".repeat(TOKEN_RANDOM_LENGTH);
    expect(parseToken(withChecksum("sk_test_", random), PREFIXES)).toEqual({ ok: true, prefix: "sk_test_" });
    // 62^43 - 1 is the largest 43-digit value and still a well-formed body.
    const largest = "z".repeat(TOKEN_RANDOM_LENGTH);
    expect(parseToken(withChecksum("sk_test_", largest), PREFIXES)).toEqual({ ok: true, prefix: "sk_test_" });
  });

  const valid = generateToken("sk_live_");
  const body = valid.slice("sk_live_".length);
  it.each([
    ["the empty string", ""],
    ["only a prefix", "sk_live_"],
    ["an unknown prefix", "pk_live_" + body],
    ["a prefix in another case", "SK_LIVE_" + body],
    ["a body one character short", valid.slice(0, -1)],
    ["a body one character long", valid + "0"],
    ["a character outside base62 in the random part", "sk_live_" + "-" + body.slice(1)],
    ["a character outside base62 in the checksum", valid.slice(0, -1) + "_"],
    ["a non-ASCII character", "sk_live_" + "é" + body.slice(1)],
    ["surrounding whitespace", " " + valid.slice(1)],
    ["a known prefix with no token", "sk_live_eu_"],
  ])("rejects %s as malformed", (_name, raw) => {
    expect(parseToken(raw, PREFIXES)).toEqual({ ok: false, reason: "malformed" });
  });

  it("rejects a swapped checksum as bad_checksum", () => {
    const other = generateToken("sk_live_");
    const forged = valid.slice(0, -TOKEN_CHECKSUM_LENGTH) + other.slice(-TOKEN_CHECKSUM_LENGTH);
    if (forged !== valid) expect(parseToken(forged, PREFIXES)).toEqual({ ok: false, reason: "bad_checksum" });
  });

  it("catches every single-character typo in the random part and checksum as bad_checksum", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...PREFIXES),
        fc.integer({ min: 0, max: TOKEN_BODY_LENGTH - 1 }),
        fc.integer({ min: 1, max: 61 }),
        (prefix, position, shift) => {
          const token = generateToken(prefix);
          const index = prefix.length + position;
          const digit = BASE62_ALPHABET.indexOf(token[index]!);
          const typo = token.slice(0, index) + BASE62_ALPHABET[(digit + shift) % 62] + token.slice(index + 1);
          expect(parseToken(typo, PREFIXES)).toEqual({ ok: false, reason: "bad_checksum" });
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("catches every single-character substitution of one fixed token exhaustively", () => {
    const token = generateToken("sk_test_");
    for (let index = "sk_test_".length; index < token.length; index++) {
      for (const char of BASE62_ALPHABET) {
        if (char === token[index]) continue;
        const typo = token.slice(0, index) + char + token.slice(index + 1);
        expect(parseToken(typo, PREFIXES)).toEqual({ ok: false, reason: "bad_checksum" });
      }
    }
  });
});

describe("newTokenId", () => {
  it("is tok_ and 20 base62 characters, and unique across draws", () => {
    const ids = new Set<string>();
    for (let i = 0; i < 1000; i++) {
      const id = newTokenId();
      expect(id).toMatch(/^tok_[0-9A-Za-z]{20}$/);
      ids.add(id);
    }
    expect(ids.size).toBe(1000);
  });
});
