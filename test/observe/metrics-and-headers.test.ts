/**
 * What operators read besides answers: `/metrics` (Node's default metrics
 * under their standard names, decisions by transport, token-cache hits and
 * misses, the decision log's queue and drops), `/readyz` naming the policy
 * revision, and the HTTP ext-authz answers' `x-portcullis-…` headers (what
 * `Check` puts in dynamic metadata), all through the real server.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createToken } from "../../src/service/tokens.js";
import { request, type Answer } from "../support/live-proxy.js";
import { startTestServer, type TestServer } from "../support/server.js";
import { envoyCheckClient, type EnvoyCheckClient } from "../envoy/envoy-client.js";

let t: TestServer;
let client: EnvoyCheckClient;
let operator: string;

beforeAll(async () => {
  // A log to a path that cannot be opened: its drops show on /metrics.
  t = await startTestServer(undefined, { decisionLog: { sink: { kind: "file", path: "/nonexistent-folder/decisions.jsonl" }, mode: "denials", sampleRate: 0, maxFileBytes: 1 << 20, maxFiles: 1, capacity: 100 } });
  client = envoyCheckClient(t.grpcAddress);
  operator = (await createToken(t.server.store, t.server.policy(), { tenant: "acme", workspace: "main", environment: "production", type: "service", actor: "test", name: "op", role: "tenant_operator" }, Date.now())).token;
});

afterAll(async () => {
  client?.close();
  await t?.stop();
});

const check = (headers: Record<string, string>) =>
  client.check({ attributes: { source: { address: { socket_address: { address: "203.0.113.10", port_value: 1 } } }, request: { http: { method: "GET", path: "/api/payouts", host: "api.example.com", headers } } } });

function send(method: string, path: string, headers: string[]): Promise<Answer> {
  return request({ host: "127.0.0.1", port: Number(new URL(t.httpUrl).port), method, path, headers, agent: false });
}

async function metrics(): Promise<string> {
  return (await fetch(`${t.httpUrl}/metrics`)).text();
}

function value(text: string, series: string): number {
  const escaped = series.replace(/[{}"\\]/g, (char) => `\\${char}`);
  const match = new RegExp(`^${escaped} (\\S+)$`, "m").exec(text);
  return match === null ? NaN : Number(match[1]);
}

describe("/metrics", () => {
  it("keeps Node's default process metrics under their standard names, without a prefix", async () => {
    const text = await metrics();
    expect(text).toMatch(/^process_cpu_seconds_total \d/m);
    expect(text).toMatch(/^process_resident_memory_bytes \d/m);
    expect(text).toMatch(/^nodejs_eventloop_lag_seconds \d/m);
    expect(text).toMatch(/^nodejs_heap_size_used_bytes \d/m);
    expect(text).not.toMatch(/^portcullis_process_|^portcullis_nodejs_/m);
  });

  it("counts decisions by transport and code, and token-cache hits and misses", async () => {
    const before = await metrics();
    await check({ authorization: `Bearer ${operator}` });
    await check({ authorization: `Bearer ${operator}` });
    await check({});
    await send("GET", "/ext-authz/nginx", ["Host", "api.example.com", "X-Original-Method", "GET", "X-Original-URI", "/api/payouts"]);
    const after = await metrics();
    const delta = (series: string) => value(after, series) - value(before, series);
    expect(delta('portcullis_transport_decisions_total{transport="envoy_grpc",code="ok"}')).toBe(2);
    expect(delta('portcullis_transport_decisions_total{transport="envoy_grpc",code="unauthenticated"}')).toBe(1);
    expect(delta('portcullis_transport_decisions_total{transport="nginx",code="unauthenticated"}')).toBe(1);
    expect(delta('portcullis_decisions_total{code="unauthenticated"}')).toBe(2);
    // every transport's series exist before its first decision
    expect(value(after, 'portcullis_transport_decisions_total{transport="traefik",code="ok"}')).toBe(0);
    expect(value(after, 'portcullis_transport_decisions_total{transport="grpc",code="quota_exceeded"}')).toBe(0);
    // the first look-up of the token went to the store, the second came from the cache
    expect(delta("portcullis_token_cache_misses_total")).toBe(1);
    expect(delta("portcullis_token_cache_hits_total")).toBe(1);
  });

  it("counts decision log records dropped by a sink that cannot write, and the queue's depth", async () => {
    await check({});
    const deadline = Date.now() + 5_000;
    let text = await metrics();
    while (!(value(text, 'portcullis_decision_log_dropped_total{reason="write_failed"}') > 0) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      text = await metrics();
    }
    expect(value(text, 'portcullis_decision_log_dropped_total{reason="write_failed"}')).toBeGreaterThan(0);
    expect(value(text, 'portcullis_decision_log_dropped_total{reason="queue_full"}')).toBe(0);
    expect(value(text, "portcullis_decision_log_written_total")).toBe(0);
    expect(value(text, "portcullis_decision_log_queue_depth")).toBeGreaterThanOrEqual(0);
  });
});

describe("/readyz", () => {
  it("names the policy revision in force", async () => {
    const response = await fetch(`${t.httpUrl}/readyz`);
    expect(response.status).toBe(200);
    expect(await response.text()).toBe(`ready\npolicy revision: ${t.server.policy().revision}\n`);
  });
});

describe("HTTP ext-authz answers carry what Check puts in dynamic metadata", () => {
  it.each([
    { name: "Envoy HTTP allow", path: "/ext-authz/envoy/api/payouts", token: true, status: 200, code: "ok", reason: "ok", rule: "group:/api/payouts", audit: undefined },
    { name: "Envoy HTTP deny", path: "/ext-authz/envoy/api/payouts", token: false, status: 401, code: "unauthenticated", reason: "missing", rule: /.+/, audit: "auth.api_token_unauthenticated" },
    { name: "Traefik deny", path: "/ext-authz/traefik", token: false, status: 401, code: "unauthenticated", reason: "missing", rule: /.+/, audit: "auth.api_token_unauthenticated" },
  ])("$name", async (row) => {
    const headers = ["Host", "api.example.com", "X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/api/payouts", ...(row.token ? ["Authorization", `Bearer ${operator}`] : [])];
    const answer = await send("GET", row.path, headers);
    expect(answer.status).toBe(row.status);
    expect(answer.headers["x-portcullis-code"]).toBe(row.code);
    expect(answer.headers["x-portcullis-reason"]).toBe(row.reason);
    expect(answer.headers["x-portcullis-rule-id"]).toMatch(typeof row.rule === "string" ? new RegExp(`^${row.rule}$`) : row.rule);
    expect(answer.headers["x-portcullis-policy-revision"]).toBe(t.server.policy().revision);
    expect(answer.headers["x-portcullis-audit-event"]).toBe(row.audit);
  });
});
