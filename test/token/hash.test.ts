import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { generateToken } from "../../src/token/format.js";
import { constantTimeEqual, hashToken } from "../../src/token/hash.js";

describe("hashToken", () => {
  const secret = randomBytes(32);
  const token = generateToken("sk_live_");

  it("is deterministic for one secret and 64 lower-case hex characters", () => {
    expect(hashToken(secret, token)).toBe(hashToken(secret, token));
    expect(hashToken(secret, token)).toMatch(/^[0-9a-f]{64}$/);
  });

  it("is keyed: another secret gives another hash", () => {
    expect(hashToken(randomBytes(32), token)).not.toBe(hashToken(secret, token));
  });

  it("does not contain the token", () => {
    expect(hashToken(secret, token)).not.toContain(token.slice(8, 20));
  });
});

describe("constantTimeEqual", () => {
  it.each([
    ["equal strings are equal", "abc123", "abc123", true],
    ["one differing character is unequal", "abc123", "abc124", false],
    ["different lengths are unequal without throwing", "abc", "abcd", false],
    ["two empty strings are equal", "", "", true],
  ])("%s", (_name, a, b, expected) => {
    expect(constantTimeEqual(a, b)).toBe(expected);
  });
});
