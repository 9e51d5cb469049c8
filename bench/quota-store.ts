/**
 * `node dist/bench/quota-store.js [--quick] [--busy] [--in-flight N]`: what a quota costs per allowed
 * request, in-memory against Redis, with no quota beside them, in one run.
 *
 * Two real servers (`portcullis serve`, one in-memory, one with `--quota-store`
 * on a redis-server the bench starts) share one token store and run pinned to
 * core 0; redis-server and this process (the client) run on core 1. The client
 * sends the same gRPC `Authorize` (an allow of `GET /api/payouts/po_123`) with
 * one call in flight, for a token without a quota and one with a quota (per
 * minute and per day, too high to ever refuse). Rows take turns run by run, so
 * the ratios come from the same minutes. Per row and run: p50 and p99 of the
 * client's round trip, the server's CPU per request and redis-server's, both
 * from `/proc/PID/stat`; the table shows the median over runs with min and max.
 * With `--busy` everything runs again with both cores kept out of idle
 * (`withCoresBusy`): at 1 in flight each hop wakes a halted vCPU, which on
 * this hypervisor can cost more than the work itself.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { rmSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { AuthorizeRequestSchema, AuthorizeResponseSchema } from "../src/gen/portcullis/v1/authorization_pb.js";
import { createToken } from "../src/service/tokens.js";
import { TokenStore } from "../src/store/token-store.js";
import { BENCH_SECRET, BENCH_SECRET_HEX, BUNDLED_POLICY_DIR, REPO_ROOT, SERVER_NODE_FLAGS, loadPolicyOrThrow, tempDir } from "./fixtures.js";
import { cpuMicros } from "./proc-cpu.js";
import { LOAD_CORE, SERVER_CORE, hasCommand, killAll, startPinned, stopGroup, withCoresBusy, type ServerProcess } from "./processes.js";
import { percentile, spread, type Spread } from "./stats.js";

const AUTHORIZE_PATH = "/portcullis.v1.AuthorizationService/Authorize";

interface Plan {
  readonly runs: number;
  /** Calls in flight at once (closed loops on one connection); 1 unless `--in-flight N`. */
  readonly inFlight: number;
  readonly warmup: number;
  readonly requests: number;
}

interface RowSpec {
  readonly name: string;
  readonly server: "memory" | "redis";
  readonly token: "none" | "quota";
}

const ROWS: readonly RowSpec[] = [
  { name: "no quota (in-memory server)", server: "memory", token: "none" },
  { name: "in-memory quota", server: "memory", token: "quota" },
  { name: "no quota (Redis server)", server: "redis", token: "none" },
  { name: "Redis quota", server: "redis", token: "quota" },
];

interface Sample {
  readonly p50Us: number;
  readonly p99Us: number;
  readonly serverCpuUs: number;
  readonly redisCpuUs: number;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address !== null ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}

/** Starts redis-server without persistence pinned to `core`; resolves once it accepts connections. */
async function startRedis(port: number, core: number): Promise<ChildProcess> {
  const child = spawn("taskset", ["-c", String(core), "redis-server", "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
    detached: true,
    stdio: "ignore",
  });
  const giveUpAtMs = Date.now() + 10_000;
  while (Date.now() < giveUpAtMs) {
    const up = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, "127.0.0.1", () => {
        socket.end();
        resolve(true);
      });
      socket.on("error", () => resolve(false));
    });
    if (up) return child;
    if (child.exitCode !== null) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  child.kill("SIGKILL");
  throw new Error(`redis-server on port ${port} did not start`);
}

/** One unary call with raw bytes both ways. */
function call(client: grpc.Client, body: Buffer): Promise<Buffer> {
  const identity = (bytes: Buffer) => bytes;
  return new Promise((resolve, reject) => client.makeUnaryRequest(AUTHORIZE_PATH, identity, identity, body, (error, response) => (error ? reject(error) : resolve(response!))));
}

function requestBody(token: string): Buffer {
  const message = create(AuthorizeRequestSchema, {
    method: "GET",
    path: "/api/payouts/po_123?page=2",
    host: "api.example.com",
    sourceIp: "203.0.113.10",
    headers: [
      { name: "authorization", value: `Bearer ${token}` },
      { name: "user-agent", value: "bench/1.0" },
    ],
  });
  return Buffer.from(toBinary(AuthorizeRequestSchema, message));
}

