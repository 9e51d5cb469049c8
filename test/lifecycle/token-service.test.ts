/**
 * `portcullis.v1.TokenService` through the real server: the guard, tenant
 * isolation, scope escalation, limits, plaintext hygiene, rotation, revocation
 * and emergency revoke, over Connect and gRPC.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ListTokensRequestSchema, ListTokensResponseSchema, type ListTokensResponse } from "../../src/gen/portcullis/v1/token_service_pb.js";
import { EXAMPLE_POLICY_DIR } from "../support/fixtures.js";
import { unaryMethod } from "../support/grpc-client.js";
import { seedToken, startLoggedServer, tokenServiceClient, type LoggedServer } from "./helpers.js";

let t: LoggedServer;
let policyDir: string;
/** Every plaintext seen in this file, to scan the logs for. */
const secrets: string[] = [];

async function seed(fields: Parameters<typeof seedToken>[1]): Promise<{ token: string; id: string }> {
  const seeded = await seedToken(t.server, fields);
  secrets.push(seeded.token);
  return seeded;
}

async function authorize(token: string, method = "GET", path = "/api/payouts"): Promise<any> {
  const response = await fetch(`${t.httpUrl}/portcullis.v1.AuthorizationService/Authorize`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ method, path, host: "api.example.com", sourceIp: "203.0.113.10", headers: [{ name: "authorization", value: `Bearer ${token}` }] }),
  });
  // Connect JSON omits fields at their default, so a denial has no `allowed`.
  const json = (await response.json()) as Record<string, unknown>;
  return { allowed: false, warnings: [], ...json };
}

async function rpcError(promise: Promise<unknown>): Promise<ConnectError> {
  try {
    await promise;
  } catch (error) {
    return ConnectError.from(error);
  }
  throw new Error("expected the call to fail");
}

beforeAll(async () => {
  // The bundled set plus lifecycle rules with small limits.
  policyDir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-policy-"));
  fs.cpSync(EXAMPLE_POLICY_DIR, policyDir, { recursive: true });
  fs.writeFileSync(
    path.join(policyDir, "tokens.json"),
    JSON.stringify({
      $schema: path.join(EXAMPLE_POLICY_DIR, "..", "src/policy/policy.schema.json"),
      tokens: { rotation: { defaultOverlap: "7d", maxOverlap: "30d" }, limits: { userTokensPerCreator: 1, serviceTokensPerTenant: 4 } },
    }),
  );
  t = await startLoggedServer(policyDir);
});

afterAll(async () => {
  await t?.stop();
  fs.rmSync(policyDir, { recursive: true, force: true });
});

describe("the guard", () => {
  it.each([
    ["no credential", null, Code.Unauthenticated, /missing bearer token/],
    ["a malformed credential", "not-a-token", Code.Unauthenticated, /not a token of this service/],
  ])("answers %s with unauthenticated", async (_name, token, code, message) => {
    const error = await rpcError(tokenServiceClient(t.httpUrl, token).listTokens({}));
    expect(error.code).toBe(code);
    expect(error.rawMessage).toMatch(message);
  });

  it("answers a revoked caller with unauthenticated", async () => {
    const caller = await seed({ name: "revoked admin", tenant: "guard" });
    await t.server.store.revoke(caller.id, "test");
    t.server.tokenCache.evictTokenId(caller.id);
    const error = await rpcError(tokenServiceClient(t.httpUrl, caller.token).listTokens({}));
    expect(error.code).toBe(Code.Unauthenticated);
    expect(error.rawMessage).toBe("bearer token was revoked");
  });

  it("lets the policy set pick the scope: an operator without api_tokens:read is denied with the decision's message", async () => {
    const operator = await seed({ name: "operator", tenant: "guard", role: "tenant_operator", keyLevel: "read_write" });
    const error = await rpcError(tokenServiceClient(t.httpUrl, operator.token).listTokens({}));
    expect(error.code).toBe(Code.PermissionDenied);
    expect(error.rawMessage).toBe("token lacks the `api_tokens:read` scope this operation requires");
  });

  it("lets a read-only admin list and get but not create, rotate, revoke or emergency revoke", async () => {
    const reader = await seed({ name: "reader", tenant: "guard", keyLevel: "read_only" });
    const client = tokenServiceClient(t.httpUrl, reader.token);
    expect((await client.listTokens({})).tokens.length).toBeGreaterThan(0);
    expect((await client.getToken({ id: reader.id })).token?.id).toBe(reader.id);
    for (const call of [
      client.createToken({ workspace: "main", name: "x", role: "tenant_brand" }),
      client.rotateToken({ id: reader.id }),
      client.revokeToken({ id: reader.id }),
      client.emergencyRevoke({ target: { case: "lineageOf", value: reader.id }, dryRun: true }),
      client.updateTokenControls({ id: reader.id, controls: {} }),
    ]) {
      const error = await rpcError(call);
      expect(error.code).toBe(Code.PermissionDenied);
      expect(error.rawMessage).toContain("api_tokens:write");
    }
  });
});

