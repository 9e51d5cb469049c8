import { describe, expect, it } from "vitest";
import type { TokenRecord } from "../../src/engine/types.js";
import { generateToken } from "../../src/token/index.js";
import { loadExamplePolicy, makeToken, NOW_MS, request } from "../support/fixtures.js";
import { judge } from "../support/judge.js";

const policy = loadExamplePolicy();

const operator = makeToken({ role: "tenant_operator" });
const readOnly = makeToken({ role: "tenant_operator", keyLevel: "read_only" });
const brand = makeToken({ role: "tenant_brand" });
const admin = makeToken({ role: "tenant_admin", keyLevel: "admin" });
const adminReadWrite = makeToken({ role: "tenant_admin", keyLevel: "read_write" });
const payoutsOnly = makeToken({ role: null, scopes: ["payouts:read"] });
const revoked = makeToken({ revokedAtMs: NOW_MS - 1000 });
const expired = makeToken({ expiresAtMs: NOW_MS });
const expiresSoon = makeToken({ expiresAtMs: NOW_MS + 1 });
const userUnderBrand = makeToken({ type: "user", role: "tenant_admin", creatorRole: "tenant_brand" });
const sandbox = makeToken({ environment: "sandbox" }, "sk_sandbox_");
const storeDisagrees = makeToken({ environment: "sandbox" }, "sk_live_");
const unknownRole = makeToken({ role: "tenant_ghost" });
const unknownToken = generateToken("sk_live_");

const tokens = new Map<string, TokenRecord>(
  [operator, readOnly, brand, admin, adminReadWrite, payoutsOnly, revoked, expired, expiresSoon, userUnderBrand, sandbox, storeDisagrees, unknownRole].map((t) => [t.token, t.record]),
);

function flipLastRandomChar(token: string): string {
  // The checksum is the last 6 characters; change one character just before it.
  const index = token.length - 7;
  const replacement = token[index] === "A" ? "B" : "A";
  return token.slice(0, index) + replacement + token.slice(index + 1);
}

interface Row {
  name: string;
  input: ReturnType<typeof request>;
  code: string;
  reason: string;
  ruleId?: string;
  details?: Record<string, string>;
}

