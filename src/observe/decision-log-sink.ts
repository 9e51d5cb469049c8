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
  /** Writes one batch of whole lines. Never called again before the previous call settled. */
  write(lines: string): Promise<void>;
  close(): Promise<void>;
}

const writeFd = promisify(fs.write);

/**
 * Writes at most this many bytes per `write(2)` on stdout, cut at line ends:
 * the POSIX `PIPE_BUF`, below which a pipe write is atomic, so that the
 * server's own log lines (written by pino on the same descriptor) never land
 * inside a record. A single longer line goes whole.
 */
const ATOMIC_PIPE_WRITE_BYTES = 4096;

/** A sink on a file descriptor that stays open: stdout (1) for `--decision-log stdout`. */
export function createFdSink(fd: number, options: { readonly retryDelayMs?: number; readonly maxRetries?: number } = {}): DecisionLogSink {
  const retryDelayMs = options.retryDelayMs ?? 10;
  const maxRetries = options.maxRetries ?? 50;
  return {
    async write(lines) {
      const bytes = Buffer.from(lines);
      let offset = 0;
      let retries = 0;
      while (offset < bytes.length) {
        const end = chunkEnd(bytes, offset);
        try {
          offset += (await writeFd(fd, bytes, offset, end - offset, null)).bytesWritten;
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

/** Where the next write ends: at most {@link ATOMIC_PIPE_WRITE_BYTES}, after a newline, or the whole of a longer line. */
function chunkEnd(bytes: Buffer, offset: number): number {
  if (bytes.length - offset <= ATOMIC_PIPE_WRITE_BYTES) return bytes.length;
  const lastNewline = bytes.lastIndexOf(0x0a, offset + ATOMIC_PIPE_WRITE_BYTES - 1);
  if (lastNewline >= offset) return lastNewline + 1;
  const next = bytes.indexOf(0x0a, offset);
  return next === -1 ? bytes.length : next + 1;
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
    async write(lines) {
      const bytes = Buffer.from(lines);
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