describe("tenant isolation", () => {
  let acme: { token: string; id: string };
  let globex: { token: string; id: string };

  beforeAll(async () => {
    acme = await seed({ name: "acme admin", tenant: "acme-iso" });
    globex = await seed({ name: "globex admin", tenant: "globex-iso" });
  });

  it("answers another tenant's token id exactly like an unknown id", async () => {
    const client = tokenServiceClient(t.httpUrl, globex.token);
    const unknown = await rpcError(client.getToken({ id: "tok_doesnotexist" }));
    const foreign = await rpcError(client.getToken({ id: acme.id }));
    expect(foreign.code).toBe(Code.NotFound);
    expect(unknown.code).toBe(Code.NotFound);
    expect(foreign.rawMessage.replace(acme.id, "ID")).toBe(unknown.rawMessage.replace("tok_doesnotexist", "ID"));
  });

  it.each(["rotateToken", "revokeToken", "updateTokenControls"] as const)("refuses %s on another tenant's token with not_found and changes nothing", async (method) => {
    const client = tokenServiceClient(t.httpUrl, globex.token);
    const error = await rpcError((client[method] as (request: { id: string }) => Promise<unknown>)({ id: acme.id }));
    expect(error.code).toBe(Code.NotFound);
    const stored = (await t.server.store.get(acme.id))!;
    expect(stored.revokedAtMs).toBeNull();
    expect(stored.successorId).toBeNull();
  });

  it("lists only the caller's tenant and emergency revoke cannot reach across", async () => {
    const client = tokenServiceClient(t.httpUrl, globex.token);
    const listed = await client.listTokens({ includeRevoked: true });
    expect(listed.tokens.every((token) => token.tenant === "globex-iso")).toBe(true);
    const lineage = await rpcError(client.emergencyRevoke({ target: { case: "lineageOf", value: acme.id } }));
    expect(lineage.code).toBe(Code.NotFound);
    const byIds = await client.emergencyRevoke({ target: { case: "filter", value: { ids: [acme.id] } } });
    expect(byIds.matchedCount).toBe(0n);
    expect((await t.server.store.get(acme.id))!.revokedAtMs).toBeNull();
  });
});

