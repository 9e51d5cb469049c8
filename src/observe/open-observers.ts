/**
 * Builds what observes decisions from the `serve` settings: the decision log
 * (when configured) with its sink, the tracer (which stays idle until an
 * OpenTelemetry SDK is registered) and the metrics, wired together.
 */
import type { Logger } from "pino";
import type { CompiledPolicySet } from "../policy/types.js";
import type { ServerMetrics } from "../service/metrics.js";
import { createDecisionLog, type DecisionLog } from "./decision-log.js";
import type { DecisionLogSettings } from "./decision-log-settings.js";
import { createFdSink, createFileSink } from "./decision-log-sink.js";
import type { DecisionObservers } from "./observe-decisions.js";
import { createSecurityEventRecorder, type SecurityEventRecorder } from "./security-events.js";
import type { SecurityEventLog } from "../store/store-interfaces.js";
import { createDecisionTracer } from "./tracing.js";

/** Observers with the one resource that needs closing. */
export interface OpenDecisionObservers extends DecisionObservers {
  /** Writes the records still queued and the security event counts, then closes the sink; call it before the store closes. */
  close(): Promise<void>;
}

const NO_RECORDS = Object.freeze({ queued: 0, written: 0, droppedQueueFull: 0, droppedWriteFailed: 0 });

// why: a sink that keeps failing would otherwise log a line per batch (ten a second)
const WRITE_ERROR_LOG_INTERVAL_MS = 60_000;

/** Opens the observers; the decision log's file is opened with its first batch, so a bad path is reported then, not at start. */
export function openDecisionObservers(
  settings: DecisionLogSettings | undefined,
  deps: {
    readonly policy: () => CompiledPolicySet | null;
    readonly metrics: ServerMetrics;
    readonly log: Logger;
    /** Where denials are counted as security events; none stored when absent. */
    readonly securityEvents?: SecurityEventLog;
  },
): OpenDecisionObservers {
  let decisionLog: DecisionLog | null = null;
  if (settings !== undefined) {
    const sink = settings.sink.kind === "stdout" ? createFdSink(1) : createFileSink(settings.sink.path, { maxFileBytes: settings.maxFileBytes, maxFiles: settings.maxFiles });
    let lastWarnedMs = -Infinity;
    decisionLog = createDecisionLog({
      mode: settings.mode,
      sampleRate: settings.sampleRate,
      capacity: settings.capacity,
      sink,
      onWriteError: (error, records) => {
        const nowMs = Date.now();
        if (nowMs - lastWarnedMs < WRITE_ERROR_LOG_INTERVAL_MS) return;
        lastWarnedMs = nowMs;
        deps.log.warn({ err: error, records }, "decision log records not written; dropped and counted in portcullis_decision_log_dropped_total (this warning repeats at most once a minute)");
      },
    });
    deps.log.info({ decisionLog: settings.sink.kind === "stdout" ? "stdout" : settings.sink.path, mode: settings.mode }, `decision log: ${settings.mode} to ${settings.sink.kind === "stdout" ? "stdout" : settings.sink.path}`);
  }
  const opened = decisionLog;
  let securityEvents: SecurityEventRecorder | null = null;
  if (deps.securityEvents !== undefined) {
    let lastSecurityWarnedMs = -Infinity;
    securityEvents = createSecurityEventRecorder({
      log: deps.securityEvents,
      onWriteError: (error, denials) => {
        const nowMs = Date.now();
        if (nowMs - lastSecurityWarnedMs < WRITE_ERROR_LOG_INTERVAL_MS) return;
        lastSecurityWarnedMs = nowMs;
        deps.log.warn({ err: error, denials }, "security event counts not stored; dropped and counted in portcullis_security_events_total{outcome=\"write_failed\"} (this warning repeats at most once a minute)");
      },
    });
  }
  const security = securityEvents;
  if (security !== null) deps.metrics.watchSecurityEvents(() => security.stats());
  // Reported when the log is off too (all zero), so that dashboards and alerts find the series.
  deps.metrics.watchDecisionLog(() => opened?.stats() ?? NO_RECORDS);
  return {
    metricsOf: (transport) => deps.metrics.decisionsOf(transport),
    log: opened,
    tracer: createDecisionTracer(),
    securityEvents: security,
    policy: deps.policy,
    close: async () => {
      await security?.close();
      await opened?.close();
    },
  };
}
