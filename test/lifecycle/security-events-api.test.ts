/**
 * `TokenService.ListSecurityEvents` through the real server: denials driven
 * through `Authorize` are flushed to the store and read back over Connect JSON
 * and over gRPC (a grpc-js client), only ever of the caller's tenant, with
 * filters, and with clear refusals of bad input.
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ListSecurityEventsRequestSchema,
  ListSecurityEventsResponseSchema,
  type ListSecurityEventsResponse,
} from "../../src/gen/portcullis/v1/token_service_pb.js";
import { unaryMethod } from "../support/grpc-client.js";
import { seedToken, startLoggedServer, tokenServiceClient, type LoggedServer } from "./helpers.js";

let t: LoggedServer;
const ids: Record<string, string> = {};
const tokens: Record<string, string> = {};

async function authorize(token: string | null): Promise<{ code?: string; auditEvent?: string }> {
  const headers = token === null ? [] : [{ name: "authorization", value: `Bearer ${token}` }];
  const response = await fetch(`${t.httpUrl}/portcullis.v1.AuthorizationService/Authorize`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ method: "GET", path: "/api/payouts", host: "api.example.com", sourceIp: "203.0.113.10", headers }),
  });
  return (await response.json()) as { code?: string; auditEvent?: string };
}

async function rpcError(promise: Promise<unknown>): Promise<ConnectError> {
  try {
    await promise;
  } catch (error) {
    return ConnectError.from(error);
  }
  throw new Error("expected the call to fail");
}

function grpcList(token: string, request: MessageInitShape<typeof ListSecurityEventsRequestSchema> = {}): Promise<ListSecurityEventsResponse> {
  const client = new grpc.Client(t.grpcAddress, grpc.credentials.createInsecure());
  const method = unaryMethod("/portcullis.v1.TokenService/ListSecurityEvents", ListSecurityEventsRequestSchema, ListSecurityEventsResponseSchema);
  const metadata = new grpc.Metadata();
  metadata.set("authorization", `Bearer ${token}`);
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(method.path, method.requestSerialize, method.responseDeserialize, create(ListSecurityEventsRequestSchema, request), metadata, (error, response) => {
      client.close();
      return error ? reject(error) : resolve(response!);
    });
  });
}

beforeAll(async () => {
  t = await startLoggedServer();
  const seed = async (key: string, fields: Parameters<typeof seedToken>[1]) => {
    const seeded = await seedToken(t.server, fields);
    ids[key] = seeded.id;
    tokens[key] = seeded.token;
  };
  await seed("acmeAdmin", { name: "acme admin", tenant: "acme-sec" });
  await seed("acmeOperator", { name: "acme operator", tenant: "acme-sec", role: "tenant_operator", keyLevel: "read_write" });
  await seed("acmeAllowlisted", { name: "acme allowlisted", tenant: "acme-sec", role: "tenant_operator", keyLevel: "read_write", controls: { ipAllowlist: ["198.51.100.0/24"] } });
  await seed("globexAdmin", { name: "globex admin", tenant: "globex-sec" });
  await seed("globexAllowlisted", { name: "globex allowlisted", tenant: "globex-sec", role: "tenant_operator", keyLevel: "read_write", controls: { ipAllowlist: ["198.51.100.0/24"] } });
  // Three denials of one acme token, one of a globex token, one with no token at all.
  for (let i = 0; i < 3; i++) expect((await authorize(tokens.acmeAllowlisted!)).auditEvent).toBe("auth.api_token_ip_allowlist_blocked");
  expect((await authorize(tokens.globexAllowlisted!)).auditEvent).toBe("auth.api_token_ip_allowlist_blocked");
  expect((await authorize(null)).auditEvent).toBe("auth.api_token_unauthenticated");
  await t.server.securityEvents.flush();
});

afterAll(async () => {
  await t?.stop();
});

describe("ListSecurityEvents", () => {
  it("answers the caller's tenant's rows over Connect JSON, counted per token, event and minute", async () => {
    const startMs = Date.now();
    const { events } = await tokenServiceClient(t.httpUrl, tokens.acmeAdmin!).listSecurityEvents({});
    // the operator's denial of the guard (it lacks api_tokens:read) is not driven yet, so only the allowlist row is there
    expect(events.map((row) => ({ event: row.event, tokenId: row.tokenId, tenant: row.tenant, count: row.count }))).toEqual([
      { event: "auth.api_token_ip_allowlist_blocked", tokenId: ids.acmeAllowlisted, tenant: "acme-sec", count: 3n },
    ]);
    const row = events[0]!;
    expect(Number(row.minuteUnixMs) % 60_000).toBe(0);
    expect(Number(row.lastAtUnixMs)).toBeGreaterThanOrEqual(Number(row.minuteUnixMs));
    expect(Number(row.lastAtUnixMs)).toBeLessThanOrEqual(startMs);
  });

  it("speaks Connect JSON with the proto's field names", async () => {
    const response = await fetch(`${t.httpUrl}/portcullis.v1.TokenService/ListSecurityEvents`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${tokens.globexAdmin}` },
      body: JSON.stringify({ event: "auth.api_token_ip_allowlist_blocked", since: "1h", limit: 10 }),
    });
    expect(response.status).toBe(200);
    const json = (await response.json()) as { events: Record<string, unknown>[] };
    expect(json.events).toEqual([
      {
        minuteUnixMs: expect.stringMatching(/^\d+$/),
        event: "auth.api_token_ip_allowlist_blocked",
        tokenId: ids.globexAllowlisted,
        tenant: "globex-sec",
        count: "1",
        lastAtUnixMs: expect.stringMatching(/^\d+$/),
      },
    ]);
  });

  it("serves the same rows over gRPC", async () => {
    const { events } = await grpcList(tokens.globexAdmin!, { tenant: "globex-sec" });
    expect(events.map((row) => [row.event, row.tokenId, row.count])).toEqual([["auth.api_token_ip_allowlist_blocked", ids.globexAllowlisted, 1n]]);
  });

  it.each([
    ["an event", { event: "auth.api_token_mtls_required" }, 0],
    ["a since after the denials", { since: new Date(Date.now() + 3_600_000).toISOString() }, 0],
    ["a since before them", { since: "2020-01-01T00:00:00Z" }, 1],
    ["a limit", { limit: 1 }, 1],
  ])("filters by %s", async (_name, request, rows) => {
    const { events } = await tokenServiceClient(t.httpUrl, tokens.acmeAdmin!).listSecurityEvents(request);
    expect(events).toHaveLength(rows);
  });

  it("refuses another tenant with permission_denied, over Connect and gRPC", async () => {
    const error = await rpcError(tokenServiceClient(t.httpUrl, tokens.acmeAdmin!).listSecurityEvents({ tenant: "globex-sec" }));
    expect(error.code).toBe(Code.PermissionDenied);
    expect(error.rawMessage).toBe("a token of tenant `acme-sec` reads only its own tenant's security events, not `globex-sec`");
    await expect(grpcList(tokens.acmeAdmin!, { tenant: "globex-sec" })).rejects.toMatchObject({ code: grpc.status.PERMISSION_DENIED });
  });

  it.each([
    ["a since that is neither a time nor a duration", { since: "yesterday" }, "invalid since `yesterday`: expected an ISO 8601 time (2026-12-04T18:00:00Z) or a duration back from now (30m, 1h, 7d)"],
    ["a since that is not a date", { since: "2026-13-45T00:00:00Z" }, /^invalid since `2026-13-45T00:00:00Z`/],
    ["a limit over 10000", { limit: 10_001 }, "limit must be from 1 to 10000 (0 for 100), got `10001`"],
    ["a negative limit", { limit: -1 }, "limit must be from 1 to 10000 (0 for 100), got `-1`"],
  ])("answers %s with invalid_argument", async (_name, request, message) => {
    const error = await rpcError(tokenServiceClient(t.httpUrl, tokens.acmeAdmin!).listSecurityEvents(request));
    expect(error.code).toBe(Code.InvalidArgument);
    expect(error.rawMessage).toMatch(typeof message === "string" ? new RegExp(`^${message.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`) : message);
    await expect(grpcList(tokens.acmeAdmin!, request)).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
  });

  it("is guarded like the other reads: a token without api_tokens:read is denied, and no credential is unauthenticated", async () => {
    const denied = await rpcError(tokenServiceClient(t.httpUrl, tokens.acmeOperator!).listSecurityEvents({}));
    expect(denied.code).toBe(Code.PermissionDenied);
    expect(denied.rawMessage).toBe("token lacks the `api_tokens:read` scope this operation requires");
    const anonymous = await rpcError(tokenServiceClient(t.httpUrl, null).listSecurityEvents({}));
    expect(anonymous.code).toBe(Code.Unauthenticated);
    // the guard's own denial is a security event of the caller's tenant like any other
    await t.server.securityEvents.flush();
    const { events } = await tokenServiceClient(t.httpUrl, tokens.acmeAdmin!).listSecurityEvents({ event: "auth.api_token_ability_rejected" });
    expect(events.map((row) => [row.tokenId, row.count])).toEqual([[ids.acmeOperator, 1n]]);
  });
});
