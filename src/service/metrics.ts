/**
 * Prometheus metrics for operators: decisions by code, decision latency, the
 * policy set in force and its reloads. One registry per server, so that tests
 * and embedders running several servers in one process never share counters.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import { DECISION_CODES_BY_PRECEDENCE, type DecisionCode } from "../engine/codes.js";
import type { Decision } from "../engine/types.js";
import type { CompiledPolicySet } from "../policy/types.js";

/** What the server reports, and how `/metrics` renders it. */
export interface ServerMetrics {
  /** Counts one decision and its duration. Pre-bound label children keep this to a few hundred nanoseconds. */
  observeDecision(decision: Decision, seconds: number): void;
  /** Records the policy set now in force. */
  policyLoaded(policy: CompiledPolicySet): void;
  /** Counts a reload attempt. */
  policyReload(result: "ok" | "refused"): void;
  /** Reports the gRPC connections accepted so far, read at each scrape (their rate shows the max connection age at work). */
  countGrpcConnections(read: () => number): void;
  /** The Prometheus text exposition. */
  render(): Promise<{ contentType: string; body: string }>;
}

// Decisions take microseconds; the upper buckets catch a slow store or a stalled event loop.
const LATENCY_BUCKETS_SECONDS = [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.01, 0.05];

/** Creates the metrics of one server, with Node's default process metrics; `worker` names the process among `serve --workers`. */
export function createServerMetrics(options: { worker?: { id: number; pid: number } } = {}): ServerMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "portcullis_" });
  const decisions = new Counter({
    name: "portcullis_decisions_total",
    help: "Decisions made, by decision code.",
    labelNames: ["code"] as const,
    registers: [registry],
  });
  const latency = new Histogram({
    name: "portcullis_decision_duration_seconds",
    help: "Time from request to decision inside Portcullis, transport excluded.",
    buckets: LATENCY_BUCKETS_SECONDS,
    registers: [registry],
  });
  const policyInfo = new Gauge({
    name: "portcullis_policy_info",
    help: "The policy set in force: 1 for its name and revision.",
    labelNames: ["policy_set", "revision"] as const,
    registers: [registry],
  });
  const reloads = new Counter({
    name: "portcullis_policy_reloads_total",
    help: "Policy reload attempts, by result; a refused reload keeps the last good set.",
    labelNames: ["result"] as const,
    registers: [registry],
  });
  const byCode = new Map<DecisionCode, ReturnType<typeof decisions.labels>>();
  // Every code starts at 0, so that rate() and alerts see a series before the first denial.
  for (const code of DECISION_CODES_BY_PRECEDENCE) {
    const child = decisions.labels(code);
    child.inc(0);
    byCode.set(code, child);
  }
  reloads.labels("ok").inc(0);
  reloads.labels("refused").inc(0);
  const grpcConnections = new Counter({
    name: "portcullis_grpc_connections_total",
    help: "gRPC connections accepted; with a max connection age, clients reconnect about once per age.",
    registers: [registry],
  });
  let readGrpcConnections = (): number => 0;
  if (options.worker !== undefined) {
    // why: with --workers, a scrape through the shared port reaches one worker; this says which
    new Gauge({ name: "portcullis_worker_info", help: "The worker process that answered this scrape (serve --workers).", labelNames: ["worker", "pid"] as const, registers: [registry] })
      .labels(String(options.worker.id), String(options.worker.pid))
      .set(1);
  }

  return {
    observeDecision(decision, seconds) {
      byCode.get(decision.code)!.inc();
      latency.observe(seconds);
    },
    policyLoaded(policy) {
      policyInfo.reset();
      policyInfo.labels(policy.name, policy.revision.slice(0, 12)).set(1);
    },
    policyReload(result) {
      reloads.labels(result).inc();
    },
    countGrpcConnections(read) {
      readGrpcConnections = read;
    },
    async render() {
      grpcConnections.reset();
      grpcConnections.inc(readGrpcConnections());
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
  };
}
