/**
 * Load generators, pinned to the load core: h2load for HTTP/2 (gRPC) at
 * saturation, `bench/h2-paced.c` for HTTP/2 at a fixed rate, and wrk for
 * HTTP/1.1 (Connect). All report requests/s and latency percentiles.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { REPO_ROOT } from "./fixtures.js";
import { LOAD_CORE, runPinned } from "./processes.js";
import { percentile } from "./stats.js";

/** What one load run measured. Latencies in ms. */
export interface LoadResult {
  readonly requests: number;
  readonly failed: number;
  readonly seconds: number;
  readonly rps: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** Requests done per job, in job order (the realised mix). */
  readonly perJob: readonly number[];
}

/** One h2load process: a body POSTed over `connections × streams` concurrent gRPC calls, optionally rate-limited. */
export interface H2Job {
  readonly url: string;
  readonly bodyFile: string;
  readonly connections: number;
  readonly streams: number;
  /** Requests per second per connection (`--rps`); unlimited when absent. */
  readonly rpsPerConnection?: number;
}

/**
 * Runs the jobs concurrently for `seconds` (one h2load process each, all on the
 * load core) and merges their per-request logs into one latency distribution.
 */
export async function runH2load(jobs: readonly H2Job[], seconds: number, workDir: string): Promise<LoadResult> {
  const logs = jobs.map((_, i) => path.join(workDir, `h2load-${i}.log`));
  const outputs = await Promise.all(
    jobs.map((job, i) =>
      runPinned(
        "h2load",
        [
          "-D", String(seconds),
          "-c", String(job.connections),
          "-m", String(job.streams),
          "-t", "1",
          "-d", job.bodyFile,
          "-H", "content-type: application/grpc",
          "-H", "te: trailers",
          `--log-file=${logs[i]}`,
          ...(job.rpsPerConnection === undefined ? [] : [`--rps=${job.rpsPerConnection}`]),
          job.url,
        ],
        LOAD_CORE,
        (seconds + 30) * 1000,
      ),
    ),
  );
  const latencies: number[] = [];
  const perJob: number[] = [];
  let failed = 0;
  for (const [i, out] of outputs.entries()) {
    const counts = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(out.stdout);
    if (out.code !== 0 || counts === null) throw new Error(`h2load failed (${out.code}): ${out.stderr || out.stdout}`.slice(0, 2000));
    perJob.push(Number(counts[4]));
    failed += Number(counts[5]) + Number(counts[6]) + Number(counts[7]);
    for (const line of readFileSync(logs[i]!, "utf8").split("\n")) {
      const cols = line.split("\t");
      if (cols.length === 3 && cols[1] === "200") latencies.push(Number(cols[2]) / 1000);
    }
    rmSync(logs[i]!, { force: true });
  }
  const requests = perJob.reduce((a, b) => a + b, 0);
  return { requests, failed, seconds, rps: requests / seconds, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99), perJob };
}

/** A gRPC load of interleaved kinds, each body in its share, over `connections`: at a fixed rate or closed loop. */
export interface PacedJob {
  /** `http://127.0.0.1:port`. */
  readonly origin: string;
  readonly path: string;
  readonly connections: number;
  /** Requests per second, all kinds together; or closed loop with this many requests in flight on each connection. */
  readonly load: { readonly rate: number } | { readonly streamsPerConnection: number };
  /** Length-prefixed request messages with their weights, in kind order. */
  readonly bodies: readonly { readonly file: string; readonly weight: number }[];
}

const PACED_SOURCE = path.join(REPO_ROOT, "bench", "h2-paced.c");
const PACED_BINARY = path.join(REPO_ROOT, "dist", "bench", "h2-paced");

/** Compiles `bench/h2-paced.c` (into `dist/bench/` by default) when the binary is missing or older than its source; returns its path. */
export function buildPacedLoader(binary = PACED_BINARY): string {
  if (existsSync(binary) && statSync(binary).mtimeMs >= statSync(PACED_SOURCE).mtimeMs) return binary;
  try {
    execFileSync("cc", ["-O2", "-o", binary, PACED_SOURCE, "-lnghttp2"], { stdio: ["ignore", "pipe", "pipe"] });
    return binary;
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString() ?? String(error);
    throw new Error(`cannot build bench/h2-paced.c (needs nghttp2's headers: \`apt-get install -y libnghttp2-dev\`): ${stderr.slice(0, 1000)}`);
  }
}

