/**
 * The judged path must be the path the upstream serves. Each row is a
 * traversal spelling from the security literature (servlet path parameters,
 * encoded and doubly encoded dots, mixed case, overlong UTF-8, backslashes,
 * Unicode compatibility forms, Windows trailing dots), sent with a token that
 * holds only `payouts:read payouts:write`. None may be allowed under
 * `group:/api/payouts` while an upstream could serve `/api/admin/…`.
 */
import { describe, expect, it } from "vitest";
import { normalizePath } from "../../src/engine/path.js";
import type { TokenRecord } from "../../src/engine/types.js";
import type { CompiledPolicySet } from "../../src/policy/types.js";
import { loadExamplePolicy, makeToken, NOW_MS, request } from "../support/fixtures.js";
import { judge } from "../support/judge.js";

const policy = loadExamplePolicy();
const keeping: CompiledPolicySet = { ...policy, pathParameters: "keep" };
const payouts = makeToken({ role: null, scopes: ["payouts:read", "payouts:write"] });
const tokens = new Map<string, TokenRecord>([[payouts.token, payouts.record]]);

/** Spellings whose dot or empty segment carries `;` parameters: refused whatever the policy set says. */
export const DOT_SEGMENT_PARAMETER_PATHS = [
  "/api/payouts/..;/admin/team-members",
  "/api/payouts/..;x=1/admin/team-members",
  "/api/payouts/..;jsessionid=abc/admin/team-members",
  "/api/payouts/%2e%2e;/admin/team-members",
  "/api/payouts/%2E%2e;/admin/team-members",
  "/api/payouts/.%2e;/admin/team-members",
  "/api/payouts/%2e.;/admin/team-members",
  "/api/payouts/..%3b/admin/team-members",
  "/api/payouts/..%3B/admin/team-members",
  "/api/payouts/%2e%2e%3b/admin/team-members",
  "/api/payouts/.;/../admin/team-members",
  "/api/payouts/.;x/x/../../admin/team-members",
  "/api/payouts/;/../admin/team-members",
  "/api/payouts/;x/../../admin/team-members",
  "/api/payouts/x/..;/..;/admin/team-members",
];

const rejected: Array<[string, string]> = [
  ...DOT_SEGMENT_PARAMETER_PATHS.map((p): [string, string] => [p, "dot_segment_parameters"]),
  // `;` outside a dot segment: refused by default (`pathParameters: "refuse"`)
  ["/api/payouts;x/../admin/team-members", "path_parameters"],
  ["/api/admin;x/team-members", "path_parameters"],
  ["/api/payouts;jsessionid=abc", "path_parameters"],
  // doubly encoded: an upstream that decodes twice sees `..`, `/` or `\`
  ["/api/payouts/%252e%252e/admin/team-members", "double_encoding"],
  ["/api/payouts/%252E%252E%252Fadmin/team-members", "double_encoding"],
  ["/api/payouts/..%252f..%252fadmin/team-members", "double_encoding"],
  ["/api/payouts/..%255c..%255cadmin/team-members", "double_encoding"],
  ["/api/payouts/%25%32%65%25%32%65/admin/team-members", "double_encoding"],
  // overlong UTF-8 for `.`, `/` and `\`, and other malformed UTF-8
  ["/api/payouts/%c0%ae%c0%ae/admin/team-members", "invalid_utf8"],
  ["/api/payouts/%C0%AE%C0%AE%C0%AFadmin/team-members", "invalid_utf8"],
  ["/api/payouts/..%c0%af..%c0%afadmin/team-members", "invalid_utf8"],
  ["/api/payouts/..%c1%9cadmin/team-members", "invalid_utf8"],
  ["/api/payouts/%e0%80%ae%e0%80%ae/admin/team-members", "invalid_utf8"],
  ["/api/payouts/%f0%80%80%ae/admin/team-members", "invalid_utf8"],
  ["/api/payouts/%ed%a0%80", "invalid_utf8"],
  ["/api/payouts/%ff", "invalid_utf8"],
  ["/api/payouts/%e2%82", "invalid_utf8"],
  // Unicode compatibility forms an NFKC-normalising upstream turns into dots, slashes or letters
  ["/api/payouts/%ef%bc%8e%ef%bc%8e/admin/team-members", "unnormalized_unicode"],
  ["/api/payouts/%e2%80%a5/admin/team-members", "unnormalized_unicode"],
  ["/api/payouts/..%ef%bc%8fadmin/team-members", "unnormalized_unicode"],
  ["/api/%ef%bd%81dmin/team-members", "unnormalized_unicode"],
  // Windows trims trailing dots and spaces: `...`, `.. ` and `..%20` would be `..` there
  ["/api/payouts/.../admin/team-members", "ambiguous_dot_segment"],
  ["/api/payouts/..%20/admin/team-members", "ambiguous_dot_segment"],
  ["/api/payouts/.%2e%2e/admin/team-members", "ambiguous_dot_segment"],
  ["/api/payouts/.%20/admin/team-members", "ambiguous_dot_segment"],
  // backslash spellings
  ["/api/payouts/..\\admin/team-members", "forbidden_character"],
  ["/api/payouts/..%5cadmin/team-members", "encoded_backslash"],
  ["/api/payouts/..%5Cadmin/team-members", "encoded_backslash"],
  // encoded slash and nul spellings
  ["/api/payouts/..%2fadmin/team-members", "encoded_slash"],
  ["/api/payouts/%2e%2e%2fadmin/team-members", "encoded_slash"],
  ["/api/payouts/..%00/admin/team-members", "encoded_nul"],
  // IIS `%u` escapes are not percent-encoding
  ["/api/payouts/%u002e%u002e/admin/team-members", "bad_percent_encoding"],
];