const rows: Row[] = [
  // ok
  { name: "operator reads payouts", input: request({ token: operator.token }), code: "ok", reason: "ok", ruleId: "group:/api/payouts" },
  { name: "operator writes payouts", input: request({ method: "POST", token: operator.token }), code: "ok", reason: "ok" },
  { name: "a sub-path of a group is covered", input: request({ path: "/api/payouts/po_7", token: operator.token }), code: "ok", reason: "ok" },
  { name: "lower-case bearer scheme", input: request({ headers: { authorization: `bearer ${operator.token}` } }), code: "ok", reason: "ok" },
  { name: "upper-case bearer scheme", input: request({ headers: { authorization: `BEARER ${operator.token}` } }), code: "ok", reason: "ok" },
  { name: "mixed-case bearer scheme and a tab", input: request({ headers: { authorization: `BeArEr\t${operator.token}` } }), code: "ok", reason: "ok" },
  { name: "duplicate slashes collapse", input: request({ path: "//api//payouts//7", token: operator.token }), code: "ok", reason: "ok" },
  { name: "trailing slash is the same path", input: request({ path: "/api/payouts/", token: operator.token }), code: "ok", reason: "ok" },
  { name: "single-dot segments vanish", input: request({ path: "/api/./payouts/./7", token: operator.token }), code: "ok", reason: "ok" },
  { name: "encoded unreserved characters decode", input: request({ path: "/api/%70ayouts", token: operator.token }), code: "ok", reason: "ok" },
  { name: "the query does not affect the route", input: request({ path: "/api/payouts?page=2&sort=-created", token: operator.token }), code: "ok", reason: "ok" },
  { name: "host with port still names production", input: request({ host: "API.example.com:443", token: operator.token }), code: "ok", reason: "ok" },
  { name: "sandbox token against the sandbox host", input: request({ host: "sandbox.api.example.com", token: sandbox.token }), code: "ok", reason: "ok" },
  { name: "one millisecond before expiry", input: request({ token: expiresSoon.token }), code: "ok", reason: "ok" },
  { name: "admin key may use api_tokens operations", input: request({ method: "POST", path: "/api/settings/api-tokens/tok_1/rotate", token: admin.token }), code: "ok", reason: "ok" },
  { name: "IPv6 source address is accepted", input: request({ sourceIp: "2001:db8::1", token: operator.token }), code: "ok", reason: "ok" },
  { name: "no source address is accepted when no control needs it", input: request({ sourceIp: "", token: operator.token }), code: "ok", reason: "ok" },

  // invalid_request
  { name: "path not starting with a slash", input: request({ path: "api/payouts", token: operator.token }), code: "invalid_request", reason: "not_origin_form" },
  { name: "absolute-form target", input: request({ path: "http://api.example.com/api/payouts", token: operator.token }), code: "invalid_request", reason: "not_origin_form" },
  { name: "encoded slash", input: request({ path: "/api/payouts%2F..%2Fsettings", token: operator.token }), code: "invalid_request", reason: "encoded_slash" },
  { name: "encoded lower-case slash", input: request({ path: "/api/payouts%2f7", token: operator.token }), code: "invalid_request", reason: "encoded_slash" },
  { name: "encoded backslash", input: request({ path: "/api/payouts%5c7", token: operator.token }), code: "invalid_request", reason: "encoded_backslash" },
  { name: "encoded nul", input: request({ path: "/api/payouts%007", token: operator.token }), code: "invalid_request", reason: "encoded_nul" },
  { name: "raw backslash", input: request({ path: "/api\\payouts", token: operator.token }), code: "invalid_request", reason: "forbidden_character" },
  { name: "raw space", input: request({ path: "/api/pay outs", token: operator.token }), code: "invalid_request", reason: "forbidden_character" },
  { name: "non-ascii", input: request({ path: "/api/payoüts", token: operator.token }), code: "invalid_request", reason: "forbidden_character" },
  { name: "truncated percent-encoding", input: request({ path: "/api/payouts%2", token: operator.token }), code: "invalid_request", reason: "bad_percent_encoding" },
  { name: "non-hex percent-encoding", input: request({ path: "/api/%zzpayouts", token: operator.token }), code: "invalid_request", reason: "bad_percent_encoding" },
  { name: "unparseable source ip", input: request({ sourceIp: "999.1.1.1", token: operator.token }), code: "invalid_request", reason: "bad_source_ip" },
  { name: "method with a space", input: request({ method: "GET /x", token: operator.token }), code: "invalid_request", reason: "bad_method" },
  { name: "invalid request wins over a missing token", input: request({ path: "/a%2fb" }), code: "invalid_request", reason: "encoded_slash" },

  // unauthenticated
  { name: "no authorization header", input: request(), code: "unauthenticated", reason: "missing", ruleId: "authentication" },
  { name: "empty authorization header", input: request({ headers: { authorization: "  " } }), code: "unauthenticated", reason: "missing" },
  { name: "basic scheme", input: request({ headers: { authorization: "Basic dXNlcjpwYXNz" } }), code: "unauthenticated", reason: "malformed" },
  { name: "bearer without a token", input: request({ headers: { authorization: "Bearer" } }), code: "unauthenticated", reason: "malformed" },
  { name: "bearer with two words", input: request({ headers: { authorization: `Bearer ${operator.token} extra` } }), code: "unauthenticated", reason: "malformed" },
  { name: "token without a known prefix", input: request({ headers: { authorization: "Bearer ghp_0123456789abcdef" } }), code: "unauthenticated", reason: "malformed" },
  { name: "token cut short", input: request({ token: operator.token.slice(0, -1) }), code: "unauthenticated", reason: "malformed" },
  { name: "typo in the token", input: request({ token: flipLastRandomChar(operator.token) }), code: "unauthenticated", reason: "bad_checksum" },
  { name: "well-formed but not stored", input: request({ token: unknownToken }), code: "unauthenticated", reason: "unknown" },
  { name: "revoked token", input: request({ token: revoked.token }), code: "unauthenticated", reason: "revoked" },
  { name: "expired at exactly its expiry", input: request({ token: expired.token }), code: "unauthenticated", reason: "expired" },
  { name: "sandbox token against production", input: request({ token: sandbox.token }), code: "unauthenticated", reason: "wrong_environment" },
  { name: "production token against the sandbox host", input: request({ host: "sandbox.api.example.com", token: operator.token }), code: "unauthenticated", reason: "wrong_environment" },
  { name: "stored environment disagrees with the prefix", input: request({ token: storeDisagrees.token }), code: "unauthenticated", reason: "wrong_environment" },
  { name: "token in access_token query parameter", input: request({ path: `/api/payouts?access_token=${operator.token}` }), code: "unauthenticated", reason: "token_in_query" },
  { name: "token in any query parameter", input: request({ path: `/api/payouts?q=${operator.token}`, token: operator.token }), code: "unauthenticated", reason: "token_in_query" },
  { name: "api_key parameter even with a good header", input: request({ path: "/api/payouts?api_key=abc", token: operator.token }), code: "unauthenticated", reason: "token_in_query" },
  { name: "two authorization headers combined", input: request({ headers: { authorization: `Bearer ${operator.token}, Bearer ${admin.token}` } }), code: "unauthenticated", reason: "duplicate_header" },

  // scope_denied
  {
    name: "read-only key writes",
    input: request({ method: "POST", token: readOnly.token }),
    code: "scope_denied",
    reason: "missing_scope",
    ruleId: "group:/api/payouts",
    details: { required_scope: "payouts:write", current_scope: "payouts:read" },
  },
  { name: "unknown methods are writes", input: request({ method: "PURGE", token: readOnly.token }), code: "scope_denied", reason: "missing_scope", details: { required_scope: "payouts:write", current_scope: "payouts:read" } },
  { name: "role without the module", input: request({ path: "/api/ledger", token: brand.token }), code: "scope_denied", reason: "missing_scope", details: { required_scope: "ledger:read", current_scope: "" } },
  { name: "no group covers the path", input: request({ path: "/api/unknown", token: admin.token }), code: "scope_denied", reason: "no_route", ruleId: "default-deny" },
  { name: "groups match whole segments only", input: request({ path: "/api/payoutsX", token: admin.token }), code: "scope_denied", reason: "no_route" },
  { name: "dot-dot traversal is judged on the resolved path", input: request({ path: "/api/payouts/../settings/api-tokens", token: payoutsOnly.token }), code: "scope_denied", reason: "missing_scope", details: { required_scope: "api_tokens:read", current_scope: "" } },
  { name: "encoded dot-dot traversal too", input: request({ path: "/api/payouts/%2e%2e/settings/api-tokens", token: payoutsOnly.token }), code: "scope_denied", reason: "missing_scope", details: { required_scope: "api_tokens:read", current_scope: "" } },
  { name: "dot-dot cannot climb above the root", input: request({ path: "/../../api/payouts", token: payoutsOnly.token }), code: "ok", reason: "ok" },
  { name: "operation overrides its group", input: request({ method: "POST", path: "/api/settings/api-tokens/sandbox-environments", token: admin.token }), code: "ok", reason: "ok" },
  { name: "read_write key excludes api_tokens", input: request({ path: "/api/settings/api-tokens", token: adminReadWrite.token }), code: "scope_denied", reason: "missing_scope", details: { required_scope: "api_tokens:read", current_scope: "" } },
  { name: "environment keys need environments:read", input: request({ path: "/api/settings/api-tokens/environment-keys", token: adminReadWrite.token }), code: "ok", reason: "ok" },
  { name: "user token capped by its creator's role", input: request({ path: "/api/ledger", token: userUnderBrand.token }), code: "scope_denied", reason: "missing_scope" },
  { name: "user token within its creator's role", input: request({ path: "/api/payouts", token: userUnderBrand.token }), code: "ok", reason: "ok" },
  { name: "a role the policy no longer defines grants nothing", input: request({ token: unknownRole.token }), code: "scope_denied", reason: "missing_scope" },
];

