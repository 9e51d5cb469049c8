/**
 * Prometheus metrics for operators: decisions by code and by transport,
 * decision latency, the policy set in force and its reloads, token-cache hits
 * and misses, the decision log's queue and drops, and Node's default process
 * metrics under their standard names (`process_cpu_seconds_total`,
 * `nodejs_eventloop_lag_seconds`, …, no prefix), which dashboards expect.
 * One registry per server, so that tests and embedders running several
 * servers in one process never share counters.
 */
import type { WebhookDelivererStats } from "../webhooks/webhook-deliverer.js";
import { Counter, Gauge, Registry, collectDefaultMetrics, type Metric } from "prom-client";
import { DECISION_CODES_BY_PRECEDENCE, type DecisionCode } from "../engine/codes.js";
import type { Decision } from "../engine/types.js";
import type { CompiledPolicySet } from "../policy/types.js";
import type { DecisionLogStats } from "../observe/decision-log.js";
import type { SecurityEventStats } from "../observe/security-events.js";

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
  /**
   * The observer of one transport's decisions: counts each by transport and
   * code (besides {@link observeDecision}'s count and latency). Label children
   * are bound here, once, so a decision costs two map look-ups.
   */
  decisionsOf(transport: string): (decision: Decision, seconds: number) => void;
  /** Reports the token cache's hit and miss counts, read on each scrape. */
  watchTokenCache(stats: () => { readonly hits: number; readonly misses: number }): void;
  /** Reports the decision log's queue depth, writes and drops, read on each scrape. */
  watchDecisionLog(stats: () => DecisionLogStats): void;
  /** Reports the security event counts pending, stored and dropped, read on each scrape. */
  watchSecurityEvents(stats: () => SecurityEventStats): void;
  /** Reports the security event rows deleted past their retention, read on each scrape. */
  watchSecurityEventPruning(stats: () => { readonly pruned: number }): void;
  /** Reports webhook deliveries, failed attempts, give-ups, drops and the outbox depth, read on each scrape. */
  watchWebhooks(stats: () => WebhookDelivererStats): void;
  /** The Prometheus text exposition. */
  render(): Promise<{ contentType: string; body: string }>;
}

// Decisions take microseconds; the upper buckets catch a slow store or a stalled event loop.
const LATENCY_BUCKETS_SECONDS = [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.01, 0.05];