describe("creating tokens", () => {
  it("creates a token in the caller's tenant whose plaintext works at once", async () => {
    const admin = await seed({ name: "creator admin", tenant: "create" });
    const created = await tokenServiceClient(t.httpUrl, admin.token).createToken({ workspace: "main", name: "ingest", role: "tenant_operator", keyLevel: "read_write" });
    secrets.push(created.plaintext);
    expect(created.plaintext).toMatch(/^sk_live_[0-9A-Za-z]{49}$/);
    expect(created.token).toMatchObject({ tenant: "create", workspace: "main", environment: "production", status: "active", role: "tenant_operator" });
    expect(created.token!.lineageId).toBe(created.token!.id);
    expect(await authorize(created.plaintext, "POST")).toMatchObject({ allowed: true });
    const audit = await t.server.store.listAudit({ tenant: "create" });
    expect(audit[0]).toMatchObject({ event: "api_token.created", actor: `token:${admin.id}`, tokenId: created.token!.id });
  });

  it.each([
    ["a role that grants more", { role: "tenant_operator" }, /^the new token would hold \d+ scopes the calling token does not: `/],
    ["explicit scopes beyond the caller's", { scopes: ["payouts:read", "ledger:read"], role: "tenant_admin" }, /`ledger:read`/],
    ["an admin key on a wider role", { role: "tenant_admin", keyLevel: "admin" }, /scopes the calling token does not/],
  ])("refuses %s with permission_denied", async (_name, fields, message) => {
    const narrow = await seed({ name: "narrow admin", tenant: "escalate", scopes: ["api_tokens:read", "api_tokens:write", "payouts:read"] });
    const error = await rpcError(tokenServiceClient(t.httpUrl, narrow.token).createToken({ workspace: "main", name: "wider", ...fields }));
    expect(error.code).toBe(Code.PermissionDenied);
    expect(error.rawMessage).toMatch(message);
    expect((await t.server.store.list({ tenant: "escalate" })).map((row) => row.name)).not.toContain("wider");
  });

  it("refuses a token for another environment than the caller's own", async () => {
    const admin = await seed({ name: "env admin", tenant: "crossenv" });
    const error = await rpcError(tokenServiceClient(t.httpUrl, admin.token).createToken({ workspace: "main", name: "sandbox-key", role: "tenant_operator", environment: "sandbox" }));
    expect(error.code).toBe(Code.PermissionDenied);
    expect(error.rawMessage).toBe("a `production` token cannot create tokens for the `sandbox` environment");
    expect((await t.server.store.list({ tenant: "crossenv" })).map((row) => row.name)).not.toContain("sandbox-key");
  });

  it("allows a token within the caller's scopes", async () => {
    const narrow = await seed({ name: "narrow admin 2", tenant: "escalate2", scopes: ["api_tokens:read", "api_tokens:write", "payouts:read"] });
    const created = await tokenServiceClient(t.httpUrl, narrow.token).createToken({ workspace: "main", name: "reader", role: "tenant_operator", scopes: ["payouts:read"] });
    secrets.push(created.plaintext);
    expect(created.token!.effectiveScopes).toEqual(["payouts:read"]);
  });

  it("answers past the service-token limit with failed_precondition and a conflict message", async () => {
    const admin = await seed({ name: "limit admin", tenant: "limits" }); // 1 of 4
    const client = tokenServiceClient(t.httpUrl, admin.token);
    for (let i = 2; i <= 4; i++) secrets.push((await client.createToken({ workspace: "main", name: `svc ${i}`, role: "tenant_brand" })).plaintext);
    const error = await rpcError(client.createToken({ workspace: "main", name: "svc 5", role: "tenant_brand" }));
    expect(error.code).toBe(Code.FailedPrecondition);
    expect(error.rawMessage).toMatch(/^conflict: tenant `limits` already has 4 active service tokens/);
    // Rotation replaces a token rather than adding one: it is not refused.
    const rotated = await client.rotateToken({ id: admin.id });
    secrets.push(rotated.plaintext);
    // A revoked token frees its place.
    const victim = (await t.server.store.list({ tenant: "limits" })).find((row) => row.name === "svc 2")!;
    await client.revokeToken({ id: victim.id });
    secrets.push((await client.createToken({ workspace: "main", name: "svc 5", role: "tenant_brand" })).plaintext);
  });

  it("answers past the per-creator user-token limit with failed_precondition", async () => {
    const admin = await seed({ name: "user limit admin", tenant: "userlimits" });
    const client = tokenServiceClient(t.httpUrl, admin.token);
    const user = { workspace: "main", type: "user", role: "tenant_brand", creator: "ann", creatorRole: "tenant_admin" };
    secrets.push((await client.createToken({ ...user, name: "ann 1" })).plaintext);
    const error = await rpcError(client.createToken({ ...user, name: "ann 2" }));
    expect(error.code).toBe(Code.FailedPrecondition);
    expect(error.rawMessage).toMatch(/^conflict: creator `ann` already has 1 active user token/);
    secrets.push((await client.createToken({ ...user, name: "bob 1", creator: "bob" })).plaintext);
  });
});

describe("plaintext hygiene", () => {
  it("returns the plaintext from create and rotate only: never from get or list, over the wire", async () => {
    const admin = await seed({ name: "hygiene admin", tenant: "hygiene" });
    const client = tokenServiceClient(t.httpUrl, admin.token);
    const created = await client.createToken({ workspace: "main", name: "shown once", role: "tenant_brand" });
    const rotated = await client.rotateToken({ id: created.token!.id, overlapSeconds: 60n });
    secrets.push(created.plaintext, rotated.plaintext);
    const raw = async (method: string, body: unknown): Promise<string> => {
      const response = await fetch(`${t.httpUrl}/portcullis.v1.TokenService/${method}`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${admin.token}` },
        body: JSON.stringify(body),
      });
      expect(response.status).toBe(200);
      return response.text();
    };
    const bodies = [
      await raw("ListTokens", { includeRevoked: true }),
      await raw("GetToken", { id: created.token!.id }),
      await raw("GetToken", { id: rotated.token!.id }),
      await raw("GetToken", { id: admin.id }),
    ];
    for (const body of bodies) {
      for (const secret of [created.plaintext, rotated.plaintext, admin.token]) {
        expect(body).not.toContain(secret);
        expect(body).not.toContain(secret.slice(8, 28));
      }
      expect(body).not.toMatch(/plaintext|"hash"/i);
    }
  });
});

