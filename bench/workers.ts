/**
 * `node dist/bench/workers.js [--runs N] [--seconds S]`: decisions per second
 * of `portcullis serve --workers 1` against `--workers 2` on this machine,
 * interleaved run by run (1, 2, 1, 2, …) so that both see the same minutes.
 *
 * Two loads at saturation, each from one load generator process pinned to the
 * second core (so on a 2-core machine it takes CPU the second worker would
 * want; the server processes are not pinned): Envoy `Check` over gRPC (h2load,
 * 4 connections × 16 streams, bodies encoded from Envoy's own protos) and the
 * HTTP ext_authz endpoint Envoy's HTTP mode and nginx call (wrk, 32 keep-alive
 * connections). Reported per row: decisions/s, p50 and p99, server CPU per
 * decision summed over every server process (primary included), and how busy
 * the whole machine was. Prints medians and each run's figures.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import net, { type AddressInfo } from "node:net";
import path from "node:path";
import * as grpc from "@grpc/grpc-js";
import { frame } from "../src/transport/grpc-server.js";
import { CHECK_PATH, loadCheckCodec, type CheckFields } from "./envoy-check.js";
import { BENCH_SECRET_HEX, BUNDLED_POLICY_DIR, REPO_ROOT, SERVER_NODE_FLAGS, fillStore, tempDir } from "./fixtures.js";
import { runH2load, runWrk, type LoadResult } from "./load.js";
import { cpuMicros } from "./proc-cpu.js";
import { killAll, missingTools } from "./processes.js";
import { median } from "./stats.js";

const args = process.argv.slice(2);
const flag = (name: string, fallback: number) => {
  const at = args.indexOf(name);
  return at === -1 ? fallback : Number(args[at + 1]);
};
const RUNS = flag("--runs", 3);
const SECONDS = flag("--seconds", 8);
const WARMUP_SECONDS = 2;

interface Sample {
  readonly workers: number;
  readonly load: string;
  readonly rps: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly serverCpuUsPerRequest: number;
  /** Share of both cores busy during the run (all processes), from /proc/stat. */
  readonly machineBusy: number;
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** The server and its workers: the spawned pid and its children. */
function serverPids(root: number): number[] {
  let listed = "";
  try {
    listed = execFileSync("ps", ["-o", "pid=", "--ppid", String(root)], { encoding: "utf8" });
  } catch {
    // ps exits 1 when the process has no children (`serve` without workers)
  }
  const children = listed
    .split("\n")
    .map((line) => Number(line.trim()))
    .filter((pid) => pid > 0);
  return [root, ...children];
}

