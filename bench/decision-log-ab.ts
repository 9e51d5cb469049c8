/**
 * What observing a decision costs, in one process: Envoy `Check` bytes in to
 * bytes out (`createEnvoyCheck`: decode, authorize, encode) for an allow (a
 * `tenant_operator` token from an in-memory table) and a denial (no token),
 * under five wirings of the same authorizer:
 *
 * - `before`: the authorizer's own timing hook feeding the metrics, as main
 *   wired it before src/observe (`observe: metrics.observeDecision`);
 * - `log off`: `observeDecisions` as `serve` wires it now with the log off
 *   and no OpenTelemetry SDK registered (metrics by transport, the idle tracer);
 * - `denials`, `all`: the same with the decision log in that mode, writing to
 *   a file in the temporary folder;
 * - `sampled 1%`: every denial and 1% of allows.
 *
 * Each batch sends its calls in slices of 64 with a turn of the event loop
 * between them (as a server's I/O would), and ends with the log flushed, so
 * the figure includes formatting and writing the records: `process.cpuUsage`
 * counts the thread pool's write too. Rounds rotate the order of the wirings;
 * each round gives one ratio to `before` of the same round.
 *
 * Run: `npm run build && node --expose-gc dist/bench/decision-log-ab.js [rounds] [calls per batch]`.
 */
import fs from "node:fs";
import path from "node:path";
import { setImmediate as nextTurn } from "node:timers/promises";
import { createDecisionLog, type DecisionLog, type DecisionLogMode } from "../src/observe/decision-log.js";
import { createFileSink } from "../src/observe/decision-log-sink.js";
import { observeDecisions } from "../src/observe/observe-decisions.js";
import { createDecisionTracer } from "../src/observe/tracing.js";
import { createAuthorizer, type Authorizer } from "../src/service/authorize.js";
import { settledNow } from "../src/service/maybe-promise.js";
import { createServerMetrics } from "../src/service/metrics.js";
import { createEnvoyCheck } from "../src/transport/envoy.js";
import { buildTrustedProxyMatcher } from "../src/transport/trusted-proxies.js";
import { generateToken } from "../src/token/index.js";
import { loadCheckCodec } from "./envoy-check.js";
import { BUNDLED_POLICY_DIR, loadPolicyOrThrow, NOW_MS, tempDir, tokenRecord } from "./fixtures.js";
import { median } from "./stats.js";

const rounds = Number(process.argv[2] ?? 15);
const calls = Number(process.argv[3] ?? 20_000);
const SLICE = 64;

const policy = loadPolicyOrThrow(BUNDLED_POLICY_DIR);
const live = generateToken("sk_live_");
const tokens = new Map([[live, tokenRecord()]]);
const codec = loadCheckCodec();
const requestOf = (headers: Record<string, string>) =>
  codec.encode({ method: "GET", path: "/api/payouts/po_123?page=2", host: "api.example.com", headers: { "user-agent": "bench/1.0", accept: "application/json", "x-request-id": "bench-1", ...headers }, sourceIp: "203.0.113.10" });
const requests = { allow: requestOf({ authorization: `Bearer ${live}` }), deny: requestOf({}) };
const dir = tempDir("decision-log-ab");

interface Wiring {
  readonly name: string;
  readonly check: (bytes: Buffer) => Buffer;
  readonly log: DecisionLog | null;
  readonly cpuUsPerCall: Record<keyof typeof requests, number[]>;
}

function wiring(name: string, mode: DecisionLogMode | "off" | "before"): Wiring {
  const metrics = createServerMetrics();
  const deps = { policy: () => policy, tokens: { find: (token: string) => tokens.get(token) }, tenantState: { tenantSuspended: () => false, workspaceRestricted: () => false }, now: () => NOW_MS, onError: () => undefined };
  let authorize: Authorizer;
  let log: DecisionLog | null = null;
  if (mode === "before") {
    authorize = createAuthorizer({ ...deps, observe: (decision, seconds) => metrics.observeDecision(decision, seconds) });
  } else {
    if (mode !== "off") {
      log = createDecisionLog({ mode, sampleRate: 0.01, capacity: 1_000_000, sink: createFileSink(path.join(dir, `${name.replace(/\W+/g, "-")}.jsonl`), { maxFileBytes: 256 * 1024 * 1024, maxFiles: 1 }) });
    }
    authorize = observeDecisions(createAuthorizer(deps), "envoy_grpc", { metricsOf: (transport) => metrics.decisionsOf(transport), log, tracer: createDecisionTracer(), policy: () => policy });
  }
  const envoyCheck = createEnvoyCheck({ authorize, trustedProxies: buildTrustedProxyMatcher([]) });
  return { name, check: (bytes) => settledNow(envoyCheck(bytes)), log, cpuUsPerCall: { allow: [], deny: [] } };
}

const wirings = [wiring("before", "before"), wiring("log off", "off"), wiring("denials", "denials"), wiring("sampled 1%", "sampled"), wiring("all", "all")];
for (const w of wirings) {
  if (codec.statusCode(w.check(requests.allow).subarray(5)) !== 0) throw new Error(`${w.name}: the allow did not allow`);
  if (codec.statusCode(w.check(requests.deny).subarray(5)) === 0) throw new Error(`${w.name}: the denial allowed`);
}

async function batch(w: Wiring, request: Buffer): Promise<number> {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  const start = process.cpuUsage();
  let bytes = 0;
  for (let sent = 0; sent < calls; ) {
    for (let i = 0; i < SLICE && sent < calls; i++, sent++) bytes += w.check(request).length;
    await nextTurn();
  }
  await w.log?.flush();
  const used = process.cpuUsage(start);
  if (bytes === 0) throw new Error("no bytes");
  return (used.user + used.system) / calls;
}

for (const w of wirings) for (const kind of ["allow", "deny"] as const) await batch(w, requests[kind]); // warm-up
for (let round = 0; round < rounds; round++) {
  const order = wirings.map((_, i) => wirings[(i + round) % wirings.length]!);
  for (const w of order) for (const kind of ["allow", "deny"] as const) w.cpuUsPerCall[kind].push(await batch(w, requests[kind]));
}

const fmt = (n: number) => n.toFixed(2);
const before = wirings[0]!;
for (const kind of ["allow", "deny"] as const) {
  for (const w of wirings) {
    const sorted = [...w.cpuUsPerCall[kind]].sort((a, b) => a - b);
    const ratios = w.cpuUsPerCall[kind].map((value, i) => value / before.cpuUsPerCall[kind][i]!).sort((a, b) => a - b);
    const stats = w.log?.stats();
    console.log(
      `${kind} ${w.name}: CPU per Check median ${fmt(median(sorted))} µs [${fmt(sorted[0]!)} – ${fmt(sorted[sorted.length - 1]!)}]; ratio to before per round median ${median(ratios).toFixed(3)} [${ratios[0]!.toFixed(3)} – ${ratios[ratios.length - 1]!.toFixed(3)}]${stats === undefined ? "" : `; records written ${stats.written}, dropped ${stats.droppedQueueFull + stats.droppedWriteFailed}`}`,
    );
  }
}
for (const w of wirings) await w.log?.close();
fs.rmSync(dir, { recursive: true, force: true });
