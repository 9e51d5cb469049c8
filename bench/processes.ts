/**
 * Child processes of the bench: pinned to a core with `taskset`, started in
 * their own process group, and always killed (group and all) at the end.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";

/** The core servers run on, and the core load generators run on. */
export const SERVER_CORE = 0;
export const LOAD_CORE = 1;

const started = new Set<ChildProcess>();

/** Whether `command` is on the PATH. */
export function hasCommand(command: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${command}`], { stdio: "ignore" }).status === 0;
}

/** The load tools the loopback rows need, with how to install the missing ones; `null` when all are there. */
export function missingTools(): string | null {
  const missing = [
    ["h2load", "nghttp2-client"],
    ["wrk", "wrk"],
    ["taskset", "util-linux"],
    ["chrt", "util-linux"],
    ["cc", "gcc"],
  ].filter(([command]) => !hasCommand(command!));
  if (missing.length === 0) return null;
  return `missing ${missing.map(([c]) => c).join(", ")}: install with \`apt-get install -y ${missing.map(([, p]) => p).join(" ")}\``;
}

/** Characters of a server's output kept for its ready line and error reports. */
const OUTPUT_KEPT_CHARS = 64 * 1024;

/** A server child: its pid (that of the pinned node process, since taskset execs) and output so far. */
export interface ServerProcess {
  readonly pid: number;
  readonly child: ChildProcess;
  output(): string;
}

/**
 * Starts `node args…` pinned to `core` in a new process group and waits until
 * `ready` matches its stdout (at most `timeoutMs`).
 */
export async function startPinned(
  args: readonly string[],
  options: { core: number; env?: NodeJS.ProcessEnv; ready: RegExp; timeoutMs?: number; nodeFlags?: readonly string[] },
): Promise<ServerProcess & { match: RegExpExecArray }> {
  const child = spawn("taskset", ["-c", String(options.core), process.execPath, ...(options.nodeFlags ?? []), ...args], {
    env: options.env ?? process.env,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  started.add(child);
  child.on("exit", () => started.delete(child));
  let out = "";
  // why: a server's decision log writes megabytes a second to stdout under load; only the start and the tail are ever read
  const keep = (chunk: Buffer): void => {
    out += chunk.toString();
    if (out.length > 2 * OUTPUT_KEPT_CHARS) out = out.slice(-OUTPUT_KEPT_CHARS);
  };
  child.stdout!.on("data", keep);
  child.stderr!.on("data", keep);
  const deadline = Date.now() + (options.timeoutMs ?? 20_000);
  while (Date.now() < deadline) {
    const match = options.ready.exec(out);
    if (match !== null) return { pid: child.pid!, child, output: () => out, match };
    if (child.exitCode !== null) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  killGroup(child);
  throw new Error(`${args.join(" ")} did not become ready: ${out.slice(-2000)}`);
}

/** Runs a command to completion (bounded by `timeoutMs`) pinned to `core`; resolves to its stdout and stderr. */
export function runPinned(command: string, args: readonly string[], core: number, timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn("taskset", ["-c", String(core), command, ...args], { detached: true, stdio: ["ignore", "pipe", "pipe"] });
    started.add(child);
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => killGroup(child), timeoutMs);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      started.delete(child);
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * Keeps every core out of idle while `run` runs: one busy loop per core at
 * SCHED_IDLE, which the kernel runs only when nothing else on that core wants
 * to. On this machine's hypervisor a halted vCPU takes about 0.3 ms (median)
 * and up to tens of ms to be run again when a packet wakes it (BENCHMARKS.md,
 * "Latency at a fixed rate"); a server under steady traffic, or a host booted
 * with `idle=poll`, does not pay that.
 */
export async function withCoresBusy<T>(cores: readonly number[], run: () => Promise<T>): Promise<T> {
  const spinners = cores.map((core) => {
    // Detached, the spinner is a session and so, with autogroup scheduling, a CPU group of its own that
    // the kernel would share the core with as an equal, whatever its policy: nice 19 for the group too.
    const spin = 'try { require("node:fs").writeFileSync("/proc/self/autogroup", "19"); } catch {} for (;;);';
    const child = spawn("taskset", ["-c", String(core), "chrt", "-i", "0", process.execPath, "-e", spin], { detached: true, stdio: "ignore" });
    started.add(child);
    child.on("exit", () => started.delete(child));
    return child;
  });
  try {
    await new Promise((resolve) => setTimeout(resolve, 200));
    for (const child of spinners) if (child.exitCode !== null) throw new Error(`the SCHED_IDLE spinner exited (${child.exitCode}); is chrt allowed here?`);
    return await run();
  } finally {
    for (const child of spinners) await stopGroup(child, 500);
  }
}

/** Sends SIGTERM, then SIGKILL after `graceMs`, to the child's whole process group. */
export async function stopGroup(child: ChildProcess, graceMs = 2_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  signalGroup(child, "SIGTERM");
  const timer = setTimeout(() => signalGroup(child, "SIGKILL"), graceMs);
  await exited;
  clearTimeout(timer);
}

function killGroup(child: ChildProcess): void {
  signalGroup(child, "SIGKILL");
}

function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // Already gone.
  }
}

/** Kills every child this module started that is still running; for `finally` blocks and signal handlers. */
export function killAll(): void {
  for (const child of started) killGroup(child);
  started.clear();
}