describe("traversal spellings", () => {
  it.each(rejected)("%s is invalid_request/%s", (path, reason) => {
    const decision = judge(request({ path, token: payouts.token }), policy, tokens, NOW_MS);
    expect({ code: decision.code, reason: decision.reason, httpStatus: decision.httpStatus }).toEqual({ code: "invalid_request", reason, httpStatus: 400 });
  });

  it.each(DOT_SEGMENT_PARAMETER_PATHS)("%s is refused even when the policy set keeps `;` parameters", (path) => {
    const decision = judge(request({ path, token: payouts.token }), keeping, tokens, NOW_MS);
    expect({ code: decision.code, reason: decision.reason }).toEqual({ code: "invalid_request", reason: "dot_segment_parameters" });
  });

  it.each([
    // resolved exactly as an RFC 3986 upstream resolves them, then judged on the result
    ["/api/payouts/../admin/team-members", "scope_denied"],
    ["/api/payouts/%2e%2e/admin/team-members", "scope_denied"],
    ["/api/payouts/%2E%2E/admin/team-members", "scope_denied"],
    ["/api/payouts/.%2E/admin/team-members", "scope_denied"],
    ["/api/payouts/./../admin/team-members", "scope_denied"],
    ["/api/payouts//../admin/team-members", "scope_denied"],
    ["/api/payouts/%2e/../admin/team-members", "scope_denied"],
  ])("%s is judged on the resolved path → %s", (path, code) => {
    const decision = judge(request({ path, token: payouts.token }), policy, tokens, NOW_MS);
    expect(decision.code).toBe(code);
    expect(decision.ruleId).not.toBe("group:/api/payouts");
  });

  it("with `pathParameters: keep` a parameter outside a dot segment stays part of its segment", () => {
    const kept = judge(request({ path: "/api/payouts/po_1;v=2", token: payouts.token }), keeping, tokens, NOW_MS);
    expect({ code: kept.code, ruleId: kept.ruleId }).toEqual({ code: "ok", ruleId: "group:/api/payouts" });
    // `admin;x` is not the `admin` segment, so no group matches: never an allow under a shorter prefix
    const other = judge(request({ path: "/api/admin;x/team-members", token: payouts.token }), keeping, tokens, NOW_MS);
    expect({ code: other.code, reason: other.reason }).toEqual({ code: "scope_denied", reason: "no_route" });
  });

  it("keeps well-formed non-ASCII and a literal encoded percent that is not an escape", () => {
    expect(normalizePath("/api/caf%C3%A9/%25zz")).toEqual({ ok: true, value: { path: "/api/caf%C3%A9/%25zz", segments: ["api", "caf%C3%A9", "%25zz"], query: "" } });
  });

  it("leaves `;` in the query alone", () => {
    expect(normalizePath("/api/payouts?a=..;/b")).toMatchObject({ ok: true, value: { path: "/api/payouts", query: "a=..;/b" } });
  });
});

describe("method case (RFC 9110 §9.1)", () => {
  const reader = makeToken({ role: null, scopes: ["payouts:read"] });
  const readers = new Map<string, TokenRecord>([[reader.token, reader.record]]);
  it.each([
    ["GET", "ok", "ok"],
    ["HEAD", "ok", "ok"],
    ["OPTIONS", "ok", "ok"],
    ["get", "scope_denied", "missing_scope"],
    ["Get", "scope_denied", "missing_scope"],
    ["head", "scope_denied", "missing_scope"],
    ["options", "scope_denied", "missing_scope"],
    ["gıt", "invalid_request", "bad_method"],
    ["OPTIONſ", "invalid_request", "bad_method"],
    ["GET\u0000", "invalid_request", "bad_method"],
    ["", "invalid_request", "bad_method"],
    ["G(T", "invalid_request", "bad_method"],
  ])("%j with a payouts:read token → %s/%s", (method, code, reason) => {
    const decision = judge(request({ method, token: reader.token }), policy, readers, NOW_MS);
    expect({ code: decision.code, reason: decision.reason }).toEqual({ code, reason });
  });

  it("reports the method exactly as sent", () => {
    const decision = judge(request({ method: "get", token: reader.token }), policy, readers, NOW_MS);
    expect(decision.details).toMatchObject({ required_scope: "payouts:write" });
  });
});
