/**
 * The webhook promise under faults, end to end on the real server: a
 * receiver in its own process first answers 500, is then killed with SIGKILL
 * (connections refused), and comes back. Every event of the audit trail and
 * every security event row reaches each subscribed endpoint, with a valid
 * signature, and counted by idempotency key the receiver sees each once per
 * endpoint; retries happened on the way. A Portcullis restart while the
 * receiver is away loses nothing pending.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startServer, type RunningServer } from "../../src/main.js";
import { createToken } from "../../src/service/tokens.js";
import { envoyCheckClient } from "../envoy/envoy-client.js";
import { EXAMPLE_POLICY_DIR } from "../support/fixtures.js";
import { readReceived, signatureIsValid, startReceiverProcess, waitFor, type ReceivedWebhook, type ReceiverProcess } from "../support/webhook-receiver.js";

const SECRET_ENV = "PORTCULLIS_TEST_FAULT_WEBHOOK_SECRET";
const SECRET = "fault-test-secret-0123456789abcdef";
const TUNING = { pollIntervalMs: 20, timeoutMs: 1_000, leaseMs: 5_000, retry: { baseDelayMs: 20, maxDelayMs: 150, maxAttempts: 10_000 } };

let root: string;
const receivers: ReceiverProcess[] = [];
const servers: RunningServer[] = [];

beforeAll(() => {
  process.env[SECRET_ENV] = SECRET;
  root = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-webhook-faults-"));
});
afterEach(async () => {
  for (const server of servers.splice(0)) await server.close(500);
  for (const receiver of receivers.splice(0)) await receiver.kill();
});
afterAll(() => {
  delete process.env[SECRET_ENV];
  fs.rmSync(root, { recursive: true, force: true });
});

/** A policy folder whose `siem` endpoint takes every event and `audit` the token lifecycle, both on `port`. */
function policyFor(name: string, port: number): string {
  const dir = path.join(root, `${name}-policies`);
  fs.cpSync(EXAMPLE_POLICY_DIR, dir, { recursive: true });
  const file = path.join(dir, "policy-set.json");
  const settings = JSON.parse(fs.readFileSync(file, "utf8"));
  settings.policySet.webhooks = [
    { id: "siem", url: `http://127.0.0.1:${port}/siem`, events: ["*"], secret: `env:${SECRET_ENV}` },
    { id: "audit", url: `http://127.0.0.1:${port}/audit`, events: ["api_token.*"], secret: `env:${SECRET_ENV}` },
  ];
  fs.writeFileSync(file, JSON.stringify(settings, null, 2));
  return dir;
}

async function start(policyDir: string, dataDir: string): Promise<RunningServer> {
  const server = await startServer({ host: "127.0.0.1", grpcPort: 0, httpPort: 0, policyDir, dataDir, logLevel: "silent", watchPolicies: false, webhookDelivery: TUNING }, pino({ level: "silent" }));
  servers.push(server);
  return server;
}

async function startReceiver(port: number, status: number, file: string): Promise<ReceiverProcess> {
  const receiver = await startReceiverProcess(port, status, file);
  receivers.push(receiver);
  return receiver;
}

const base = { tenant: "acme", workspace: "main", environment: "production", type: "service" as const, role: "tenant_operator", actor: "test" };

/** Every delivery of the outbox, once none is pending and no event waits to be fanned out. */
async function settled(server: RunningServer, timeoutMs: number) {
  await waitFor(async () => (await server.store.listWebhookDeliveries({ status: "pending", limit: 1 })).length === 0 && (await server.webhooks.runOnce(), server.webhooks.stats().waitingEvents === 0 && server.webhooks.stats().pending === 0), timeoutMs, "every webhook delivery to finish");
  return server.store.listWebhookDeliveries({ limit: 10_000 });
}