describe("decide", () => {
  it.each(rows)("$name → $code/$reason", (row) => {
    const decision = judge(row.input, policy, tokens, NOW_MS);
    expect({ code: decision.code, reason: decision.reason }).toEqual({ code: row.code, reason: row.reason });
    expect(decision.allowed).toBe(row.code === "ok");
    if (row.ruleId !== undefined) expect(decision.ruleId).toBe(row.ruleId);
    if (row.details !== undefined) expect(decision.details).toMatchObject(row.details);
  });

  it("answers 401 with a bare challenge when no token was sent", () => {
    const decision = judge(request(), policy, tokens, NOW_MS);
    expect(decision.httpStatus).toBe(401);
    expect(decision.auditEvent).toBe("auth.api_token_unauthenticated");
    expect(decision.responseHeaders).toEqual([["www-authenticate", `Bearer realm="${policy.name}"`]]);
  });

  it("answers 401 with invalid_token when a bad token was sent", () => {
    const decision = judge(request({ token: revoked.token }), policy, tokens, NOW_MS);
    const [name, value] = decision.responseHeaders[0]!;
    expect(name).toBe("www-authenticate");
    expect(value).toContain('error="invalid_token"');
  });

  it("answers 403 scope_denied with the ability-rejected audit event and an insufficient_scope challenge", () => {
    const decision = judge(request({ method: "DELETE", token: readOnly.token }), policy, tokens, NOW_MS);
    expect(decision.httpStatus).toBe(403);
    expect(decision.auditEvent).toBe("auth.api_token_ability_rejected");
    expect(decision.responseHeaders[0]![1]).toContain('error="insufficient_scope", scope="payouts:write"');
    expect(decision.identity?.tokenId).toBe(readOnly.record.id);
  });

  it("forwards the identity upstream on allow", () => {
    const decision = judge(request({ token: operator.token }), policy, tokens, NOW_MS);
    const upstream = Object.fromEntries(decision.upstreamHeaders);
    expect(upstream).toMatchObject({
      "x-portcullis-token-id": operator.record.id,
      "x-portcullis-tenant": "acme",
      "x-portcullis-workspace": "main",
      "x-portcullis-environment": "production",
      "x-portcullis-token-type": "service",
      "x-portcullis-role": "tenant_operator",
    });
    expect(upstream).not.toHaveProperty("x-portcullis-scopes");
    expect(decision.identity!.scopes).toContain("payouts:write");
    expect(decision.identity!.scopes).not.toContain("api_tokens:read");
    expect(Object.fromEntries(decision.upstreamMetadata)).toEqual({
      token_id: operator.record.id,
      tenant: "acme",
      workspace: "main",
      environment: "production",
      role: "tenant_operator",
    });
    expect(decision.auditEvent).toBeNull();
  });

  it("gives a read-only key only read scopes", () => {
    const decision = judge(request({ token: readOnly.token }), policy, tokens, NOW_MS);
    expect(decision.identity!.scopes.length).toBeGreaterThan(0);
    expect(decision.identity!.scopes.every((scope) => scope.endsWith(":read"))).toBe(true);
  });
});
