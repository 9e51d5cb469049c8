/**
 * Captures what the CLI writes while a test runs it in-process: stdout and
 * stderr are replaced for each test and restored after it, and the exit code
 * a run set does not leak into the next test.
 */
import { afterEach, beforeEach, vi } from "vitest";

export interface CliOutput {
  out: string;
  err: string;
}

/** Registers the capture for every test of the calling file; read and reset `out`/`err` on the returned object. */
export function captureCliOutput(): CliOutput {
  const io: CliOutput = { out: "", err: "" };
  beforeEach(() => {
    io.out = "";
    io.err = "";
    vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => ((io.out += String(chunk)), true));
    vi.spyOn(process.stderr, "write").mockImplementation((chunk: string | Uint8Array) => ((io.err += String(chunk)), true));
    process.exitCode = undefined;
  });
  afterEach(() => {
    vi.restoreAllMocks();
    process.exitCode = undefined;
  });
  return io;
}
