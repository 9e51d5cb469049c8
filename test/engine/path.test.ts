import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { normalizePath } from "../../src/engine/path.js";

describe("normalizePath", () => {
  it.each([
    ["/", "/", []],
    ["/api/payouts", "/api/payouts", ["api", "payouts"]],
    ["/api/payouts/", "/api/payouts", ["api", "payouts"]],
    ["//api///payouts", "/api/payouts", ["api", "payouts"]],
    ["/api/./payouts/.", "/api/payouts", ["api", "payouts"]],
    ["/api/payouts/../ledger", "/api/ledger", ["api", "ledger"]],
    ["/api/payouts/%2E%2E/ledger", "/api/ledger", ["api", "ledger"]],
    ["/api/payouts/%2e./ledger", "/api/ledger", ["api", "ledger"]],
    ["/../..", "/", []],
    ["/api/%7euser", "/api/~user", ["api", "~user"]],
    ["/api/%41%42c", "/api/ABc", ["api", "ABc"]],
    ["/api/a%3ab", "/api/a%3Ab", ["api", "a%3Ab"]],
    ["/api/%e2%82%ac", "/api/%E2%82%AC", ["api", "%E2%82%AC"]],
    ["/api/a:b@c!$&'()*+,=", "/api/a:b@c!$&'()*+,=", ["api", "a:b@c!$&'()*+,="]],
  ])("%s → %s", (raw, path, segments) => {
    const result = normalizePath(raw);
    expect(result).toEqual({ ok: true, value: { path, segments, query: "" } });
  });

  it.each([
    ["/api/a:b@c!$&'()*+,;=", "/api/a:b@c!$&'()*+,;=", ["api", "a:b@c!$&'()*+,;="]],
  ])("keeps `;` parameters when asked: %s → %s", (raw, path, segments) => {
    const result = normalizePath(raw, { parameters: "keep" });
    expect(result).toEqual({ ok: true, value: { path, segments, query: "" } });
  });

  it("keeps the query raw and separate", () => {
    const result = normalizePath("/api/payouts/?a=%2F&b=../x");
    expect(result).toEqual({ ok: true, value: { path: "/api/payouts", segments: ["api", "payouts"], query: "a=%2F&b=../x" } });
  });

  it.each([
    ["", "not_origin_form"],
    ["?x", "not_origin_form"],
    ["*", "not_origin_form"],
    ["/a%2Fb", "encoded_slash"],
    ["/a%5Cb", "encoded_backslash"],
    ["/a%00", "encoded_nul"],
    ["/a%", "bad_percent_encoding"],
    ["/a%4", "bad_percent_encoding"],
    ["/a%4?x", "bad_percent_encoding"],
    ["/a%g1", "bad_percent_encoding"],
    ["/a b", "forbidden_character"],
    ["/a#frag", "forbidden_character"],
    ["/a\\b", "forbidden_character"],
    ["/a\u0000b", "forbidden_character"],
    ["/a\u00e9", "forbidden_character"],
    ["/a{b}", "forbidden_character"],
  ])("rejects %j as %s", (raw, reason) => {
    expect(normalizePath(raw)).toEqual({ ok: false, reason });
  });

  const pathChars = fc.constantFrom("a", "B", "7", "-", ".", "_", "~", "/", "%2e", "%2E", "%41", "%3a", "..", "./", ":", "@", "!");
  const rawPath = fc.array(pathChars, { maxLength: 30 }).map((parts) => "/" + parts.join(""));

  it("normalising twice equals normalising once", () => {
    fc.assert(
      fc.property(rawPath, (raw) => {
        const once = normalizePath(raw);
        if (!once.ok) return;
        const twice = normalizePath(once.value.path);
        expect(twice).toEqual({ ok: true, value: { ...once.value, query: "" } });
      }),
    );
  });

  it("never leaves dot segments, empty segments or a trailing slash", () => {
    fc.assert(
      fc.property(rawPath, (raw) => {
        const result = normalizePath(raw);
        if (!result.ok) return;
        for (const segment of result.value.segments) {
          expect(segment).not.toBe("");
          expect(segment).not.toBe(".");
          expect(segment).not.toBe("..");
        }
        expect(result.value.path === "/" || !result.value.path.endsWith("/")).toBe(true);
      }),
    );
  });
});
