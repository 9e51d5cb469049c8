/**
 * The decision log: one JSON record per decision the mode selects, written in
 * pages off the decision path.
 *
 * A record is formatted when it is offered and copied at once into a page of
 * bytes outside V8's heap; the sink is handed whole pages. Nothing of the
 * request or the answer is kept after the decision returns, so that a queue of
 * thousands of records costs memory but no garbage collection (queueing the
 * decisions themselves and formatting them later kept every request's objects
 * alive until its batch was written, long enough to be promoted to V8's old
 * generation).
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
  /** Bytes of a page, the most the sink is handed at once (a longer record goes alone). Default 64 KiB. */
  readonly pageBytes?: number;
  /** How long the first record of a page waits for others before the page is written. Default 100 ms. */
  readonly flushDelayMs?: number;
  /** Uniform random numbers in [0, 1) for sampling; tests pin it. Default `Math.random`. */
  readonly random?: () => number;
  /** Told once per failed page (its records are counted as dropped), and once per record that could not be formatted; the log keeps going. */
  readonly onWriteError?: (error: unknown, records: number) => void;
}

/** Counters for metrics, read on scrape. */
export interface DecisionLogStats {
  /** Records waiting to be written (queued, or in the page being written). */
  readonly queued: number;
  readonly written: number;
  /** Records dropped because the queue was full. */
  readonly droppedQueueFull: number;
  /** Records dropped because they could not be formatted or their page could not be written. */
  readonly droppedWriteFailed: number;
}

export interface DecisionLog {
  /** Whether a decision with this outcome gets a record; cheap, so callers build an entry only when it does. */
  wants(allowed: boolean): boolean;
  /** Formats and queues a record, or counts it as dropped when the queue is full. Never blocks, never throws. */
  offer(entry: DecisionLogEntry): void;
  stats(): DecisionLogStats;
  /** Writes everything queued now; resolves when the queue was empty once. */
  flush(): Promise<void>;
  /** Writes what is queued, then closes the sink; later offers are dropped. */
  close(): Promise<void>;
}

export const DEFAULT_CAPACITY = 10_000;
export const DEFAULT_SAMPLE_RATE = 0.01;
export const DEFAULT_PAGE_BYTES = 64 * 1024;

/** Whole records in bytes, waiting to be written. */
interface Page {
  readonly bytes: Buffer;
  used: number;
  records: number;
}

/** The most bytes one UTF-16 code unit takes in UTF-8: a record of `n` code units fits in `3n` bytes. */
const MAX_UTF8_BYTES_PER_UNIT = 3;
/** Empty pages kept for reuse; more are left to the garbage collector. */
const SPARE_PAGES = 4;

/** Creates a decision log writing to `options.sink`. */
export function createDecisionLog(options: DecisionLogOptions): DecisionLog {
  const { mode, sink } = options;
  const sampleRate = options.sampleRate ?? DEFAULT_SAMPLE_RATE;
  const capacity = options.capacity ?? DEFAULT_CAPACITY;
  const pageBytes = options.pageBytes ?? DEFAULT_PAGE_BYTES;
  const flushDelayMs = options.flushDelayMs ?? 100;
  const random = options.random ?? Math.random;
  // Full pages in write order; the last one is still being filled.
  const pages: Page[] = [];
  const spare: Buffer[] = [];
  let queued = 0;
  let written = 0;
  let droppedQueueFull = 0;
  let droppedWriteFailed = 0;
  let timer: NodeJS.Timeout | null = null;
  let draining: Promise<void> | null = null;
  let closed = false;

  // why: outside the heap (allocUnsafeSlow), so that queued bytes are never scanned or moved by the collector
  const newPage = (size: number): Page => ({ bytes: size === pageBytes && spare.length > 0 ? spare.pop()! : Buffer.allocUnsafeSlow(size), used: 0, records: 0 });
  const append = (line: string): void => {
    const room = line.length * MAX_UTF8_BYTES_PER_UNIT;
    let page = pages[pages.length - 1];
    if (page === undefined || page.used + room > page.bytes.length) {
      // A record too long for a page gets a page of its own size, written alone.
      page = newPage(room > pageBytes ? room : pageBytes);
      pages.push(page);
    }
    page.used += page.bytes.write(line, page.used);
    page.records++;
    queued++;
  };

  // A full page is written at once; the page being filled waits for the flush delay, so that a steady trickle of
  // denials is written a page at a time rather than a write per record.
  const schedule = (): void => {
    if (timer !== null || draining !== null) return;
    timer = setTimeout(() => void startDraining(true), flushDelayMs);
    // why: a pending page must not keep a process alive that has nothing else to do
    timer.unref();
  };
  /** Starts writing the full pages (and the one being filled, with `sealFilling`) unless a drain runs; resolves when it ends. */
  const startDraining = (sealFilling: boolean): Promise<void> => {
    if (timer !== null) clearTimeout(timer);
    timer = null;
    const filling = pages[pages.length - 1];
    if (sealFilling && filling !== undefined && filling.records > 0) pages.push(newPage(pageBytes));
    draining ??= drain().finally(() => {
      draining = null;
      if (queued > 0 && !closed) schedule();
    });
    return draining;
  };
  // The pages before the last are full (or sealed): written oldest first, one at a time, while records fill the last.
  const drain = async (): Promise<void> => {
    while (pages.length > 1) {
      const page = pages[0]!;
      try {
        await sink.write(page.bytes.subarray(0, page.used));
        written += page.records;
      } catch (error) {
        droppedWriteFailed += page.records;
        options.onWriteError?.(error, page.records);
      } finally {
        queued -= page.records;
        pages.shift();
        if (page.bytes.length === pageBytes && spare.length < SPARE_PAGES) spare.push(page.bytes);
      }
    }
  };

  return {
    wants(allowed) {
      if (!allowed) return true;
      return mode === "all" || (mode === "sampled" && random() < sampleRate);
    },
    offer(entry) {
      if (closed || queued >= capacity) {
        droppedQueueFull++;
        return;
      }
      let line: string;
      try {
        line = formatDecisionRecord(entry);
      } catch (error) {
        // why: one record that cannot be formatted must not fail the decision it records
        droppedWriteFailed++;
        options.onWriteError?.(error, 1);
        return;
      }
      append(line);
      if (pages.length === 1) schedule();
      else if (draining === null) void startDraining(false);
    },
    stats: () => ({ queued, written, droppedQueueFull, droppedWriteFailed }),
    async flush() {
      while (queued > 0 || draining !== null) await startDraining(true);
    },
    async close() {
      closed = true;
      while (queued > 0 || draining !== null) await startDraining(true);
      await sink.close();
    },
  };
}
