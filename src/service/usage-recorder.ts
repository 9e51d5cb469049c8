/**
 * Last-used stamps, batched off the decision path. A decision only touches an
 * in-memory map (O(1)); the map is written to the store in one transaction per
 * flush, so a burst of 10,000 decisions costs a handful of writes, not 10,000.
 */
import type { TokenUse } from "../store/store-interfaces.js";

/** Where batches go: {@link TokenStore.recordUse} in production, a counting fake in tests. */
export interface UsageSink {
  /** Applies one batch, keyed by token id, in one transaction; a store over the network answers later. */
  recordUse(batch: ReadonlyMap<string, TokenUse>): void | Promise<void>;
}

/** Collects use stamps and writes them in batches. */
export interface UsageRecorder {
  /** Notes one use of `tokenId` at `nowMs`. Never does I/O and never throws. */
  record(tokenId: string, nowMs: number): void;
  /**
   * Writes what is pending now, in one transaction; a no-op when nothing is.
   * Resolves once the batch is written or has failed (never rejects).
   */
  flush(): Promise<void>;
  /** Flushes and stops the timer; later stamps are still collected and written by the next explicit flush. Resolves like {@link flush}. */
  close(): Promise<void>;
  /** Distinct token ids waiting for the next flush. */
  readonly pending: number;
}

/** Options of {@link createUsageRecorder}. */
export interface UsageRecorderOptions {
  /** Longest a stamp waits before it is written, ms; default 1,000. */
  readonly flushIntervalMs?: number;
  /**
   * Distinct token ids that trigger an early flush; default 1,000. The flush
   * runs on the next turn of the event loop (`setImmediate`), never inside the
   * decision that reached the mark.
   */
  readonly maxPending?: number;
  /**
   * Told when a batch could not be written. The batch is merged back and retried
   * with the next flush, so a busy store loses no stamps; beyond `maxRetained`
   * ids the oldest batch is dropped instead, so a dead store cannot grow memory.
   */
  readonly onError?: (error: unknown) => void;
  /** Distinct token ids kept across failed flushes; default 100,000. */
  readonly maxRetained?: number;
}

/**
 * Creates a recorder writing to `sink`.
 *
 * @example
 * ```ts
 * const usage = createUsageRecorder(store, { onError: (err) => log.warn({ err }, "last-used stamps not written") });
 * usage.record(decision.identity.tokenId, nowMs); // on the decision path: a map update
 * usage.close(); // at shutdown, before store.close()
 * ```
 */
export function createUsageRecorder(sink: UsageSink, options: UsageRecorderOptions = {}): UsageRecorder {
  const flushIntervalMs = options.flushIntervalMs ?? 1_000;
  const maxPending = options.maxPending ?? 1_000;
  const maxRetained = options.maxRetained ?? 100_000;
  let pending = new Map<string, { lastUsedAtMs: number; count: number }>();
  let timer: NodeJS.Timeout | undefined;
  let immediate: NodeJS.Immediate | undefined;
  let closed = false;

  const flush = (): Promise<void> => {
    if (timer !== undefined) clearTimeout(timer);
    if (immediate !== undefined) clearImmediate(immediate);
    timer = undefined;
    immediate = undefined;
    if (pending.size === 0) return Promise.resolve();
    const batch = pending;
    pending = new Map();
    const failed = (error: unknown): void => {
      options.onError?.(error);
      if (batch.size + pending.size <= maxRetained) {
        // Stamps that arrived meanwhile are newer; merge the failed batch under them.
        for (const [id, use] of batch) {
          const newer = pending.get(id);
          if (newer === undefined) pending.set(id, use);
          else pending.set(id, { lastUsedAtMs: Math.max(newer.lastUsedAtMs, use.lastUsedAtMs), count: newer.count + use.count });
        }
        arm();
      }
    };
    try {
      const written = sink.recordUse(batch);
      if (written instanceof Promise) return written.catch(failed);
    } catch (error) {
      failed(error);
    }
    return Promise.resolve();
  };

  const arm = (): void => {
    if (closed || timer !== undefined) return;
    timer = setTimeout(flush, flushIntervalMs);
    // A pending stamp must not keep the process alive; close() writes it.
    timer.unref();
  };

  return {
    record(tokenId, nowMs) {
      const use = pending.get(tokenId);
      if (use !== undefined) {
        use.count += 1;
        if (nowMs > use.lastUsedAtMs) use.lastUsedAtMs = nowMs;
        return;
      }
      pending.set(tokenId, { lastUsedAtMs: nowMs, count: 1 });
      arm();
      if (pending.size >= maxPending && immediate === undefined && !closed) {
        immediate = setImmediate(flush);
        immediate.unref();
      }
    },
    flush,
    close() {
      closed = true;
      return flush();
    },
    get pending() {
      return pending.size;
    },
  };
}
