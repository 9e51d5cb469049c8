/**
 * The gRPC port's max connection age: a client calling without pause across
 * several ages is moved to new connections (counted by the server) and not one
 * of its calls fails; a call in flight at the GOAWAY still completes, and one
 * still open when the grace ends is cut. Clients: grpc-js, and Envoy's own
 * `Check` protos against the real server.
 */
import * as grpc from "@grpc/grpc-js";
import { afterEach, describe, expect, it } from "vitest";
import { createGrpcServer, type GrpcMethod, type GrpcServer, type MaxConnectionAge } from "../../src/transport/grpc-server.js";
import { createToken } from "../../src/service/tokens.js";
import { startTestServer, type TestServer } from "../support/server.js";
import { envoyCheckClient } from "../envoy/envoy-client.js";

const bytes = (b: Buffer): Buffer => b;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const methods = new Map<string, GrpcMethod>([
  ["/test.Echo/Echo", { kind: "unary", handle: (request) => request }],
  ["/test.Echo/Slow", { kind: "unary", handle: (request) => new Promise<Buffer>((resolve) => setTimeout(() => resolve(request), Number(request.toString()))) }],
]);

const opened: Array<{ close(): void | Promise<void> }> = [];
afterEach(async () => {
  for (const item of opened.splice(0).reverse()) await item.close();
});

async function serve(maxConnectionAge: MaxConnectionAge): Promise<{ server: GrpcServer; client: grpc.Client }> {
  const server = createGrpcServer({ methods, maxMessageBytes: 1024, maxConnectionAge });
  const port = await server.listen("127.0.0.1", 0);
  opened.push({ close: () => server.close(1_000) });
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  opened.push({ close: () => client.close() });
  return { server, client };
}

function call(client: grpc.Client, path: string, request: string): Promise<{ error: grpc.ServiceError | null; response?: Buffer }> {
  return new Promise((resolve) => client.makeUnaryRequest(path, bytes, bytes, Buffer.from(request), (error, response) => resolve({ error, ...(response === undefined ? {} : { response }) })));
}

/** `inFlight` callers, each calling again as soon as its call ends, for `ms`; every call's error (null when it succeeded). */
async function callContinuously(send: () => Promise<unknown>, inFlight: number, ms: number): Promise<{ calls: number; failures: unknown[]; slowestMs: number }> {
  const until = Date.now() + ms;
  const failures: unknown[] = [];
  let calls = 0;
  let slowestMs = 0;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (Date.now() < until) {
        calls += 1;
        const started = Date.now();
        const error = await send().then(
          (result) => (result as { error?: unknown }).error ?? null,
          (error: unknown) => error,
        );
        slowestMs = Math.max(slowestMs, Date.now() - started);
        if (error !== null) failures.push(error);
      }
    }),
  );
  return { calls, failures, slowestMs };
}

describe("max connection age", () => {
  it("moves a client calling without pause to new connections, and no call fails", async () => {
    const { server, client } = await serve({ ageMs: 200, graceMs: 5_000 });
    const { calls, failures, slowestMs } = await callContinuously(() => call(client, "/test.Echo/Echo", "x"), 8, 1_600);
    expect(failures).toEqual([]);
    expect(calls).toBeGreaterThan(100);
    // a call caught between the GOAWAY and the client reading it is refused and retried at once, not left to the 5 s grace
    expect(slowestMs).toBeLessThan(2_000);
    // 1.6 s over ages of 180–220 ms (each reconnect adds a few ms): seven connections or eight
    expect(server.connectionsAccepted()).toBeGreaterThanOrEqual(5);
    expect(server.connectionsAccepted()).toBeLessThanOrEqual(10);
  });

  it("lets a call in flight at the GOAWAY complete, while new calls go to a new connection", async () => {
    const { server, client } = await serve({ ageMs: 100, graceMs: 5_000 });
    expect((await call(client, "/test.Echo/Echo", "warm")).error).toBeNull();
    const slow = call(client, "/test.Echo/Slow", "700");
    await sleep(300);
    // the first connection has had its GOAWAY (at 90–110 ms) and still carries the slow call
    const quick = await call(client, "/test.Echo/Echo", "quick");
    expect(quick.error).toBeNull();
    expect(server.connectionsAccepted()).toBeGreaterThanOrEqual(2);
    const result = await slow;
    expect(result.error).toBeNull();
    expect(result.response?.toString()).toBe("700");
  });

  it("cuts a call still open when the grace ends", async () => {
    const { client } = await serve({ ageMs: 100, graceMs: 200 });
    const started = Date.now();
    const result = await call(client, "/test.Echo/Slow", "3000");
    expect(result.error?.code).toBe(grpc.status.UNAVAILABLE);
    // age (90–110 ms) plus grace (200 ms), far under the call's 3 s
    expect(Date.now() - started).toBeLessThan(1_500);
  });

  it("never retires a connection when no age is set", async () => {
    const server = createGrpcServer({ methods, maxMessageBytes: 1024 });
    const port = await server.listen("127.0.0.1", 0);
    opened.push({ close: () => server.close(1_000) });
    const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    opened.push({ close: () => client.close() });
    const { failures } = await callContinuously(() => call(client, "/test.Echo/Echo", "x"), 4, 500);
    expect(failures).toEqual([]);
    expect(server.connectionsAccepted()).toBe(1);
  });
});

describe("max connection age on the real server, with Envoy's Check protos", () => {
  let t: TestServer | undefined;
  afterEach(async () => {
    await t?.stop();
    t = undefined;
  });

  it("answers every Check across several ages, on new connections", async () => {
    t = await startTestServer(undefined, { grpcMaxConnectionAgeMs: 250, grpcMaxConnectionAgeGraceMs: 5_000 });
    const created = await createToken(
      t.server.store,
      t.server.policy(),
      { tenant: "acme", workspace: "main", environment: "production", type: "service", actor: "test", name: "age", role: "tenant_operator" },
      Date.now(),
    );
    const client = envoyCheckClient(t.grpcAddress);
    opened.push(client);
    const check = {
      attributes: {
        request: { http: { method: "GET", path: "/api/payouts", host: "api.example.com", headers: { ":method": "GET", ":path": "/api/payouts", authorization: `Bearer ${created.token}` } } },
      },
    };
    const codes = new Map<number, number>();
    const { calls, failures, slowestMs } = await callContinuously(
      () =>
        client.check(check).then((response: { status: { code: number } }) => {
          codes.set(response.status.code, (codes.get(response.status.code) ?? 0) + 1);
          return { error: null };
        }),
      8,
      1_600,
    );
    expect(failures).toEqual([]);
    expect(slowestMs).toBeLessThan(2_000);
    expect([...codes.keys()]).toEqual([0]);
    expect(codes.get(0)).toBe(calls);
    const metrics = await (await fetch(`${t.httpUrl}/metrics`)).text();
    const accepted = Number(/^portcullis_grpc_connections_total (\d+)$/m.exec(metrics)?.[1]);
    expect(accepted).toBeGreaterThanOrEqual(4);
  });
});
