/**
 * The decision log: one JSON record per decision the mode selects, written in
 * batches off the decision path. The decision path only queues a reference
 * (see {@link DecisionLogEntry}); records are formatted and written later, a
 * bounded slice at a time, so that a burst never holds the event loop for long.
 *
 * The queue is bounded: when the sink is slow or failing and the queue is
 * full, new records are dropped and counted, never waited for. Decisions do
 * not slow down because of the log; the drop counters say what was lost.
 */
import { formatDecisionRecord, type DecisionLogEntry } from "./decision-record.js";
import type { DecisionLogSink } from "./decision-log-sink.js";

/** Which decisions get a record. */
export type DecisionLogMode =
  /** Every decision. */
  | "all"
  /** Denials only. */
  | "denials"
  /** Every denial, and allows with probability `sampleRate`. */
  | "sampled";

export interface DecisionLogOptions {
  readonly mode: DecisionLogMode;
  /** Share of allows recorded in `sampled` mode, from 0 to 1. Default 0.01. */
  readonly sampleRate?: number;
  readonly sink: DecisionLogSink;
  /** Records the queue holds at most; past it new records are dropped. Default 10,000. */
  readonly capacity?: number;
  /** Records formatted and written per batch. Default 256 (about 100 µs of formatting). */
  readonly batchRecords?: number;
  /** How long the first record of a batch waits for others. Default 100 ms. */
  readonly flushDelayMs?: number;
  /** Uniform random numbers in [0, 1) for sampling; tests pin it. Default `Math.random`. */
  readonly random?: () => number;
  /** Told once per failed batch (its records are counted as dropped); the log keeps going. */
  readonly onWriteError?: (error: unknown, records: number) => void;
}

/** Counters for metrics, read on scrape. */
export interface DecisionLogStats {
  /** Records waiting to be written (queued, or in the batch being written). */
  readonly queued: number;
  readonly written: number;
  /** Records dropped because the queue was full. */
  readonly droppedQueueFull: number;
  /** Records dropped because their batch could not be written. */
  readonly droppedWriteFailed: number;
}

export interface DecisionLog {
  /** Whether a decision with this outcome gets a record; cheap, so callers build an entry only when it does. */
  wants(allowed: boolean): boolean;
  /** Queues a record, or counts it as dropped when the queue is full. Never blocks, never throws. */
  offer(entry: DecisionLogEntry): void;
  stats(): DecisionLogStats;
  /** Writes everything queued now; resolves when the queue was empty once. */
  flush(): Promise<void>;
  /** Writes what is queued, then closes the sink; later offers are dropped. */
  close(): Promise<void>;
}

export const DEFAULT_CAPACITY = 10_000;
export const DEFAULT_SAMPLE_RATE = 0.01;

/** Creates a decision log writing to `options.sink`. */
export function createDecisionLog(options: DecisionLogOptions): DecisionLog {
  const { mode, sink } = options;
  const sampleRate = options.sampleRate ?? DEFAULT_SAMPLE_RATE;
  const capacity = options.capacity ?? DEFAULT_CAPACITY;
  const batchRecords = options.batchRecords ?? 256;
  const flushDelayMs = options.flushDelayMs ?? 100;
  const random = options.random ?? Math.random;
  let queue: DecisionLogEntry[] = [];
  let inBatch = 0;
  let written = 0;
  let droppedQueueFull = 0;
  let droppedWriteFailed = 0;
  let timer: NodeJS.Timeout | null = null;
  let draining: Promise<void> | null = null;
  let closed = false;

  const schedule = (): void => {
    if (timer !== null || draining !== null) return;
    timer = setTimeout(startDraining, flushDelayMs);
    // why: a pending batch must not keep a process alive that has nothing else to do
    timer.unref();
  };
  const startDraining = (): Promise<void> => {
    if (timer !== null) clearTimeout(timer);
    timer = null;
    draining ??= drain().finally(() => {
      draining = null;
      if (queue.length > 0 && !closed) schedule();
    });
    return draining;
  };
  // One batch at a time: format a slice, write it, yield, repeat while records wait.
  const drain = async (): Promise<void> => {
    while (queue.length > 0) {
      const batch = queue.length <= batchRecords ? queue : queue.slice(0, batchRecords);
      queue = batch === queue ? [] : queue.slice(batchRecords);
      inBatch = batch.length;
      let lines = "";
      let formatted = 0;
      for (const entry of batch) {
        try {
          lines += formatDecisionRecord(entry);
          formatted++;
        } catch (error) {
          // why: one record that cannot be formatted must not stop the log (nor reject a timer's promise)
          droppedWriteFailed++;
          options.onWriteError?.(error, 1);
        }
      }
      try {
        if (formatted > 0) await sink.write(lines);
        written += formatted;
      } catch (error) {
        droppedWriteFailed += formatted;
        options.onWriteError?.(error, formatted);
      } finally {
        inBatch = 0;
      }
    }
  };

  return {
    wants(allowed) {
      if (!allowed) return true;
      return mode === "all" || (mode === "sampled" && random() < sampleRate);
    },
    offer(entry) {
      if (closed || queue.length + inBatch >= capacity) {
        droppedQueueFull++;
        return;
      }
      queue.push(entry);
      if (queue.length >= batchRecords && draining === null) void startDraining();
      else schedule();
    },
    stats: () => ({ queued: queue.length + inBatch, written, droppedQueueFull, droppedWriteFailed }),
    async flush() {
      while (queue.length > 0 || draining !== null) await startDraining();
    },
    async close() {
      closed = true;
      while (queue.length > 0 || draining !== null) await startDraining();
      await sink.close();
    },
  };
}
