/**
 * Where decision log batches go: stdout as JSON lines, or a file rotated by
 * size. A sink takes one batch at a time (the log never overlaps writes) and
 * writes through libuv's thread pool, never on the event loop, so that a slow
 * or blocked reader holds a pool thread, not a decision.
 */
import fs from "node:fs";
import { promisify } from "node:util";

/** One writer of batches. `write` rejects when the batch could not be written; the log counts its records as dropped. */
export interface DecisionLogSink {
  /** Writes one page of whole lines. Never called again before the previous call settled; the bytes are reused after it. */
  write(lines: Buffer): Promise<void>;
  close(): Promise<void>;
}

const writeFd = promisify(fs.write);

/**
 * A sink on a file descriptor that stays open: stdout (1) for `--decision-log stdout`.
 *
 * Each page goes in one `write(2)` (continued if the kernel takes part of it):
 * one trip through the thread pool per page, not per 4 KiB. Writing at most
 * `PIPE_BUF` (4 KiB) at a time would make every write to a pipe atomic, but
 * the log drains one write per turn of the event loop, and at 4 KiB a turn a
 * saturated server dropped most of its denial records. The cost: on a pipe
 * whose reader has fallen a whole pipe buffer (64 KiB on Linux) behind, a line
 * of the server's own log or another worker's page can land inside a page;
 * `--decision-log file:PATH` has no such case.
 */
export function createFdSink(fd: number, options: { readonly retryDelayMs?: number; readonly maxRetries?: number } = {}): DecisionLogSink {
  const retryDelayMs = options.retryDelayMs ?? 10;
  const maxRetries = options.maxRetries ?? 50;
  return {
    async write(bytes) {
      let offset = 0;
      let retries = 0;
      while (offset < bytes.length) {
        try {
          offset += (await writeFd(fd, bytes, offset, bytes.length - offset, null)).bytesWritten;
          retries = 0;
        } catch (error) {
          // why: a non-blocking pipe that is full answers EAGAIN; waiting a little (bounded) lets a slow reader catch up while newer records queue or drop
          if ((error as NodeJS.ErrnoException).code !== "EAGAIN" || ++retries > maxRetries) throw error;
          await new Promise((resolve) => setTimeout(resolve, retryDelayMs));
        }
      }
    },
    async close() {},
  };
}

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
