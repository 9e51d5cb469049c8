/**
 * `npm run bench`: runs the in-process, loopback and mix benchmarks, prints
 * one table and writes the same as JSON to `bench/results/<timestamp>.json`.
 *
 * Flags: `--quick` (one short run each, for a smoke check), `--only
 * in-process|loopback|paths|mix` (repeatable), `--profile` (run the loopback server
 * under `node --cpu-prof` and print its top self-time functions).
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { REPO_ROOT } from "./fixtures.js";
import { runInProcess } from "./in-process.js";
import { runLoopback } from "./loopback.js";
import { killAll, missingTools } from "./processes.js";
import { renderTable, writeResults, type Row } from "./report.js";

const SECTIONS = ["in-process", "loopback", "paths", "mix"] as const;
type Section = (typeof SECTIONS)[number];

function parseArgs(argv: readonly string[]): { quick: boolean; only: Set<Section>; profile: boolean } {
  const only = new Set<Section>();
  let quick = false;
  let profile = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--quick") quick = true;
    else if (arg === "--profile") profile = true;
    else if (arg === "--only" || arg.startsWith("--only=")) {
      const value = arg === "--only" ? argv[++i] : arg.slice("--only=".length);
      for (const part of (value ?? "").split(",")) {
        if (!(SECTIONS as readonly string[]).includes(part)) throw new Error(`--only takes ${SECTIONS.join(", ")}; got \`${part}\``);
        only.add(part as Section);
      }
    } else throw new Error(`unknown argument \`${arg}\`: expected --quick, --only in-process|loopback|paths|mix, --profile`);
  }
  return { quick, only: only.size === 0 ? new Set(SECTIONS) : only, profile };
}

function machine(): Record<string, unknown> {
  const cpuinfo = readFileSync("/proc/cpuinfo", "utf8");
  const git = (args: string[]) => {
    try {
      return execFileSync("git", args, { cwd: REPO_ROOT, encoding: "utf8" }).trim();
    } catch {
      return "unknown";
    }
  };
  return {
    nproc: os.availableParallelism(),
    cpu: /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? "unknown",
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    kernel: os.release(),
    commit: git(["rev-parse", "--short", "HEAD"]),
    dirty: git(["status", "--porcelain"]) !== "",
  };
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const started = Date.now();
  const rows: Row[] = [];
  let exitCode = 0;

  if (args.only.has("in-process")) rows.push(...(await runInProcess({ quick: args.quick, log })));
  if (args.only.has("loopback") || args.only.has("mix") || args.only.has("paths")) {
    const missing = missingTools();
    if (missing !== null) {
      log(`loopback and mix skipped: ${missing}`);
      rows.push({ section: "loopback", name: "loopback and mix", status: "skipped", note: missing, figures: [] });
      exitCode = 1;
    } else {
      rows.push(
        ...(await runLoopback({
          quick: args.quick,
          loopback: args.only.has("loopback"),
          mix: args.only.has("mix"),
          paths: args.only.has("paths"),
          log,
          // Outside the repository: profiles are large and not results to keep.
          ...(args.profile ? { profileDir: path.join(os.tmpdir(), "portcullis-bench-profiles") } : {}),
        })),
      );
    }
  }

  const table = renderTable(rows);
  process.stdout.write(`${table}\n`);
  const meta = { startedAt: new Date(started).toISOString(), seconds: Math.round((Date.now() - started) / 1000), args: process.argv.slice(2), machine: machine() };
  const file = writeResults(path.join(REPO_ROOT, "bench", "results"), meta, rows);
  log(`\n${meta.seconds} s; written to ${path.relative(process.cwd(), file)}`);
  if (rows.some((row) => row.status === "error")) exitCode = 1;
  return exitCode;
}

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    killAll();
    process.exit(130);
  });
}

try {
  process.exitCode = await main();
} catch (error) {
  process.stderr.write(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
} finally {
  killAll();
}