describe("rotation, revocation and emergency revoke through the API", () => {
  it("rotates: the successor inherits everything, the predecessor warns until its window ends, and a second rotation is a conflict", async () => {
    const admin = await seed({ name: "rotation admin", tenant: "rotation" });
    const client = tokenServiceClient(t.httpUrl, admin.token);
    const created = await client.createToken({ workspace: "ops", name: "sync", role: "tenant_operator", keyLevel: "read_write", serviceLabel: "billing-sync", expiresInSeconds: 86_400n * 60n });
    secrets.push(created.plaintext);
    expect((await authorize(created.plaintext)).warnings ?? []).toEqual([]);
    const rotated = await client.rotateToken({ id: created.token!.id });
    secrets.push(rotated.plaintext);
    const successor = rotated.token!;
    expect(successor).toMatchObject({
      tenant: "rotation",
      workspace: "ops",
      environment: "production",
      name: "sync",
      role: "tenant_operator",
      keyLevel: "read_write",
      serviceLabel: "billing-sync",
      expiresAtUnixMs: created.token!.expiresAtUnixMs,
      predecessorId: created.token!.id,
      lineageId: created.token!.id,
      status: "active",
    });
    const predecessor = rotated.predecessor!;
    expect(predecessor).toMatchObject({ successorId: successor.id, status: "rotating" });
    // Default overlap: the policy set's 7 days.
    expect(Number(predecessor.overlapEndsAtUnixMs - predecessor.rotatedAtUnixMs)).toBe(7 * 86_400_000);

    const old = await authorize(created.plaintext);
    expect(old.allowed).toBe(true);
    expect(old.warnings).toEqual([{ code: "token_rotating", message: expect.stringContaining(new Date(Number(predecessor.overlapEndsAtUnixMs)).toISOString()) }]);
    expect(await authorize(rotated.plaintext)).toMatchObject({ allowed: true });

    const again = await rpcError(client.rotateToken({ id: created.token!.id }));
    expect(again.code).toBe(Code.FailedPrecondition);
    expect(again.rawMessage).toContain(successor.id);

    const tooLong = await rpcError(client.rotateToken({ id: successor.id, overlapSeconds: 31n * 86_400n }));
    expect(tooLong.code).toBe(Code.InvalidArgument);
    expect(tooLong.rawMessage).toBe("overlap of 31d exceeds the policy set's maximum of 30d");

    // Overlap 0 ends the predecessor at once, on this node, without waiting for the cache.
    const third = await client.rotateToken({ id: successor.id, overlapSeconds: 0n });
    secrets.push(third.plaintext);
    expect(await authorize(rotated.plaintext)).toMatchObject({ allowed: false, code: "unauthenticated", reason: "rotated" });
    const audit = (await t.server.store.listAudit({ tenant: "rotation" })).filter((row) => row.event === "api_token.rotated");
    expect(audit.map((row) => row.tokenId)).toEqual([successor.id, created.token!.id]);
  });

  it("revokes: the next decision on this node denies, although the token was cached a moment ago", async () => {
    const admin = await seed({ name: "revoke admin", tenant: "revoke" });
    const victim = await seed({ name: "victim", tenant: "revoke", role: "tenant_operator", keyLevel: "read_write" });
    expect(await authorize(victim.token)).toMatchObject({ allowed: true }); // now cached
    const revoked = await tokenServiceClient(t.httpUrl, admin.token).revokeToken({ id: victim.id, reason: "laptop stolen" });
    expect(revoked.token).toMatchObject({ status: "revoked", revokedBy: `token:${admin.id}`, revokedReason: "laptop stolen" });
    expect(await authorize(victim.token)).toMatchObject({ allowed: false, reason: "revoked" });
  });

  it("emergency-revokes a whole lineage after a dry run that counts it", async () => {
    const admin = await seed({ name: "emergency admin", tenant: "emergency" });
    const client = tokenServiceClient(t.httpUrl, admin.token);
    const first = await client.createToken({ workspace: "main", name: "leaky", role: "tenant_brand" });
    const second = await client.rotateToken({ id: first.token!.id });
    const third = await client.rotateToken({ id: second.token!.id });
    const bystander = await client.createToken({ workspace: "main", name: "bystander", role: "tenant_brand" });
    secrets.push(first.plaintext, second.plaintext, third.plaintext, bystander.plaintext);
    for (const token of [first.plaintext, second.plaintext, third.plaintext]) expect(await authorize(token)).toMatchObject({ allowed: true });

    const dry = await client.emergencyRevoke({ target: { case: "lineageOf", value: second.token!.id }, dryRun: true });
    expect(dry).toMatchObject({ matchedCount: 3n, dryRun: true });
    expect(await authorize(first.plaintext)).toMatchObject({ allowed: true });

    const done = await client.emergencyRevoke({ target: { case: "lineageOf", value: third.token!.id }, reason: "leaked in ci logs" });
    expect(done.matchedCount).toBe(3n);
    expect([...done.tokenIds].sort()).toEqual([first.token!.id, second.token!.id, third.token!.id].sort());
    for (const token of [first.plaintext, second.plaintext, third.plaintext]) expect(await authorize(token)).toMatchObject({ allowed: false, reason: "revoked" });
    expect(await authorize(bystander.plaintext)).toMatchObject({ allowed: true });
    const audit = (await t.server.store.listAudit({ tenant: "emergency" })).filter((row) => row.event === "api_token.emergency_revoked");
    expect(audit).toHaveLength(3);
    expect(audit[0]).toMatchObject({ actor: `token:${admin.id}`, data: expect.objectContaining({ reason: "emergency: leaked in ci logs" }) });
  });

  it("emergency-revokes by filter: by scope and service label, refusing an empty filter", async () => {
    const admin = await seed({ name: "filter admin", tenant: "filter" });
    const client = tokenServiceClient(t.httpUrl, admin.token);
    const writer = await client.createToken({ workspace: "main", name: "writer", role: "tenant_operator", keyLevel: "read_write", serviceLabel: "payout-bot" });
    const reader = await client.createToken({ workspace: "main", name: "reader", role: "tenant_brand", serviceLabel: "payout-bot" });
    secrets.push(writer.plaintext, reader.plaintext);
    const empty = await rpcError(client.emergencyRevoke({ target: { case: "filter", value: {} } }));
    expect(empty.code).toBe(Code.InvalidArgument);
    const byScope = await client.emergencyRevoke({ target: { case: "filter", value: { scope: "payouts:write" } }, dryRun: true });
    // The admin itself holds payouts:write too.
    expect([...byScope.tokenIds].sort()).toEqual([admin.id, writer.token!.id].sort());
    const byLabel = await client.emergencyRevoke({ target: { case: "filter", value: { serviceLabel: "payout-bot" } } });
    expect([...byLabel.tokenIds].sort()).toEqual([writer.token!.id, reader.token!.id].sort());
    expect(await authorize(reader.plaintext)).toMatchObject({ allowed: false, reason: "revoked" });
  });
});