/** The receiver's view: answered-2xx requests, deduplicated by (endpoint path, idempotency key). */
function dedupe(received: readonly ReceivedWebhook[]): Map<string, ReceivedWebhook> {
  const seen = new Map<string, ReceivedWebhook>();
  for (const request of received) if (request.status === 200) seen.set(`${request.path} ${request.headers["idempotency-key"]}`, request);
  return seen;
}

describe("webhook delivery through a failing, killed and returning receiver", () => {
  it("delivers every event to each subscribed endpoint, signed, once per endpoint by idempotency key, after retries", async () => {
    const received = path.join(root, "received.jsonl");
    const failing = await startReceiver(0, 500, received);
    const port = failing.port;
    const dataDir = path.join(root, "data");
    const server = await start(policyFor("faults", port), dataDir);
    const envoy = envoyCheckClient(`127.0.0.1:${server.grpcPort}`);
    try {
      // 1. the receiver answers 500: lifecycle events and a flood of denials (one security event row)
      const made = [];
      for (const name of ["one", "two", "three"]) made.push(await createToken(server.store, server.policy(), { ...base, name }, Date.now()));
      await server.store.revoke(made[0]!.record.id, "test", "leaked");
      const unauthenticated = { attributes: { source: { address: { socket_address: { address: "203.0.113.10", port_value: 1 } } }, request: { http: { method: "GET", path: "/api/payouts", host: "api.example.com", headers: { ":authority": "api.example.com", ":method": "GET", ":path": "/api/payouts" } } } } };
      for (let i = 0; i < 50; i++) expect((await envoy.check(unauthenticated)).status.code).not.toBe(0);
      // the recorder stores counts once a second
      await waitFor(async () => (await server.store.listSecurityEvents({ limit: 10 })).reduce((sum, row) => sum + row.count, 0) === 50, 5_000, "the denials to be stored");
      await waitFor(() => readReceived(received).filter((r) => r.status === 500).length >= 12, 10_000, "the receiver to refuse a dozen attempts");

      // 2. the receiver is killed: connections are refused, and more events happen meanwhile
      await failing.kill();
      await waitFor(async () => (await server.store.listWebhookDeliveries({ limit: 100 })).some((d) => d.lastError === "ECONNREFUSED"), 10_000, "an attempt refused by the dead receiver");
      await server.store.suspendTenant("initech", { actor: "test", reason: "faults" });
      await server.store.rotate(made[1]!.record.id, { overlapMs: 0, actor: "test" });
      await server.store.emergencyRevoke({ ids: [made[2]!.record.id] }, { actor: "test", reason: "faults" });

      // 3. it comes back on the same port and answers 200
      await startReceiver(port, 200, received);
      const deliveries = await settled(server, 20_000);

      const auditRows = await server.store.listAudit({ limit: 1_000 });
      const securityRows = await server.store.listSecurityEvents({ limit: 1_000 });
      // one row (two if the flood straddled a minute), never one per denial
      expect(securityRows.length).toBeLessThanOrEqual(2);
      expect(securityRows.every((row) => row.event === "auth.api_token_unauthenticated")).toBe(true);
      const expected = {
        "/siem": auditRows.length + securityRows.length,
        "/audit": auditRows.filter((row) => row.event.startsWith("api_token.")).length,
      };
      expect(deliveries.every((d) => d.status === "delivered")).toBe(true);
      expect(deliveries.filter((d) => d.endpointId === "siem")).toHaveLength(expected["/siem"]);
      expect(deliveries.filter((d) => d.endpointId === "audit")).toHaveLength(expected["/audit"]);

      const all = readReceived(received);
      const unique = dedupe(all);
      for (const [endpointPath, count] of Object.entries(expected)) {
        expect([...unique.keys()].filter((key) => key.startsWith(`${endpointPath} `)), endpointPath).toHaveLength(count);
      }
      // what the receiver kept is exactly what the store says was delivered, event by event
      expect([...unique.keys()].sort()).toEqual(deliveries.map((d) => `/${d.endpointId} ${d.eventId}`).sort());
      // lifecycle types as the audit trail has them
      const siemTypes = [...unique.values()].filter((r) => r.path === "/siem").map((r) => r.headers["portcullis-event-type"]).sort();
      expect(siemTypes).toEqual([...auditRows.map((row) => row.event), ...securityRows.map((row) => row.event)].sort());
      for (const request of unique.values()) {
        expect(signatureIsValid(SECRET, request.headers["portcullis-signature"], request.body), request.body).toBe(true);
        const body = JSON.parse(request.body);
        expect(body.id).toBe(request.headers["idempotency-key"]);
        expect(body.type).toBe(request.headers["portcullis-event-type"]);
      }
      // retries happened: events refused with 500 were sent again, and attempts were counted
      expect(all.some((r) => r.status === 500 && unique.has(`${r.path} ${r.headers["idempotency-key"]}`))).toBe(true);
      expect(Math.max(...deliveries.map((d) => d.attempts))).toBeGreaterThan(2);
      expect(Math.max(...all.map((r) => Number(r.headers["portcullis-delivery-attempt"])))).toBeGreaterThan(2);
      expect(server.webhooks.stats().failedAttempts).toBeGreaterThan(0);
      // and the metrics say so
      const metrics = await (await fetch(`http://127.0.0.1:${server.httpPort}/metrics`)).text();
      const metric = (pattern: RegExp) => Number(pattern.exec(metrics)?.[1] ?? NaN);
      expect(metric(/^portcullis_webhook_deliveries_total\{outcome="delivered"\} (\d+)$/m)).toBe(deliveries.length);
      expect(metric(/^portcullis_webhook_deliveries_total\{outcome="failed_attempt"\} (\d+)$/m)).toBe(deliveries.reduce((sum, d) => sum + d.attempts - 1, 0));
      expect(metric(/^portcullis_webhook_deliveries_total\{outcome="dropped_full"\} (\d+)$/m)).toBe(0);
      expect(metric(/^portcullis_webhook_queue_depth (\d+)$/m)).toBe(0);
    } finally {
      envoy.close();
    }
  }, 60_000);

  it("a Portcullis restart while the receiver is away loses nothing pending", async () => {
    const received = path.join(root, "restart-received.jsonl");
    // a port that nothing listens on yet: the first server's attempts are refused
    const probe = await startReceiverProcess(0, 200, path.join(root, "probe.jsonl"));
    const port = probe.port;
    await probe.kill();
    const policyDir = policyFor("restart", port);
    const dataDir = path.join(root, "restart-data");
    const first = await start(policyDir, dataDir);
    const created = await createToken(first.store, first.policy(), { ...base, name: "before-restart" }, Date.now());
    await first.store.revoke(created.record.id, "test", null);
    await waitFor(async () => (await first.store.listWebhookDeliveries({ limit: 10 })).some((d) => d.attempts > 0), 10_000, "a refused attempt");
    await first.close(500);
    servers.splice(servers.indexOf(first), 1);

    const second = await start(policyDir, dataDir);
    const pending = await second.store.listWebhookDeliveries({ status: "pending", limit: 10 });
    expect(pending.map((d) => `${d.endpointId} ${d.type}`).sort()).toEqual(["audit api_token.created", "audit api_token.revoked", "siem api_token.created", "siem api_token.revoked"]);
    await startReceiver(port, 200, received);
    const deliveries = await settled(second, 20_000);
    expect(deliveries.map((d) => d.status)).toEqual(["delivered", "delivered", "delivered", "delivered"]);
    const unique = dedupe(readReceived(received));
    expect([...unique.keys()].sort()).toEqual(deliveries.map((d) => `/${d.endpointId} ${d.eventId}`).sort());
    for (const request of unique.values()) expect(signatureIsValid(SECRET, request.headers["portcullis-signature"], request.body)).toBe(true);
  }, 60_000);
});
