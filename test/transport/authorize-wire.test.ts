/**
 * The hand-written `Authorize` codec against protobuf-es: every request it
 * reads must give the input the generated codec gives, every request it
 * cannot read must be left to that codec, and every answer it writes must
 * decode to the message `messageFromResult` builds.
 */
import { create, equals, fromBinary, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import type { TokenRecord } from "../../src/engine/types.js";
import { AuthorizeRequestSchema, AuthorizeResponseSchema } from "../../src/gen/portcullis/v1/authorization_pb.js";
import { authzInputFromMessage, messageFromResult } from "../../src/transport/authorize-messages.js";
import { decodePlainAuthorizeRequest, encodeAuthorizeResult } from "../../src/transport/authorize-wire.js";
import { createSyncAuthorizer } from "../support/sync-authorizer.js";
import { loadExamplePolicy, makeToken, NOW_MS, request } from "../support/fixtures.js";

const policy = loadExamplePolicy();
const operator = makeToken({ role: "tenant_operator" });
const readOnly = makeToken({ role: "tenant_operator", keyLevel: "read_only" });
const rotating = makeToken({ role: "tenant_operator", overlapEndsAtMs: NOW_MS + 60_000, successorId: "tok_next" });
const quoted = makeToken({ role: "tenant_operator", controls: { quota: { limitPerMinute: 5 } } });
const tokens = new Map<string, TokenRecord>([operator, readOnly, rotating, quoted].map((t) => [t.token, t.record]));
const authorize = createSyncAuthorizer({
  policy: () => policy,
  tokens: { find: (token) => tokens.get(token) },
  tenantState: { tenantSuspended: () => false, workspaceRestricted: () => false },
  now: () => NOW_MS,
  onError: () => undefined,
});

const bytesOf = (init: Parameters<typeof create<typeof AuthorizeRequestSchema>>[1]) => Buffer.from(toBinary(AuthorizeRequestSchema, create(AuthorizeRequestSchema, init)));

describe("decodePlainAuthorizeRequest", () => {
  const plain = {
    "a typical request": bytesOf({ method: "GET", path: "/api/payouts?page=2", host: "api.example.com", sourceIp: "203.0.113.10", headers: [{ name: "Authorization", value: `Bearer ${operator.token}` }, { name: "X-Request-Id", value: "r-1" }] }),
    "repeated header names, any case": bytesOf({ method: "GET", headers: [{ name: "Accept", value: "a" }, { name: "ACCEPT", value: "b" }, { name: "accept", value: "" }] }),
    "a header without a name or value": bytesOf({ headers: [{ name: "", value: "x" }, { name: "x-empty", value: "" }] }),
    "explain asked": bytesOf({ method: "GET", explain: true }),
    "nothing at all": Buffer.alloc(0),
    // Unknown fields of every wire type, which protobuf skips.
    "unknown fields": Buffer.concat([bytesOf({ method: "GET" }), Buffer.from([0x40, 0x96, 0x01, 0x49, 1, 2, 3, 4, 5, 6, 7, 8, 0x52, 2, 0x61, 0x62, 0x5d, 1, 2, 3, 4])]),
    "a long header (lengths past one byte)": bytesOf({ headers: [{ name: "x-long", value: "v".repeat(20_000) }] }),
  };
  for (const [name, bytes] of Object.entries(plain)) {
    it(`reads ${name} as the generated codec does`, () => {
      const read = decodePlainAuthorizeRequest(bytes);
      expect(read).not.toBeNull();
      const message = fromBinary(AuthorizeRequestSchema, bytes);
      expect(read!.input).toEqual(authzInputFromMessage(message));
      expect(read!.explain).toBe(message.explain);
    });
  }

  const notPlain = {
    "a non-ASCII header value": bytesOf({ method: "GET", headers: [{ name: "x-name", value: "Zoë" }] }),
    "invalid UTF-8": Buffer.concat([Buffer.from([0x0a, 2, 0xc3, 0x28])]),
    "a client certificate": bytesOf({ method: "GET", clientCertificate: { sha256Fingerprint: "ab".repeat(32), verified: true } }),
    "a truncated length": Buffer.from([0x12, 10, 0x61]),
    "a truncated varint": Buffer.from([0x38, 0x80]),
    "field number 0": Buffer.from([0x02, 0]),
    "a group wire type": Buffer.from([0x0b, 0x0c]),
  };
  for (const [name, bytes] of Object.entries(notPlain)) {
    it(`leaves ${name} to the generated codec`, () => {
      expect(decodePlainAuthorizeRequest(bytes)).toBeNull();
    });
  }
});

describe("encodeAuthorizeResult", () => {
  const cases = {
    allow: request({ token: operator.token, headers: { "x-request-id": "req-7" } }),
    "allow with a quota (rate-limit headers)": request({ token: quoted.token }),
    "allow with a rotation warning": request({ token: rotating.token }),
    "scope denial (details, challenge)": request({ method: "POST", token: readOnly.token }),
    "unknown token": request({ token: makeToken().token }),
    "missing token": request({}),
    "invalid request": request({ path: "/api/payouts%2F..%2Fadmin", token: operator.token }),
    "no route": request({ path: "/nowhere/at/all", token: operator.token }),
  };
  for (const [name, input] of Object.entries(cases)) {
    it(`writes what messageFromResult says: ${name}`, () => {
      for (let i = 0; i < 2; i++) {
        // Twice: the second answer copies the per-token and per-denial bytes kept by the first.
        const result = authorize(input);
        const expected = fromBinary(AuthorizeResponseSchema, toBinary(AuthorizeResponseSchema, messageFromResult(result, "json")));
        const written = fromBinary(AuthorizeResponseSchema, encodeAuthorizeResult(result));
        expect(equals(AuthorizeResponseSchema, written, expected)).toBe(true);
        expect(written.allowed).toBe(result.decision.allowed);
      }
    });
  }
});
