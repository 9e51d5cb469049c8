import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { checkUtf8, decodeUtf8, encodeUtf8 } from "../../src/transport/text-encoding.js";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const strict = new TextDecoder("utf-8", { fatal: true });

describe("fast text encoding for protobuf-es", () => {
  it("encodes exactly as TextEncoder does, short and long, ASCII or not", () => {
    const text = fc.oneof(fc.string({ maxLength: 80 }), fc.string({ unit: "grapheme", maxLength: 80 }), fc.string({ unit: "binary", maxLength: 80 }));
    fc.assert(
      fc.property(text, (value) => {
        expect([...encodeUtf8(value)]).toEqual([...encoder.encode(value)]);
      }),
      { numRuns: 2_000 },
    );
  });

  it("decodes exactly as TextDecoder does, invalid bytes included", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), (bytes) => {
        expect(decodeUtf8(bytes)).toBe(decoder.decode(bytes));
        let expected: string | Error;
        try {
          expected = strict.decode(bytes);
        } catch (error) {
          expected = error as Error;
        }
        if (typeof expected === "string") expect(decodeUtf8(bytes, true)).toBe(expected);
        else expect(() => decodeUtf8(bytes, true)).toThrow();
      }),
      { numRuns: 2_000 },
    );
  });

  it.each([
    ["ascii", "payouts:read", true],
    ["non-ascii", "café ✓ 𝄞", true],
    ["a lone high surrogate", "a\ud800b", false],
    ["a lone low surrogate", "\udc00", false],
  ])("checkUtf8 on %s", (_name, text, valid) => {
    expect(checkUtf8(text)).toBe(valid);
  });
});
