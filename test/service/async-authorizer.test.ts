/**
 * A token store or quota store that answers later (PostgreSQL, Redis): the
 * authorizer, the token cache and every transport must carry the Promise
 * through, fail closed when it rejects, and stay synchronous when nothing is
 * asked over the network.
 */
import http from "node:http";
import { create } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TokenRecord } from "../../src/engine/types.js";
import { AuthorizeRequestSchema } from "../../src/gen/portcullis/v1/authorization_pb.js";
import type { ChargeResult, QuotaCounter } from "../../src/quota/quota-counter.js";
import { createMemoryQuotaCounter } from "../../src/quota/memory-quota-counter.js";
import { createAuthorizer, type AuthorizerDeps } from "../../src/service/authorize.js";
import { isPromise } from "../../src/service/maybe-promise.js";
import { createTokenCache } from "../../src/service/token-cache.js";
import { createGrpcServer, type GrpcServer } from "../../src/transport/grpc.js";
import { Health } from "../../src/transport/health.js";
import { closeHttp, createHttpServer, listenHttp, type HttpPortServer } from "../../src/transport/http.js";
import { buildTrustedProxyMatcher } from "../../src/transport/trusted-proxies.js";
import { envoyCheckClient } from "../envoy/envoy-client.js";
import { loadExamplePolicy, makeToken, NOW_MS, request } from "../support/fixtures.js";
import { grpcAuthorizeClient } from "../support/server.js";

const policy = loadExamplePolicy();
const operator = makeToken({ role: "tenant_operator" });
const readOnly = makeToken({ role: "tenant_operator", keyLevel: "read_only" });
const quoted = makeToken({ role: "tenant_operator", controls: { quota: { limitPerMinute: 1 } } });
// A token whose look-up fails, as a store that went away mid-request does.
const broken = makeToken({ role: "tenant_operator" });
const stored = new Map<string, TokenRecord>([operator, readOnly, quoted].map((t) => [t.token, t.record]));

const later = <T>(value: T, ms = 5): Promise<T> => new Promise((resolve) => setTimeout(() => resolve(value), ms));

/** A store over the network: every look-up answers after a few milliseconds. */
const slowStore = {
  find: (token: string): Promise<TokenRecord | undefined> =>
    token === broken.token ? later(null).then(() => Promise.reject(new Error("connection terminated"))) : later(stored.get(token)),
};

function deps(overrides: Partial<AuthorizerDeps> = {}): AuthorizerDeps {
  return {
    policy: () => policy,
    tokens: slowStore,
    tenantState: { tenantSuspended: () => false, workspaceRestricted: () => false },
    now: () => NOW_MS,
    onError: () => undefined,
    ...overrides,
  };
}

/** A quota store over the network: the in-memory counter's answers, later; `down` makes it fail. */
function slowQuota(): QuotaCounter & { down: boolean } {
  const memory = createMemoryQuotaCounter();
  return {
    down: false,
    charge(key, limits, nowMs): Promise<ChargeResult> {
      if (this.down) return later(null).then(() => Promise.reject(new Error("quota store unreachable")));
      return later(memory.charge(key, limits, nowMs));
    },
  };
}