/** Checks the row's answer once: allowed, with rate-limit headers exactly when a quota applies. */
async function checkAnswer(client: grpc.Client, body: Buffer, spec: RowSpec): Promise<void> {
  const response = fromBinary(AuthorizeResponseSchema, await call(client, body));
  const limited = response.responseHeaders.some((header) => header.name === "ratelimit-limit");
  if (response.code !== "ok" || limited !== (spec.token === "quota")) {
    throw new Error(`${spec.name}: expected an allow ${spec.token === "quota" ? "with" : "without"} rate-limit headers, got ${response.code} ${JSON.stringify(response.responseHeaders)}`);
  }
}

async function measure(client: grpc.Client, body: Buffer, server: ServerProcess, redisPid: number, plan: Plan): Promise<Sample> {
  for (let i = 0; i < plan.warmup; i++) await call(client, body);
  const times: number[] = [];
  const serverCpu0 = cpuMicros(server.pid);
  const redisCpu0 = cpuMicros(redisPid);
  const perLoop = Math.ceil(plan.requests / plan.inFlight);
  await Promise.all(
    Array.from({ length: plan.inFlight }, async () => {
      for (let i = 0; i < perLoop; i++) {
        const start = performance.now();
        await call(client, body);
        times.push((performance.now() - start) * 1000);
      }
    }),
  );
  return {
    p50Us: percentile(times, 50),
    p99Us: percentile(times, 99),
    serverCpuUs: (cpuMicros(server.pid) - serverCpu0) / times.length,
    redisCpuUs: (cpuMicros(redisPid) - redisCpu0) / times.length,
  };
}

const fmt = (s: Spread, digits = 0) => `${s.median.toFixed(digits)} (${s.min.toFixed(digits)}–${s.max.toFixed(digits)})`;