/** Runs `h2-paced` for `seconds` on the load core: at a rate, requests sent on schedule, not in h2load's 10 ms bursts. */
export async function runPaced(job: PacedJob, seconds: number, where: { binary?: string; core?: number } = {}): Promise<LoadResult> {
  const { hostname, port } = new URL(job.origin);
  const out = await runPinned(
    where.binary ?? PACED_BINARY,
    [
      hostname,
      port,
      job.path,
      String(job.connections),
      "rate" in job.load ? String(job.load.rate) : `max/${job.load.streamsPerConnection}`,
      String(seconds),
      ...job.bodies.map((b) => `${b.file}:${b.weight}`),
    ],
    where.core ?? LOAD_CORE,
    (seconds + 30) * 1000,
  );
  const line = /H2_PACED_JSON (\{.*\})/.exec(out.stdout);
  if (out.code !== 0 || line === null) throw new Error(`h2-paced failed (${out.code}): ${out.stderr || out.stdout}`.slice(0, 2000));
  const r = JSON.parse(line[1]!) as { done: number; failed: number; seconds: number; p50Us: number; p99Us: number; donePerKind: number[] };
  const ms = (us: number) => (r.done === 0 ? Number.NaN : us / 1000);
  return { requests: r.done, failed: r.failed, seconds: r.seconds, rps: r.done / r.seconds, p50Ms: ms(r.p50Us), p99Ms: ms(r.p99Us), perJob: r.donePerKind };
}

/** One wrk run: a body POSTed (or another method) over `connections` HTTP/1.1 keep-alive connections, optionally paced. */
export interface WrkJob {
  readonly url: string;
  /** Default POST. */
  readonly method?: string;
  readonly body: Uint8Array;
  readonly contentType: string;
  readonly connections: number;
  /** Pause each connection takes between requests (wrk's `delay()`), to hold a moderate rate; none when absent. */
  readonly delayMs?: number;
  /** Extra request headers, e.g. `connect-protocol-version`. */
  readonly headers?: Readonly<Record<string, string>>;
}

function luaString(bytes: Uint8Array): string {
  let out = '"';
  for (const byte of bytes) out += `\\${byte}`;
  return `${out}"`;
}

/** Runs wrk for `seconds` with a Lua script that sets the body and prints its figures as JSON. */
export async function runWrk(job: WrkJob, seconds: number, workDir: string): Promise<LoadResult> {
  const script = path.join(workDir, `wrk-${process.pid}-${Date.now()}.lua`);
  const headers = { "Content-Type": job.contentType, ...(job.headers ?? {}) };
  writeFileSync(
    script,
    [
      `wrk.method = "${job.method ?? "POST"}"`,
      `wrk.body = ${luaString(job.body)}`,
      ...Object.entries(headers).map(([name, value]) => `wrk.headers["${name}"] = "${value}"`),
      ...(job.delayMs === undefined ? [] : [`function delay() return ${job.delayMs} end`]),
      `function done(summary, latency, requests)`,
      `  local e = summary.errors`,
      `  io.write(string.format('BENCH_JSON {"requests":%d,"durationUs":%d,"errors":%d,"p50":%d,"p99":%d}\\n',`,
      `    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout, latency:percentile(50), latency:percentile(99)))`,
      `end`,
    ].join("\n"),
  );
  try {
    const out = await runPinned("wrk", ["-t", "1", "-c", String(job.connections), "-d", `${seconds}s`, "-s", script, job.url], LOAD_CORE, (seconds + 30) * 1000);
    const line = /BENCH_JSON (\{.*\})/.exec(out.stdout);
    if (out.code !== 0 || line === null) throw new Error(`wrk failed (${out.code}): ${out.stderr || out.stdout}`.slice(0, 2000));
    const r = JSON.parse(line[1]!) as { requests: number; durationUs: number; errors: number; p50: number; p99: number };
    const ok = r.requests - r.errors;
    const secs = r.durationUs / 1e6;
    return { requests: ok, failed: r.errors, seconds: secs, rps: ok / secs, p50Ms: r.p50 / 1000, p99Ms: r.p99 / 1000, perJob: [ok] };
  } finally {
    rmSync(script, { force: true });
  }
}
