/**
 * Retention of stored security events: rows of minutes older than the
 * retention are deleted on a timer, off the decision path, in bounded batches
 * so that a large backlog (a first run after a long flood) never holds the
 * table's locks for long. Every replica of a fleet may run it: each batch
 * deletes rows once, whoever runs it.
 */
import type { SecurityEventLog } from "../store/store-interfaces.js";

/** Default retention of `serve --security-event-retention`: 30 days. */
export const DEFAULT_SECURITY_EVENT_RETENTION_MS = 30 * 86_400_000;

export interface SecurityEventPrunerOptions {
  readonly log: SecurityEventLog;
  /** Rows of minutes that started longer ago than this are deleted. */
  readonly retentionMs: number;
  /** Milliseconds since the epoch; read once per run. */
  readonly now: () => number;
  /** Time between runs. Default 10 minutes; the first run starts after `firstRunDelayMs`. */
  readonly intervalMs?: number;
  /** Delay of the first run after start. Default 30 s, so that a start is not slowed by it. */
  readonly firstRunDelayMs?: number;
  /** Rows deleted per statement. Default 1,000. */
  readonly batchRows?: number;
  /** Statements per run at most; a backlog beyond it is left to the next run. Default 100. */
  readonly maxBatchesPerRun?: number;
  /** Told once per failed run; the next run tries again. */
  readonly onError?: (error: unknown) => void;
}

/** Counters for metrics and tests. */
export interface SecurityEventPrunerStats {
  /** Rows deleted since start. */
  readonly pruned: number;
  /** Runs that failed. */
  readonly failedRuns: number;
}

export interface SecurityEventPruner {
  /** Deletes the rows past the retention now (at most one run's batches); resolves to the rows deleted. Runs never overlap. */
  runOnce(): Promise<number>;
  stats(): SecurityEventPrunerStats;
  /** Stops the timer and waits for a run in progress. */
  close(): Promise<void>;
}

/**
 * Starts a pruner whose timer does not keep the process alive.
 *
 * @example
 * ```ts
 * const pruner = startSecurityEventPruner({ log: store.securityEvents, retentionMs: DEFAULT_SECURITY_EVENT_RETENTION_MS, now: Date.now });
 * await pruner.close();
 * ```
 */
export function startSecurityEventPruner(options: SecurityEventPrunerOptions): SecurityEventPruner {
  const batchRows = options.batchRows ?? 1_000;
  const maxBatches = options.maxBatchesPerRun ?? 100;
  let pruned = 0;
  let failedRuns = 0;
  let closed = false;
  let running: Promise<number> = Promise.resolve(0);

  const run = async (): Promise<number> => {
    const beforeMs = options.now() - options.retentionMs;
    let deleted = 0;
    try {
      for (let batch = 0; batch < maxBatches && !closed; batch++) {
        const rows = await options.log.prune(beforeMs, batchRows);
        deleted += rows;
        pruned += rows;
        if (rows < batchRows) break;
        // why: between batches other work (SQLite writes share the event loop and the write queue) gets its turn
        await new Promise((resolve) => setImmediate(resolve));
      }
    } catch (error) {
      failedRuns++;
      options.onError?.(error);
    }
    return deleted;
  };
  const runOnce = (): Promise<number> => (running = running.then(run));

  let timer: NodeJS.Timeout | undefined;
  const schedule = (delayMs: number): void => {
    if (closed) return;
    timer = setTimeout(() => {
      void runOnce().then(() => schedule(options.intervalMs ?? 600_000));
    }, delayMs);
    timer.unref();
  };
  schedule(options.firstRunDelayMs ?? 30_000);

  return {
    runOnce,
    stats: () => ({ pruned, failedRuns }),
    async close() {
      closed = true;
      clearTimeout(timer);
      await running;
    },
  };
}