async function main(): Promise<void> {
  const quick = process.argv.includes("--quick");
  const busy = process.argv.includes("--busy");
  const flag = process.argv.indexOf("--in-flight");
  const inFlight = flag === -1 ? 1 : Number(process.argv[flag + 1]);
  if (!Number.isInteger(inFlight) || inFlight < 1) throw new Error("--in-flight takes a whole number from 1");
  const plan: Plan = quick ? { runs: 3, inFlight, warmup: 300, requests: 1_000 * inFlight } : { runs: 7, inFlight, warmup: 1_000, requests: 3_000 * Math.min(inFlight, 4) };
  for (const command of ["taskset", "redis-server"]) if (!hasCommand(command)) throw new Error(`${command} is missing`);
  // The client shares core 1 with redis-server; the servers have core 0.
  spawnSync("taskset", ["-p", "-c", String(LOAD_CORE), String(process.pid)], { stdio: "ignore" });

  const dataDir = tempDir("quota-store");
  const servers: ServerProcess[] = [];
  let redis: ChildProcess | undefined;
  const clients: grpc.Client[] = [];
  try {
    const policy = loadPolicyOrThrow(BUNDLED_POLICY_DIR);
    const store = TokenStore.open({ dataDir, secret: BENCH_SECRET });
    const base = { tenant: "acme", workspace: "main", environment: "production", type: "service", role: "tenant_operator", actor: "bench" } as const;
    const tokens = {
      none: (await createToken(store, policy, { ...base, name: "no quota" }, Date.now())).token,
      quota: (await createToken(store, policy, { ...base, name: "quota", controls: { quota: { limitPerMinute: 1_000_000_000, limitPerDay: 1_000_000_000 } } }, Date.now())).token,
    };
    await store.close();

    const redisPort = await freePort();
    redis = await startRedis(redisPort, LOAD_CORE);
    const serve = (extra: readonly string[]) =>
      startPinned([path.join(REPO_ROOT, "bin", "portcullis.js"), "serve", "--grpc-port", "0", "--http-port", "0", "--data-dir", dataDir, "--policies", BUNDLED_POLICY_DIR, "--log-level", "info", ...extra], {
        core: SERVER_CORE,
        env: { ...process.env, PORTCULLIS_TOKEN_SECRET: BENCH_SECRET_HEX },
        ready: /listening: grpc on [^:]+:(\d+), http on [^:]+:(\d+)/,
        nodeFlags: SERVER_NODE_FLAGS,
      });
    const memory = await serve([]);
    servers.push(memory);
    const withRedis = await serve(["--quota-store", `redis://127.0.0.1:${redisPort}`]);
    servers.push(withRedis);
    const target = { memory, redis: withRedis };
    const clientOf = { memory: new grpc.Client(`127.0.0.1:${memory.match[1]}`, grpc.credentials.createInsecure()), redis: new grpc.Client(`127.0.0.1:${withRedis.match[1]}`, grpc.credentials.createInsecure()) };
    clients.push(clientOf.memory, clientOf.redis);
    const bodies = { none: requestBody(tokens.none), quota: requestBody(tokens.quota) };
    for (const spec of ROWS) await checkAnswer(clientOf[spec.server], bodies[spec.token], spec);

    const redisPid = redis.pid!;
    const report = async (mode: string): Promise<string[]> => {
      const samples = new Map<string, Sample[]>(ROWS.map((spec) => [spec.name, []]));
      for (let run = 0; run < plan.runs; run++) {
        // rows take turns, starting from a different one each run
        for (let k = 0; k < ROWS.length; k++) {
          const spec = ROWS[(run + k) % ROWS.length]!;
          samples.get(spec.name)!.push(await measure(clientOf[spec.server], bodies[spec.token], target[spec.server], redisPid, plan));
        }
        process.stderr.write(`${mode}: run ${run + 1}/${plan.runs} done\n`);
      }

      const lines = [
        `${mode}: ${plan.runs} runs of ${plan.requests} requests per row, ${plan.inFlight} in flight, gRPC Authorize; median (min–max) over runs`,
        "",
        "| request | p50 µs | p99 µs | server CPU µs/req | redis CPU µs/req | total CPU µs/req |",
        "| --- | --- | --- | --- | --- | --- |",
      ];
      for (const spec of ROWS) {
        const rows = samples.get(spec.name)!;
        lines.push(
          `| ${spec.name} | ${fmt(spread(rows.map((s) => s.p50Us)))} | ${fmt(spread(rows.map((s) => s.p99Us)))} | ${fmt(spread(rows.map((s) => s.serverCpuUs)), 1)} | ${fmt(spread(rows.map((s) => s.redisCpuUs)), 1)} | ${fmt(spread(rows.map((s) => s.serverCpuUs + s.redisCpuUs)), 1)} |`,
        );
      }
      // ratios per run, then their median: both rows of a ratio come from the same minutes
      const ratio = (a: string, b: string, of: (s: Sample) => number) => spread(samples.get(a)!.map((s, i) => of(s) / of(samples.get(b)![i]!)));
      const total = (s: Sample) => s.serverCpuUs + s.redisCpuUs;
      lines.push(
        "",
        `Redis quota / in-memory quota: p50 ${fmt(ratio("Redis quota", "in-memory quota", (s) => s.p50Us), 2)}, server CPU ${fmt(ratio("Redis quota", "in-memory quota", (s) => s.serverCpuUs), 2)}, total CPU ${fmt(ratio("Redis quota", "in-memory quota", total), 2)}`,
        `in-memory quota / no quota: p50 ${fmt(ratio("in-memory quota", "no quota (in-memory server)", (s) => s.p50Us), 2)}, server CPU ${fmt(ratio("in-memory quota", "no quota (in-memory server)", (s) => s.serverCpuUs), 2)}`,
        `Redis quota - in-memory quota (µs): p50 ${fmt(spread(samples.get("Redis quota")!.map((s, i) => s.p50Us - samples.get("in-memory quota")![i]!.p50Us)))}, total CPU ${fmt(spread(samples.get("Redis quota")!.map((s, i) => total(s) - total(samples.get("in-memory quota")![i]!))), 1)}`,
      );
      return lines;
    };
    const lines = await report("idle cores");
    if (busy) lines.push("", ...(await withCoresBusy([SERVER_CORE, LOAD_CORE], () => report("cores kept out of idle"))));
    process.stdout.write(`${lines.join("\n")}\n`);
  } finally {
    for (const client of clients) client.close();
    for (const server of servers) await stopGroup(server.child);
    if (redis !== undefined) await stopGroup(redis);
    rmSync(dataDir, { recursive: true, force: true });
  }
}

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    killAll();
    process.exit(130);
  });
}

try {
  await main();
} catch (error) {
  process.stderr.write(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
} finally {
  killAll();
}