/** Busy and total jiffies of all cores together. */
function machineJiffies(): { busy: number; total: number } {
  const cpu = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
  const idle = cpu[3]! + cpu[4]!;
  const total = cpu.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

async function startServer(workers: number, dataDir: string): Promise<{ child: ChildProcess; grpcPort: number; httpPort: number }> {
  const [grpcPort, httpPort] = [await freePort(), await freePort()];
  const child = spawn(
    process.execPath,
    [
      ...SERVER_NODE_FLAGS,
      path.join(REPO_ROOT, "bin", "portcullis.js"),
      "serve",
      "--workers", String(workers),
      "--grpc-port", String(grpcPort),
      "--http-port", String(httpPort),
      "--data-dir", dataDir,
      "--policies", BUNDLED_POLICY_DIR,
      "--no-watch-policies",
    ],
    { env: { ...process.env, PORTCULLIS_TOKEN_SECRET: BENCH_SECRET_HEX }, detached: true, stdio: ["ignore", "pipe", "pipe"] },
  );
  let out = "";
  child.stdout!.on("data", (chunk: Buffer) => (out += chunk.toString()));
  child.stderr!.on("data", (chunk: Buffer) => (out += chunk.toString()));
  const until = Date.now() + 30_000;
  while ((out.match(/"msg":"listening: /g) ?? []).length < workers) {
    if (Date.now() > until || child.exitCode !== null) {
      stop(child);
      throw new Error(`serve --workers ${workers} did not start: ${out.slice(-2000)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { child, grpcPort, httpPort };
}

function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  try {
    process.kill(-child.pid!, "SIGTERM");
  } catch {
    // gone
  }
  const timer = setTimeout(() => {
    try {
      process.kill(-child.pid!, "SIGKILL");
    } catch {
      // gone
    }
  }, 10_000);
  return exited.finally(() => clearTimeout(timer));
}

function checkOnce(address: string, body: Buffer): Promise<Buffer> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  const identity = (bytes: Buffer) => bytes;
  return new Promise<Buffer>((resolve, reject) => {
    client.makeUnaryRequest(CHECK_PATH, identity, identity, body, { deadline: Date.now() + 5_000 }, (error, response) => (error ? reject(error) : resolve(response!)));
  }).finally(() => client.close());
}

async function measure(pids: readonly number[], run: () => Promise<LoadResult>): Promise<Omit<Sample, "workers" | "load">> {
  const cpu = () => pids.reduce((sum, pid) => sum + cpuMicros(pid), 0);
  const cpuBefore = cpu();
  const machineBefore = machineJiffies();
  const result = await run();
  const cpuAfter = cpu();
  const machineAfter = machineJiffies();
  if (result.failed > 0) throw new Error(`${result.failed} requests failed`);
  return {
    rps: result.rps,
    p50Ms: result.p50Ms,
    p99Ms: result.p99Ms,
    serverCpuUsPerRequest: (cpuAfter - cpuBefore) / result.requests,
    machineBusy: (machineAfter.busy - machineBefore.busy) / (machineAfter.total - machineBefore.total),
  };
}

async function main(): Promise<void> {
  const missing = missingTools();
  if (missing !== null) throw new Error(missing);
  const work = tempDir("workers");
  const filled = fillStore(path.join(work, "data"), 10_000, [{ name: "operator", count: 1, role: "tenant_operator", keyLevel: null }]);
  const token = filled.known.operator![0]!;
  const fields: CheckFields = {
    method: "GET",
    path: "/api/payouts/po_123?page=2",
    host: "api.example.com",
    sourceIp: "203.0.113.10",
    headers: { "user-agent": "bench/1.0", accept: "application/json", "x-request-id": "bench-0001", authorization: `Bearer ${token}` },
  };
  const codec = loadCheckCodec();
  const message = codec.encode(fields);
  const checkBody = path.join(work, "check.bin");
  writeFileSync(checkBody, frame(message));

  const loadBefore = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
  const samples: Sample[] = [];
  for (let run = 0; run < RUNS; run++) {
    for (const workers of [1, 2]) {
      const server = await startServer(workers, filled.dataDir);
      try {
        const status = codec.statusCode(await checkOnce(`127.0.0.1:${server.grpcPort}`, message));
        if (status !== 0) throw new Error(`Check answered status ${status}, expected 0 (allow)`);
        const pids = serverPids(server.child.pid!);
        const check = (seconds: number) => runH2load([{ url: `http://127.0.0.1:${server.grpcPort}${CHECK_PATH}`, bodyFile: checkBody, connections: 4, streams: 16 }], seconds, work);
        const extAuthz = (seconds: number) =>
          runWrk(
            {
              url: `http://127.0.0.1:${server.httpPort}/ext-authz/envoy${fields.path}`,
              method: "GET",
              body: new Uint8Array(0),
              contentType: "text/plain",
              connections: 32,
              headers: { Authorization: `Bearer ${token}`, Host: fields.host, "User-Agent": "bench/1.0", Accept: "application/json", "X-Request-Id": "bench-0001" },
            },
            seconds,
            work,
          );
        for (const [load, drive] of [
          ["Envoy Check (gRPC, h2load 4 × 16)", check],
          ["HTTP ext_authz (wrk, 32 connections)", extAuthz],
        ] as const) {
          await drive(WARMUP_SECONDS);
          const sample = { workers, load, ...(await measure(pids, () => drive(SECONDS))) };
          samples.push(sample);
          process.stderr.write(
            `run ${run + 1} workers ${workers} ${load}: ${Math.round(sample.rps)}/s p50 ${sample.p50Ms.toFixed(2)} ms p99 ${sample.p99Ms.toFixed(2)} ms, server CPU ${sample.serverCpuUsPerRequest.toFixed(0)} µs/decision, machine ${(100 * sample.machineBusy).toFixed(0)}% busy\n`,
          );
        }
      } finally {
        await stop(server.child);
      }
    }
  }

  const lines = [
    `| load | processes | decisions/s (median) | each run | ratio to 1 process (median of each run's pair) | p50 ms | p99 ms | server CPU µs/decision | machine busy |`,
    `| --- | --- | --- | --- | --- | --- | --- | --- | --- |`,
  ];
  for (const load of [...new Set(samples.map((s) => s.load))]) {
    const one = samples.filter((s) => s.load === load && s.workers === 1);
    for (const workers of [1, 2]) {
      const mine = samples.filter((s) => s.load === load && s.workers === workers);
      const rps = median(mine.map((s) => s.rps));
      const each = mine.map((s) => Math.round(s.rps).toLocaleString("en-US")).join(", ");
      // why: the machine is shared and noisy; a ratio within one run's pair (minutes apart) is steadier than a ratio of medians
      const ratios = mine.map((s, i) => s.rps / one[i]!.rps);
      const ratio = `${median(ratios).toFixed(2)}× [${Math.min(...ratios).toFixed(2)} – ${Math.max(...ratios).toFixed(2)}]`;
      lines.push(
        `| ${load} | ${workers === 1 ? "1 (`serve`)" : "2 (`serve --workers 2`)"} | ${Math.round(rps).toLocaleString("en-US")} | ${each} | ${workers === 1 ? "1" : ratio} | ${median(mine.map((s) => s.p50Ms)).toFixed(2)} | ${median(mine.map((s) => s.p99Ms)).toFixed(2)} | ${Math.round(median(mine.map((s) => s.serverCpuUsPerRequest)))} | ${Math.round(100 * median(mine.map((s) => s.machineBusy)))}% |`,
      );
    }
  }
  lines.push("", `load average before and after: ${loadBefore} / ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}; ${RUNS} runs of ${SECONDS} s each after ${WARMUP_SECONDS} s of warm-up`);
  process.stdout.write(`${lines.join("\n")}\n`);
}

process.on("SIGINT", () => {
  killAll();
  process.exit(130);
});
main().then(
  () => killAll(),
  (error: unknown) => {
    killAll();
    process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  },
);
