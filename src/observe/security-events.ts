/**
 * Security events: every denial's audit event, counted per (token, event, UTC
 * minute) in memory and added to the store's {@link SecurityEventLog} in one
 * batch a second, off the decision path.
 *
 * The decision path pays a map look-up and an increment per denial. The map
 * is bounded: a denial whose key is new while the map is full is dropped and
 * counted (a flood of one token's denials is one key, so only a flood of
 * distinct tokens within a second reaches the bound). A flush that fails is
 * dropped and counted too, never retried into a growing backlog, and never
 * waited for by a decision.
 */
import type { AuditEvent } from "../engine/codes.js";
import type { Decision } from "../engine/types.js";
import type { SecurityEventCount, SecurityEventLog } from "../store/store-interfaces.js";

export interface SecurityEventRecorderOptions {
  readonly log: SecurityEventLog;
  /** Distinct (token, event, minute) keys held between flushes; past it new keys are dropped. Default 10,000. */
  readonly capacity?: number;
  /** How often the counts are written. Default 1,000 ms. */
  readonly flushIntervalMs?: number;
  /** Told once per failed flush (its denials are counted as dropped). */
  readonly onWriteError?: (error: unknown, denials: number) => void;
}

/** Counters for metrics and tests. */
export interface SecurityEventStats {
  /** Denials counted in memory, not yet written. */
  readonly pending: number;
  /** Denials written to the store. */
  readonly written: number;
  /** Denials dropped because the map was full. */
  readonly droppedFull: number;
  /** Denials dropped because their flush failed. */
  readonly droppedWriteFailed: number;
}

export interface SecurityEventRecorder {
  /** Counts the decision when it is a denial with a stored kind of audit event. Never blocks, never throws. */
  offer(decision: Decision, atMs: number): void;
  stats(): SecurityEventStats;
  /** Writes what is counted now. */
  flush(): Promise<void>;
  /** Writes what is counted, then stops the timer; later offers are dropped. */
  close(): Promise<void>;
}

/**
 * Audit events not stored as security events: `unavailable` is Portcullis's
 * own outage (often the store's, so recording it there is pointless).
 */
const NOT_STORED: ReadonlySet<AuditEvent> = new Set(["auth.api_token_unavailable"]);

interface Pending {
  minuteMs: number;
  event: AuditEvent;
  tokenId: string | null;
  tenant: string | null;
  count: number;
  lastAtMs: number;
}

/** Starts a recorder whose timer does not keep the process alive. */
export function createSecurityEventRecorder(options: SecurityEventRecorderOptions): SecurityEventRecorder {
  const capacity = options.capacity ?? 10_000;
  const intervalMs = options.flushIntervalMs ?? 1_000;
  let counts = new Map<string, Pending>();
  let pending = 0;
  let written = 0;
  let droppedFull = 0;
  let droppedWriteFailed = 0;
  let closed = false;
  let writing: Promise<void> = Promise.resolve();
  // why: a flood is mostly one token's denials; the last key's row is bumped without building a key string (11 ns against 210 ns of CPU per denial here)
  let last: Pending | null = null;

  const write = async (): Promise<void> => {
    if (counts.size === 0) return;
    const batch: SecurityEventCount[] = [...counts.values()];
    const denials = pending;
    counts = new Map();
    pending = 0;
    last = null;
    try {
      await options.log.record(batch);
      written += denials;
    } catch (error) {
      droppedWriteFailed += denials;
      options.onWriteError?.(error, denials);
    }
  };
  // why: flushes run one at a time, so a slow store holds at most one batch in flight plus the map
  const flush = (): Promise<void> => (writing = writing.then(write));
  const timer = setInterval(() => {
    void flush();
  }, intervalMs);
  timer.unref();

  return {
    offer(decision, atMs) {
      const event = decision.auditEvent;
      if (decision.allowed || event === null || closed || NOT_STORED.has(event)) return;
      const tokenId = decision.identity?.tokenId ?? null;
      const minuteMs = atMs - (atMs % 60_000);
      if (last !== null && last.tokenId === tokenId && last.event === event && last.minuteMs === minuteMs) {
        last.count++;
        if (atMs > last.lastAtMs) last.lastAtMs = atMs;
        pending++;
        return;
      }
      const key = `${minuteMs}\u0000${event}\u0000${tokenId ?? ""}`;
      const seen = counts.get(key);
      if (seen !== undefined) {
        seen.count++;
        if (atMs > seen.lastAtMs) seen.lastAtMs = atMs;
        last = seen;
      } else if (counts.size >= capacity) {
        droppedFull++;
        return;
      } else {
        last = { minuteMs, event, tokenId, tenant: decision.identity?.tenant ?? null, count: 1, lastAtMs: atMs };
        counts.set(key, last);
      }
      pending++;
    },
    stats: () => ({ pending, written, droppedFull, droppedWriteFailed }),
    flush,
    async close() {
      if (closed) return writing;
      closed = true;
      clearInterval(timer);
      return flush();
    },
  };
}
