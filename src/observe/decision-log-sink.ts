/**
 * Where decision log pages go: stdout as JSON lines, or a file rotated by
 * size. A sink takes one page at a time (the log never overlaps writes) and
 * writes off the event loop (a thread of its own for stdout, libuv's thread
 * pool for a file), so that a slow or blocked reader holds a thread, not a
 * decision.
 */
import fs from "node:fs";
import { Worker } from "node:worker_threads";

/** One writer of batches. `write` rejects when the batch could not be written; the log counts its records as dropped. */
export interface DecisionLogSink {
  /** Writes one page of whole lines. Never called again before the previous call settled; the bytes are reused after it. */
  write(lines: Buffer): Promise<void>;
  close(): Promise<void>;
}

/**
 * A sink on a file descriptor that stays open: stdout (1) for `--decision-log stdout`.
 *
 * Pages are written by a thread of their own; on a pipe or a socket in
 * writes of at most `PIPE_BUF` (4 KiB) cut at line ends: below that size a
 * write to a pipe is atomic, so that a record never lands inside a line of another writer of
 * the same stdout (the server's own log, or another `--workers` process),
 * however far behind the reader is. On the event loop, a 4 KiB write a turn
 * could not keep up with a saturated server (it dropped most records); one
 * 64 KiB write a page split lines once the pipe filled. The thread blocks on
 * a full pipe instead of the event loop, and the log drops what its queue
 * cannot hold meanwhile.
 */
export function createFdSink(fd: number, options: { readonly retryDelayMs?: number; readonly maxRetries?: number } = {}): DecisionLogSink {
  const workerData = { fd, retryDelayMs: options.retryDelayMs ?? 10, maxRetries: options.maxRetries ?? 50, atomicBytes: ATOMIC_PIPE_WRITE_BYTES };
  let writer: Worker | null = null;
  let pending: { resolve: () => void; reject: (error: Error) => void } | null = null;
  const settle = (error: Error | null): void => {
    const waiting = pending;
    pending = null;
    // why: an idle writer must not keep a process alive that has nothing else to do; a busy one must, until its page is out
    writer?.unref();
    if (error === null) waiting?.resolve();
    else waiting?.reject(error);
  };
  const start = (): Worker => {
    const started = new Worker(FD_WRITER_SOURCE, { eval: true, workerData });
    started.on("message", (message: string | null) => settle(message === null ? null : new Error(message)));
    started.on("error", (error) => settle(error));
    started.on("exit", () => {
      writer = null;
      settle(new Error("the decision log's writer thread stopped"));
    });
    return started;
  };
  return {
    write(bytes) {
      writer ??= start();
      const thread = writer;
      thread.ref();
      return new Promise<void>((resolve, reject) => {
        pending = { resolve, reject };
        // Copied, not transferred: the log reuses its pages.
        thread.postMessage(bytes);
      });
    },
    async close() {
      const thread = writer;
      writer = null;
      await thread?.terminate();
    },
  };
}

/** `PIPE_BUF` on Linux: a write to a pipe of at most this many bytes is never split by another writer's. */
const ATOMIC_PIPE_WRITE_BYTES = 4096;

/**
 * The writer thread of {@link createFdSink}: each message is a page, written
 * whole: on a pipe or socket in chunks of at most `atomicBytes` cut at line
 * ends (a longer line goes alone), elsewhere in one write, answered with `null` or an error message. A full non-blocking
 * pipe (EAGAIN) is waited for a little, a bounded number of times. Plain
 * CommonJS evaluated in the thread, so it runs the same from the compiled
 * build and from the sources under test.
 */
