import { equals, fromBinary, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import type { TokenRecord } from "../../src/engine/types.js";
import { AuthorizeResponseSchema } from "../../src/gen/portcullis/v1/authorization_pb.js";
import { createSyncAuthorizer } from "../support/sync-authorizer.js";
import { messageFromResult, responseWireOf } from "../../src/transport/authorize-messages.js";
import { loadExamplePolicy, makeToken, NOW_MS, request } from "../support/fixtures.js";

const policy = loadExamplePolicy();
const operator = makeToken({ role: "tenant_operator" });
const readOnly = makeToken({ role: "tenant_operator", keyLevel: "read_only" });
const tokens = new Map<string, TokenRecord>([operator, readOnly].map((t) => [t.token, t.record]));
const authorize = createSyncAuthorizer({
  policy: () => policy,
  tokens: { find: (token) => tokens.get(token) },
  tenantState: { tenantSuspended: () => false, workspaceRestricted: () => false },
  now: () => NOW_MS,
  onError: () => undefined,
});

/** What a peer decodes from the bytes the server sends. */
function onTheWire(message: ReturnType<typeof messageFromResult>) {
  return fromBinary(AuthorizeResponseSchema, toBinary(AuthorizeResponseSchema, message), { readUnknownFields: false });
}

describe("messageFromResult", () => {
  const cases = {
    allow: request({ token: operator.token }),
    "scope denial (identity, no upstream headers)": request({ method: "POST", token: readOnly.token }),
    "unknown token (no identity)": request({ token: makeToken().token }),
  };

  for (const [name, input] of Object.entries(cases)) {
    it(`writes the same bytes' meaning on the binary wire as the full message: ${name}`, () => {
      const result = authorize(input);
      const full = messageFromResult(result, "json");
      const binary = messageFromResult(result, "binary");
      expect(equals(AuthorizeResponseSchema, onTheWire(binary), full)).toBe(true);
      // Twice: the second answer comes from the per-token bytes kept by the first.
      const again = authorize(input);
      expect(equals(AuthorizeResponseSchema, onTheWire(messageFromResult(again, "binary")), messageFromResult(again, "json"))).toBe(true);
    });
  }

  it("carries the identity and upstream headers as fields on the JSON wire, and as bytes on the binary one", () => {
    const result = authorize(cases.allow);
    const full = messageFromResult(result, "json");
    expect(full.identity?.tokenId).toBe(operator.record.id);
    expect(full.upstreamHeaders.length).toBeGreaterThan(0);
    const binary = messageFromResult(result, "binary");
    expect(binary.identity).toBeUndefined();
    const numbers = binary.$unknown?.map((field) => field.no) ?? [];
    expect(numbers.filter((no) => no === 8)).toHaveLength(full.upstreamHeaders.length);
    expect(numbers.filter((no) => no === 9)).toHaveLength(1);
  });
});

describe("responseWireOf", () => {
  it.each([
    ["application/proto", "binary"],
    ["application/grpc", "binary"],
    ["application/grpc+proto", "binary"],
    ["application/grpc-web", "binary"],
    ["Application/GRPC-Web+Proto; charset=utf-8", "binary"],
    ["application/json", "json"],
    ["application/json; charset=utf-8", "json"],
    ["application/grpc+json", "json"],
    ["application/grpc-web+json", "json"],
    ["text/plain", "json"],
    [null, "json"],
  ] as const)("%s is %s", (contentType, wire) => {
    expect(responseWireOf(contentType)).toBe(wire);
  });
});