describe("the authorizer over stores that answer later", () => {
  it("answers with a Promise carrying the same decisions", async () => {
    const authorize = createAuthorizer(deps());
    const allowed = authorize(request({ token: operator.token }));
    expect(isPromise(allowed)).toBe(true);
    expect((await allowed).decision.code).toBe("ok");
    expect((await authorize(request({ token: readOnly.token, method: "POST" }))).decision.code).toBe("scope_denied");
    expect((await authorize(request({ token: makeToken().token }))).decision.code).toBe("unauthenticated");
  });

  it("fails closed with 503 when the look-up rejects, and says so once", async () => {
    const errors: unknown[] = [];
    const authorize = createAuthorizer(deps({ onError: (error) => errors.push(error) }));
    const result = await authorize(request({ token: broken.token }));
    expect(result.decision.code).toBe("unavailable");
    expect(result.response.httpStatus).toBe(503);
    expect(errors).toHaveLength(1);
  });

  it("counts with a quota store that answers later, and fails closed when it is down", async () => {
    const quota = slowQuota();
    const errors: unknown[] = [];
    const authorize = createAuthorizer(deps({ quota, onError: (error) => errors.push(error) }));
    const first = await authorize(request({ token: quoted.token }));
    expect(first.decision.code).toBe("ok");
    expect(first.response.headers).toContainEqual(["ratelimit-remaining", "0"]);
    expect((await authorize(request({ token: quoted.token }))).decision.code).toBe("quota_exceeded");
    quota.down = true;
    expect((await authorize(request({ token: quoted.token }))).decision.code).toBe("unavailable");
    // A token no quota applies to never asks the quota store.
    expect((await authorize(request({ token: operator.token }))).decision.code).toBe("ok");
    expect(errors).toHaveLength(1);
  });

  it("stays synchronous when every look-up is in memory", () => {
    const authorize = createAuthorizer(deps({ tokens: { find: (token) => stored.get(token) }, quota: createMemoryQuotaCounter() }));
    for (const token of [operator.token, readOnly.token, quoted.token, makeToken().token]) {
      expect(isPromise(authorize(request({ token })))).toBe(false);
    }
    expect(isPromise(authorize(request({})))).toBe(false);
  });

  it("times only what it decided, also when the answer came later", async () => {
    const seconds: number[] = [];
    const authorize = createAuthorizer(deps({ observe: (_decision, s) => seconds.push(s) }));
    await authorize(request({ token: operator.token }));
    expect(seconds).toHaveLength(1);
    expect(seconds[0]).toBeGreaterThanOrEqual(0.004);
  });
});

describe("the token cache over a store that answers later", () => {
  function countingStore() {
    const reads: string[] = [];
    const rows = new Map(stored);
    return {
      reads,
      rows,
      find: (token: string) => {
        reads.push(token);
        return later(rows.get(token));
      },
    };
  }

  it("sends one read for a burst of look-ups of one token, then answers from memory", async () => {
    const store = countingStore();
    const cache = createTokenCache(store);
    const burst = await Promise.all(Array.from({ length: 20 }, () => cache.find(operator.token)));
    expect(store.reads).toHaveLength(1);
    expect(new Set(burst).size).toBe(1);
    const hit = cache.find(operator.token);
    expect(isPromise(hit)).toBe(false);
    expect(hit).toBe(burst[0]);
  });

  it("does not keep, or share, a read that began before a revocation evicted the token", async () => {
    const store = countingStore();
    const cache = createTokenCache(store);
    const before = cache.find(operator.token);
    // The revocation commits and evicts while the first read is still on the wire.
    store.rows.set(operator.token, { ...operator.record, revokedAtMs: NOW_MS });
    cache.evictTokenId(operator.record.id);
    const after = await cache.find(operator.token);
    expect(after?.revokedAtMs).toBe(NOW_MS);
    // The read overtaken by the revocation is read again rather than trusted.
    expect((await before)?.revokedAtMs).toBe(NOW_MS);
    expect((await cache.find(operator.token))?.revokedAtMs).toBe(NOW_MS);
    expect(store.reads).toHaveLength(3);
  });

  it("forgets a failed read, so that the next look-up asks again", async () => {
    let fail = true;
    const cache = createTokenCache({ find: (token) => (fail ? Promise.reject(new Error("down")) : later(stored.get(token))) });
    await expect(cache.find(operator.token)).rejects.toThrow("down");
    fail = false;
    expect((await cache.find(operator.token))?.id).toBe(operator.record.id);
  });
});