describe("over gRPC (a grpc-js client on the gRPC port)", () => {
  function grpcList(token: string): Promise<ListTokensResponse> {
    const client = new grpc.Client(t.grpcAddress, grpc.credentials.createInsecure());
    const method = unaryMethod("/portcullis.v1.TokenService/ListTokens", ListTokensRequestSchema, ListTokensResponseSchema);
    const metadata = new grpc.Metadata();
    metadata.set("authorization", `Bearer ${token}`);
    return new Promise<ListTokensResponse>((resolve, reject) => {
      client.makeUnaryRequest(method.path, method.requestSerialize, method.responseDeserialize, create(ListTokensRequestSchema, {}), metadata, (error, response) => {
        client.close();
        return error ? reject(error) : resolve(response!);
      });
    });
  }

  it("serves the same service with the same guard", async () => {
    const admin = await seed({ name: "grpc admin", tenant: "grpc" });
    const operator = await seed({ name: "grpc operator", tenant: "grpc", role: "tenant_operator" });
    const listed = await grpcList(admin.token);
    expect(listed.tokens.map((token) => token.id).sort()).toEqual([admin.id, operator.id].sort());
    await expect(grpcList(operator.token)).rejects.toMatchObject({ code: grpc.status.PERMISSION_DENIED, details: "token lacks the `api_tokens:read` scope this operation requires" });
  });
});

describe("logs", () => {
  it("never contain token material", () => {
    const logs = t.logs();
    expect(logs.length).toBeGreaterThan(0);
    expect(secrets.length).toBeGreaterThan(20);
    for (const secret of secrets) {
      expect(logs).not.toContain(secret);
      // Any 16-character run of the random part would be a partial leak.
      expect(logs).not.toContain(secret.slice(10, 26));
    }
  });
});
