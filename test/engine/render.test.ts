import { describe, expect, it } from "vitest";
import type { Decision } from "../../src/engine/types.js";
import { renderDecision } from "../../src/render/render.js";

function denial(fields: Partial<Decision>): Decision {
  return {
    allowed: false,
    code: "unauthenticated",
    httpStatus: 401,
    reason: "missing",
    message: "missing bearer token",
    ruleId: "authentication",
    auditEvent: "auth.api_token_unauthenticated",
    details: {},
    responseHeaders: [["www-authenticate", 'Bearer realm="x"']],
    upstreamHeaders: [],
    upstreamMetadata: [],
    identity: null,
    warnings: [],
    quota: null,
    ...fields,
  };
}

const scopeDenial = denial({
  code: "scope_denied",
  httpStatus: 403,
  reason: "missing_scope",
  message: "token lacks the `payouts:write` scope this operation requires",
  details: { required_scope: "payouts:write", current_scope: "payouts:read" },
  responseHeaders: [],
});

describe("renderDecision", () => {
  it.each([
    ["canonical", denial({}), { message: "missing bearer token", code: "unauthenticated", errors: { reason: "missing" }, request_id: "req_1" }],
    ["envelope", denial({}), { ok: false, error: { code: "AUTH_REQUIRED", message: "missing bearer token", requestId: "req_1" } }],
    ["envelope", denial({ reason: "revoked", message: "bearer token was revoked" }), { ok: false, error: { code: "AUTH_INVALID", message: "bearer token was revoked", requestId: "req_1" } }],
    ["envelope", scopeDenial, { ok: false, error: { code: "AUTH_SCOPE_INSUFFICIENT", message: scopeDenial.message, requestId: "req_1" } }],
    ["envelope", denial({ code: "tenant_suspended", httpStatus: 403 }), { ok: false, error: { code: "AUTH_TENANT_SUSPENDED", message: "missing bearer token", requestId: "req_1" } }],
    ["envelope", denial({ code: "quota_exceeded", httpStatus: 429 }), { ok: false, error: { code: "RATE_LIMITED", message: "missing bearer token", requestId: "req_1" } }],
    ["error_object", denial({}), { error: { code: "unauthorized", message: "missing bearer token", details: { reason: "missing" } } }],
    [
      "error_object",
      scopeDenial,
      { error: { code: "forbidden", message: scopeDenial.message, details: { reason: "missing_scope", required_scope: "payouts:write", current_scope: "payouts:read" } } },
    ],
  ] as const)("%s renders %#", (dialect, decision, body) => {
    const rendered = renderDecision(decision, dialect, "req_1");
    expect(rendered.httpStatus).toBe(decision.httpStatus);
    expect(JSON.parse(rendered.body)).toEqual(body);
    expect(rendered.headers[0]).toEqual(["content-type", "application/json"]);
    expect(rendered.headers.slice(1)).toEqual(decision.responseHeaders);
  });

  it("renders an allow with no body", () => {
    const allow = denial({ allowed: true, code: "ok", httpStatus: 200, reason: "ok", auditEvent: null, responseHeaders: [] });
    expect(renderDecision(allow, "canonical", "r")).toEqual({ httpStatus: 200, headers: [], body: "" });
  });
});

describe("renderDecision of a shared (frozen) denial", () => {
  // Frozen decisions are rendered once per dialect and cut where the request id goes: the bytes must not change.
  const decisions = [
    denial({}),
    scopeDenial,
    denial({ message: 'a "quoted" \\ message with \u0000request-id\u0000 in it', details: { note: "\u0000request-id\u0000" } }),
  ];
  it.each(["canonical", "envelope", "error_object"] as const)("%s: the same body and headers as an unshared one, for every request id", (dialect) => {
    for (const decision of decisions) {
      const frozen = Object.freeze({ ...decision });
      for (const requestId of ["req_1", "3f0e2c1a-5b7d-4e8f-9a0b-1c2d3e4f5a6b", 'odd"id\\', "\u0000request-id\u0000"]) {
        const expected = renderDecision({ ...decision }, dialect, requestId);
        const first = renderDecision(frozen, dialect, requestId);
        const again = renderDecision(frozen, dialect, requestId);
        expect(first).toEqual(expected);
        expect(again).toEqual(expected);
      }
    }
  });
});