describe("every transport over an authorizer that answers later", () => {
  let grpcServer: GrpcServer;
  let httpServer: HttpPortServer;
  let grpcAddress: string;
  let httpUrl: string;

  beforeAll(async () => {
    // The real clock: the transports read their own, and NOW_MS may lie outside a token's window.
    const authorize = createAuthorizer(deps({ now: Date.now }));
    const trustedProxies = buildTrustedProxyMatcher([]);
    grpcServer = createGrpcServer({ authorize, health: new Health({ "": "SERVING" }), envoy: { trustedProxies } });
    grpcAddress = `127.0.0.1:${await grpcServer.listen("127.0.0.1", 0)}`;
    httpServer = createHttpServer({ authorize, ready: () => true, extAuthz: { prefix: "/ext-authz", trustedProxies } });
    httpUrl = `http://127.0.0.1:${await listenHttp(httpServer, "127.0.0.1", 0)}`;
  });
  afterAll(async () => {
    await grpcServer.close(1_000);
    await closeHttp(httpServer, 1_000);
  });

  const checkRequest = (token: string, method = "GET") => ({
    attributes: {
      source: { address: { socket_address: { address: "203.0.113.10", port_value: 40000 } } },
      request: { http: { method, path: "/api/payouts", host: "api.example.com", headers: { authorization: `Bearer ${token}` } } },
    },
  });

  it("Envoy Check: allow, deny and fail closed", async () => {
    const client = envoyCheckClient(grpcAddress);
    try {
      expect((await client.check(checkRequest(operator.token))).status.code).toBe(0);
      const denied = await client.check(checkRequest(readOnly.token, "POST"));
      expect(denied.denied_response.status.code).toBe(403);
      const failed = await client.check(checkRequest(broken.token));
      expect(failed.denied_response.status.code).toBe(503);
    } finally {
      client.close();
    }
  });

  it("Authorize over gRPC and Connect", async () => {
    const client = grpcAuthorizeClient(grpcAddress);
    const message = (token: string, method = "GET") => ({ method, path: "/api/payouts", host: "api.example.com", sourceIp: "203.0.113.10", headers: [{ name: "authorization", value: `Bearer ${token}` }] });
    try {
      expect((await client.authorize(create(AuthorizeRequestSchema, message(operator.token)))).code).toBe("ok");
      expect((await client.authorize(create(AuthorizeRequestSchema, message(broken.token)))).code).toBe("unavailable");
    } finally {
      client.close();
    }
    const connect = async (token: string, method = "GET") => {
      const response = await fetch(`${httpUrl}/portcullis.v1.AuthorizationService/Authorize`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(message(token, method)),
      });
      return ((await response.json()) as { code: string }).code;
    };
    expect(await connect(operator.token)).toBe("ok");
    expect(await connect(readOnly.token, "POST")).toBe("scope_denied");
    expect(await connect(broken.token)).toBe("unavailable");
  });

  /** A GET as an enforcement point sends it (fetch would not let the test set `Host`). */
  const get = (path: string, headers: Record<string, string>): Promise<{ status: number; code: string | undefined }> =>
    new Promise((resolve, reject) => {
      http
        .get(`${httpUrl}${path}`, { headers: { host: "api.example.com", ...headers } }, (response) => {
          response.resume();
          resolve({ status: response.statusCode ?? 0, code: response.headers["x-portcullis-code"] as string | undefined });
        })
        .on("error", reject);
    });

  it("HTTP ext_authz for Envoy and nginx", async () => {
    const envoy = (token: string) => get("/ext-authz/envoy/api/payouts", { authorization: `Bearer ${token}` });
    expect(await envoy(operator.token)).toEqual({ status: 200, code: "ok" });
    expect(await envoy(broken.token)).toEqual({ status: 503, code: "unavailable" });
    const nginx = (token: string) => get("/ext-authz/nginx", { authorization: `Bearer ${token}`, "x-original-method": "POST", "x-original-uri": "/api/payouts" });
    expect(await nginx(readOnly.token)).toEqual({ status: 403, code: "scope_denied" });
    expect(await nginx(broken.token)).toEqual({ status: 403, code: "unavailable" });
  });
});