/** Creates the metrics of one server, with Node's default process metrics; `worker` names the process among `serve --workers`. */
export function createServerMetrics(options: { worker?: { id: number; pid: number } } = {}): ServerMetrics {
  const registry = new Registry();
  // why: no prefix, so that Node dashboards and alerts (process_cpu_seconds_total, nodejs_heap_size_used_bytes, …) work unchanged
  collectDefaultMetrics({ register: registry });
  // why: a prom-client label child hashes its labels on every inc (about 0.3 µs); decisions bump plain
  // numbers instead, and the counters take the differences when scraped
  const countsByCode = new Float64Array(DECISION_CODES_BY_PRECEDENCE.length);
  const byTransportCounts = new Map<string, Float64Array>();
  const decisions = new Counter({
    name: "portcullis_decisions_total",
    help: "Decisions made, by decision code.",
    labelNames: ["code"] as const,
    registers: [registry],
    collect() {
      reportCounts(this, countsByCode, reportedByCode, (code) => ({ code }));
    },
  });
  const reportedByCode = new Float64Array(DECISION_CODES_BY_PRECEDENCE.length);
  const latency = registerHistogram(registry, "portcullis_decision_duration_seconds", "Time from request to decision inside Portcullis, transport excluded.", LATENCY_BUCKETS_SECONDS);
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
  const reportedByTransport = new Map<string, Float64Array>();
  const byTransport = new Counter({
    name: "portcullis_transport_decisions_total",
    help: "Decisions made, by transport (grpc, connect, envoy_grpc, envoy_http, nginx, traefik, token_service) and decision code.",
    labelNames: ["transport", "code"] as const,
    registers: [registry],
    collect() {
      for (const [transport, counts] of byTransportCounts) reportCounts(this, counts, reportedByTransport.get(transport)!, (code) => ({ transport, code }));
    },
  });
  // Every code starts at 0, so that rate() and alerts see a series before the first denial.
  for (const code of DECISION_CODES_BY_PRECEDENCE) decisions.labels(code).inc(0);
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
      countsByCode[CODE_INDEX.get(decision.code)!]++;
      latency.observe(seconds);
    },
    decisionsOf(transport) {
      let counts = byTransportCounts.get(transport);
      if (counts === undefined) {
        counts = new Float64Array(DECISION_CODES_BY_PRECEDENCE.length);
        byTransportCounts.set(transport, counts);
        reportedByTransport.set(transport, new Float64Array(DECISION_CODES_BY_PRECEDENCE.length));
        for (const code of DECISION_CODES_BY_PRECEDENCE) byTransport.labels(transport, code).inc(0);
      }
      const own = counts;
      return (decision, seconds) => {
        const index = CODE_INDEX.get(decision.code)!;
        countsByCode[index]++;
        own[index]++;
        latency.observe(seconds);
      };
    },
    watchTokenCache(stats) {
      countersFromTotals(registry, "portcullis_token_cache", stats, [
        ["hits", "Token look-ups answered from the in-memory cache."],
        ["misses", "Token look-ups that went to the token store (unknown tokens included)."],
      ]);
    },
    watchDecisionLog(stats) {
      new Gauge({
        name: "portcullis_decision_log_queue_depth",
        help: "Decision log records waiting to be written.",
        registers: [registry],
        collect() {
          this.set(stats().queued);
        },
      });
      let written = 0;
      new Counter({
        name: "portcullis_decision_log_written_total",
        help: "Decision log records written to the sink.",
        registers: [registry],
        collect() {
          const now = stats().written;
          this.inc(now - written);
          written = now;
        },
      });
      const seen = { queue_full: 0, write_failed: 0 };
      new Counter({
        name: "portcullis_decision_log_dropped_total",
        help: "Decision log records dropped instead of stalling decisions: queue_full (the sink is slower than decisions), write_failed (the sink refused a batch).",
        labelNames: ["reason"] as const,
        registers: [registry],
        collect() {
          const now = stats();
          this.labels("queue_full").inc(now.droppedQueueFull - seen.queue_full);
          this.labels("write_failed").inc(now.droppedWriteFailed - seen.write_failed);
          seen.queue_full = now.droppedQueueFull;
          seen.write_failed = now.droppedWriteFailed;
        },
      });
    },
    watchSecurityEvents(stats) {
      new Gauge({
        name: "portcullis_security_events_pending",
        help: "Denials counted in memory as security events, not yet stored.",
        registers: [registry],
        collect() {
          this.set(stats().pending);
        },
      });
      const seen = { stored: 0, map_full: 0, write_failed: 0 };
      new Counter({
        name: "portcullis_security_events_total",
        help: "Denials counted as security events, by outcome: stored, map_full (too many distinct tokens within a flush), write_failed (the store refused a batch).",
        labelNames: ["outcome"] as const,
        registers: [registry],
        collect() {
          const now = stats();
          this.labels("stored").inc(now.written - seen.stored);
          this.labels("map_full").inc(now.droppedFull - seen.map_full);
          this.labels("write_failed").inc(now.droppedWriteFailed - seen.write_failed);
          seen.stored = now.written;
          seen.map_full = now.droppedFull;
          seen.write_failed = now.droppedWriteFailed;
        },
      });
    },
    watchSecurityEventPruning(stats) {
      let seen = 0;
      new Counter({
        name: "portcullis_security_event_rows_pruned_total",
        help: "Stored security event rows deleted because their minute is older than the retention (--security-event-retention).",
        registers: [registry],
        collect() {
          const now = stats().pruned;
          this.inc(now - seen);
          seen = now;
        },
      });
    },
    watchWebhooks(stats) {
      new Gauge({
        name: "portcullis_webhook_queue_depth",
        help: "Webhook deliveries pending in the outbox (waiting, retrying or being tried), as seen by this process's last delivery round.",
        registers: [registry],
        collect() {
          this.set(stats().pending);
        },
      });
      const seen = { delivered: 0, failed_attempt: 0, given_up: 0, dropped_full: 0 };
      new Counter({
        name: "portcullis_webhook_deliveries_total",
        help: "Webhook delivery outcomes in this process: delivered (a 2xx answer), failed_attempt (to be retried or given up), given_up (attempts or age exhausted), dropped_full (not enqueued: the outbox held its capacity of pending deliveries).",
        labelNames: ["outcome"] as const,
        registers: [registry],
        collect() {
          const now = stats();
          this.labels("delivered").inc(now.delivered - seen.delivered);
          this.labels("failed_attempt").inc(now.failedAttempts - seen.failed_attempt);
          this.labels("given_up").inc(now.givenUp - seen.given_up);
          this.labels("dropped_full").inc(now.dropped - seen.dropped_full);
          seen.delivered = now.delivered;
          seen.failed_attempt = now.failedAttempts;
          seen.given_up = now.givenUp;
          seen.dropped_full = now.dropped;
        },
      });
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

const CODE_INDEX: ReadonlyMap<DecisionCode, number> = new Map(DECISION_CODES_BY_PRECEDENCE.map((code, index) => [code, index]));

/** Adds to a counter, per code, what `counts` gained since the last scrape. */
function reportCounts<L extends string>(counter: Counter<L>, counts: Float64Array, reported: Float64Array, labelsOf: (code: DecisionCode) => Partial<Record<L, string>>): void {
  for (let i = 0; i < counts.length; i++) {
    const delta = counts[i]! - reported[i]!;
    if (delta === 0) continue;
    counter.inc(labelsOf(DECISION_CODES_BY_PRECEDENCE[i]!), delta);
    reported[i] = counts[i]!;
  }
}

/**
 * A histogram without labels whose `observe` bumps two numbers: prom-client's
 * own builds a closure and hashes labels on each call (about 0.3 µs, paid by
 * every decision). Rendered by the registry like any histogram.
 */
function registerHistogram(registry: Registry, name: string, help: string, bounds: readonly number[]): { observe(value: number): void } {
  const counts = new Float64Array(bounds.length + 1);
  let sum = 0;
  const get = () => {
    const values: { metricName: string; labels: Record<string, string | number>; value: number }[] = [];
    let cumulative = 0;
    for (let i = 0; i < bounds.length; i++) {
      cumulative += counts[i]!;
      values.push({ metricName: `${name}_bucket`, labels: { le: bounds[i]! }, value: cumulative });
    }
    cumulative += counts[bounds.length]!;
    values.push({ metricName: `${name}_bucket`, labels: { le: "+Inf" }, value: cumulative });
    values.push({ metricName: `${name}_sum`, labels: {}, value: sum });
    values.push({ metricName: `${name}_count`, labels: {}, value: cumulative });
    return { name, help, type: "histogram", aggregator: "sum", values };
  };
  registry.registerMetric({ name, help, type: "histogram", aggregator: "sum", get } as unknown as Metric);
  return {
    observe(value) {
      let i = 0;
      while (i < bounds.length && value > bounds[i]!) i++;
      counts[i]!++;
      sum += value;
    },
  };
}

/** Counters `<prefix>_<name>_total` that follow running totals kept elsewhere, read on each scrape. */
function countersFromTotals<K extends string>(registry: Registry, prefix: string, totals: () => Readonly<Record<K, number>>, names: readonly (readonly [K, string])[]): void {
  for (const [name, help] of names) {
    let reported = 0;
    new Counter({
      name: `${prefix}_${name}_total`,
      help,
      registers: [registry],
      collect() {
        const now = totals()[name];
        this.inc(now - reported);
        reported = now;
      },
    });
  }
}