const FD_WRITER_SOURCE = `
const fs = require("node:fs");
const { parentPort, workerData } = require("node:worker_threads");
const { fd, retryDelayMs, maxRetries } = workerData;
// A pipe or socket is shared with other writers; a file or device takes each write whole anyway.
const stat = fs.fstatSync(fd);
const atomicBytes = stat.isFIFO() || stat.isSocket() ? workerData.atomicBytes : Infinity;
const pause = new Int32Array(new SharedArrayBuffer(4));
function chunkEnd(bytes, offset) {
  if (bytes.length - offset <= atomicBytes) return bytes.length;
  const lastNewline = bytes.lastIndexOf(0x0a, offset + atomicBytes - 1);
  if (lastNewline >= offset) return lastNewline + 1;
  const next = bytes.indexOf(0x0a, offset);
  return next === -1 ? bytes.length : next + 1;
}
parentPort.on("message", (bytes) => {
  try {
    let offset = 0;
    let retries = 0;
    while (offset < bytes.length) {
      try {
        offset += fs.writeSync(fd, bytes, offset, chunkEnd(bytes, offset) - offset);
        retries = 0;
      } catch (error) {
        if (error.code !== "EAGAIN" || ++retries > maxRetries) throw error;
        Atomics.wait(pause, 0, 0, retryDelayMs);
      }
    }
    parentPort.postMessage(null);
  } catch (error) {
    parentPort.postMessage(String(error && error.message ? error.message : error));
  }
});
`;

/** How a file sink rotates. */
export interface FileSinkOptions {
  /** Size past which the file is rotated before the next batch. Default 100 MiB. */
  readonly maxFileBytes?: number;
  /** Rotated files kept (`PATH.1` newest … `PATH.N` oldest); older ones are deleted. Default 5. */
  readonly maxFiles?: number;
}

/** Default of {@link FileSinkOptions.maxFileBytes}. */
export const DEFAULT_MAX_FILE_BYTES = 100 * 1024 * 1024;
/** Default of {@link FileSinkOptions.maxFiles}. */
export const DEFAULT_MAX_FILES = 5;

/**
 * A sink appending to `path`, rotated by size: when a batch would take the
 * file past `maxFileBytes`, `PATH.N-1` becomes `PATH.N` … `PATH` becomes
 * `PATH.1`, and a new `PATH` is started. A file that cannot be opened or
 * written fails the batch (counted as dropped) and is opened again for the next.
 */
export function createFileSink(path: string, options: FileSinkOptions = {}): DecisionLogSink {
  const maxFileBytes = options.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES;
  const maxFiles = Math.max(0, options.maxFiles ?? DEFAULT_MAX_FILES);
  let handle: fs.promises.FileHandle | null = null;
  let size = 0;

  const open = async (): Promise<fs.promises.FileHandle> => {
    if (handle !== null) return handle;
    const opened = await fs.promises.open(path, "a", 0o640);
    try {
      size = (await opened.stat()).size;
    } catch (error) {
      await opened.close();
      throw error;
    }
    handle = opened;
    return opened;
  };
  const closeHandle = async (): Promise<void> => {
    const open = handle;
    handle = null;
    await open?.close();
  };
  const rotate = async (): Promise<void> => {
    await closeHandle();
    if (maxFiles === 0) {
      await fs.promises.rm(path, { force: true });
      return;
    }
    await fs.promises.rm(`${path}.${maxFiles}`, { force: true });
    for (let n = maxFiles - 1; n >= 1; n--) await renameIfPresent(`${path}.${n}`, `${path}.${n + 1}`);
    await renameIfPresent(path, `${path}.1`);
  };

  return {
    async write(bytes) {
      try {
        await open();
        if (size > 0 && size + bytes.length > maxFileBytes) await rotate();
        const file = await open();
        let offset = 0;
        while (offset < bytes.length) offset += (await file.write(bytes, offset, bytes.length - offset)).bytesWritten;
        size += bytes.length;
      } catch (error) {
        // why: a deleted folder or a full disk may come back; the next batch opens the file again
        await closeHandle().catch(() => undefined);
        throw error;
      }
    },
    close: closeHandle,
  };
}

async function renameIfPresent(from: string, to: string): Promise<void> {
  try {
    await fs.promises.rename(from, to);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
}
