/**
 * Loopback figures: the real server and no-op servers of the same libraries,
 * each pinned to the server core, driven by h2load, h2-paced or wrk on the
 * other core, measured interleaved run by run so that ratios come from the
 * same minutes.
 *
 * Every row reports, at a fixed moderate rate (on idle cores, and again with
 * the cores kept out of idle) and at saturation: requests/s, p50 and p99
 * latency, server CPU per request from `/proc/PID/stat`, and the time the
 * hypervisor stole from this machine meanwhile.
 */
import { mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import * as http from "node:http";
import path from "node:path";
import { create, fromBinary, toBinary, toJsonString } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { AuthorizeRequestSchema, AuthorizeResponseSchema } from "../src/gen/portcullis/v1/authorization_pb.js";
import { generateToken } from "../src/token/index.js";
import { frame } from "../src/transport/grpc-server.js";
import { CHECK_PATH, envoyTransportExists, loadCheckCodec, type CheckCodec, type CheckFields } from "./envoy-check.js";
import { BENCH_SECRET_HEX, BUNDLED_POLICY_DIR, REPO_ROOT, SERVER_NODE_FLAGS, breakChecksum, fillStore, tempDir } from "./fixtures.js";
import { buildPacedLoader, runH2load, runPaced, runWrk, type LoadResult } from "./load.js";
import { GRPC_PATHS, type NoopKind } from "./noop-servers.js";
import { cpuMicros, stealMicros, statusMiB } from "./proc-cpu.js";
import { LOAD_CORE, SERVER_CORE, startPinned, stopGroup, withCoresBusy, type ServerProcess } from "./processes.js";
import { summariseProfile } from "./profile.js";
import type { Budget, Figure, Row } from "./report.js";
import { spread } from "./stats.js";

export interface LoopbackOptions {
  readonly quick: boolean;
  readonly loopback: boolean;
  readonly mix: boolean;
  /** The Envoy `Check` denials and `Authorize` beside the `Check` allow, on one server (issue 19). */
  readonly paths: boolean;
  /** When set, the real server runs with `--cpu-prof` into this folder and its top functions are logged. */
  readonly profileDir?: string;
  readonly log: (line: string) => void;
}

const AUTHORIZE_PATH = GRPC_PATHS[0];

/** How hard and how long to push. */
interface Plan {
  readonly runs: number;
  readonly warmupSeconds: number;
  readonly rateSeconds: number;
  readonly saturationSeconds: number;
  /** Fixed moderate rate, total requests/s. */
  readonly rate: number;
}

/** A request of the realistic mix and of the single-request rows. */
interface RequestKind {
  readonly name: string;
  readonly fields: CheckFields;
  /** The `Authorize` code the real server must answer. */
  readonly expect: string;
  /** Share of the mix's requests: kinds take turns by weight on the same connections (`bench/h2-paced.c`). */
  readonly weight: number;
}

/** A server the bench drives: the real one or a no-op. */
interface Target {
  readonly label: string;
  readonly server: ServerProcess;
  readonly grpcUrl: string;
  readonly httpUrl: string;
}

/**
 * `rate`: the fixed moderate rate on otherwise idle cores; `rate-busy`: the
 * same with both cores kept out of idle ({@link withCoresBusy}); `saturation`:
 * as many requests as the server takes.
 */
type Mode = "rate" | "rate-busy" | "saturation" | "one-in-flight";
const MODES: readonly Mode[] = ["rate", "rate-busy", "saturation"];
/** `one-in-flight`: one connection, one request at a time, closed loop: the latency of a request on an otherwise idle server. */
const PATH_MODES: readonly Mode[] = ["one-in-flight", "saturation"];

interface Sample {
  readonly load: LoadResult;
  readonly cpuUsPerRequest: number;
  /** Steal time of all CPUs during the run, ms per second of run. */
  readonly stealMsPerSecond: number;
}

/** Drives one target once in one mode. */
type Drive = (target: Target, mode: Mode, seconds: number) => Promise<LoadResult>;

/** A row family: the real server first, then its floors, all driven the same way. */
interface LoadCase {
  readonly name: string;
  readonly section: "loopback" | "mix";
  readonly targets: readonly Target[];
  readonly drive: Drive;
  /** Budget on the real server's saturation CPU ratio to the first floor. */
  readonly ratioBudget?: Budget;
  readonly rpsBudget?: Budget;
  readonly p99Budget?: Budget;
  readonly note?: string;
  /** Modes run; {@link MODES} when absent. */
  readonly modes?: readonly Mode[];
  /**
   * Targets are paths of one server rather than a server and its floors:
   * every target after the first gets its CPU ratio to the first, with
   * `ratioBudgets` by label.
   */
  readonly relativeToFirst?: { readonly ratioBudgets: ReadonlyMap<string, Budget> };
}

function authorizeRequest(fields: CheckFields) {
  return create(AuthorizeRequestSchema, {
    method: fields.method,
    path: fields.path,
    host: fields.host,
    sourceIp: fields.sourceIp,
    headers: Object.entries(fields.headers).map(([name, value]) => ({ name, value })),
  });
}

/** One unary gRPC call with raw bytes both ways, to check a body before loading with it. */
function grpcCall(address: string, method: string, body: Buffer): Promise<Buffer> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  const identity = (bytes: Buffer) => bytes;
  return new Promise<Buffer>((resolve, reject) => {
    client.makeUnaryRequest(method, identity, identity, body, { deadline: Date.now() + 5_000 }, (error, response) => (error ? reject(error) : resolve(response!)));
  }).finally(() => client.close());
}

/** One GET over HTTP/1.1, to check the ext-authz answer before loading: `<status> <x-portcullis-code>`. */
function httpGetCode(url: string, headers: Record<string, string>): Promise<string> {
  return new Promise((resolve, reject) => {
    const request = http.get(url, { headers }, (response) => {
      response.resume();
      response.on("end", () => resolve(`${response.statusCode} ${String(response.headers["x-portcullis-code"])}`));
    });
    request.on("error", reject);
  });
}

function requestKinds(tokens: { operator: readonly string[]; readOnly: readonly string[] }): RequestKind[] {
  const base = { host: "api.example.com", sourceIp: "203.0.113.10" };
  const headers = (token: string | null): Record<string, string> => ({
    "user-agent": "bench/1.0",
    accept: "application/json",
    "x-request-id": "bench-0001",
    ...(token === null ? {} : { authorization: `Bearer ${token}` }),
  });
  const unknown = generateToken("sk_live_");
  return [
    { name: "allow GET payout", expect: "ok", weight: 16, fields: { ...base, method: "GET", path: "/api/payouts/po_123?page=2", headers: headers(tokens.operator[0]!) } },
    { name: "allow POST ledger", expect: "ok", weight: 16, fields: { ...base, method: "POST", path: "/api/ledger/entries", headers: headers(tokens.operator[1]!) } },
    { name: "allow GET settlement", expect: "ok", weight: 16, fields: { ...base, method: "GET", path: "/api/settlement/batches/b_9", headers: headers(tokens.operator[2]!) } },
    { name: "deny unknown token", expect: "unauthenticated", weight: 1, fields: { ...base, method: "GET", path: "/api/payouts", headers: headers(unknown) } },
    { name: "deny bad checksum", expect: "unauthenticated", weight: 1, fields: { ...base, method: "GET", path: "/api/payouts", headers: headers(breakChecksum(tokens.operator[3]!)) } },
    { name: "deny scope (read_only POST)", expect: "scope_denied", weight: 1, fields: { ...base, method: "POST", path: "/api/payouts", headers: headers(tokens.readOnly[0]!) } },
    { name: "deny missing token", expect: "unauthenticated", weight: 1, fields: { ...base, method: "GET", path: "/api/payouts", headers: headers(null) } },
    { name: "deny invalid path", expect: "invalid_request", weight: 1, fields: { ...base, method: "GET", path: "/api/payouts%2F..%2Fadmin", headers: headers(tokens.operator[4]!) } },
  ];
}

/** Issue 6's latency budget, judged on the fixed rate with the cores kept out of idle (BENCHMARKS.md says why). */
const P99_BUDGET: Budget = { limit: 2, atMost: true, text: "< 2 ms (cores out of idle)" };

/** Issue 19's budget for a denial: its CPU per request against the Check allow's, measured on the same server in the same run. */
const DENY_BUDGET: Budget = { limit: 1.15, atMost: true, text: "≤ 1.15× Check allow" };

/** Saturation and rate settings: gRPC in flight at saturation (h2load, or h2-paced for the mix), gRPC connections at the rate (h2-paced), HTTP/1.1 (wrk). */
const H2_SATURATION = { connections: 4, streams: 16 };
const H2_RATE_CONNECTIONS = 4;
const H1_SATURATION = { connections: 32 };
const H1_RATE = { connections: 8 };

async function measure(cases: readonly LoadCase[], plan: Plan, log: (line: string) => void): Promise<Map<LoadCase, Map<Target, Record<Mode, Sample[]>>>> {
  const results = new Map<LoadCase, Map<Target, Record<Mode, Sample[]>>>();
  for (const c of cases) {
    const perTarget = new Map<Target, Record<Mode, Sample[]>>();
    for (const target of c.targets) {
      perTarget.set(target, { rate: [], "rate-busy": [], saturation: [], "one-in-flight": [] });
      log(`loopback: warm-up ${c.name} on ${target.label}`);
      // Both shapes of load: the paced one opens its own connections, whose first seconds still carry JIT and GC warm-up.
      await c.drive(target, "saturation", plan.warmupSeconds);
      await c.drive(target, "rate", plan.warmupSeconds);
    }
    results.set(c, perTarget);
  }
  // Interleaved: run i of every case and target before run i + 1 of any.
  for (let run = 0; run < plan.runs; run++) {
    for (const c of cases) {
      for (const target of c.targets) {
        for (const mode of c.modes ?? MODES) {
          log(`loopback: run ${run + 1}/${plan.runs} ${c.name} on ${target.label}, ${mode}`);
          const seconds = mode === "saturation" ? plan.saturationSeconds : plan.rateSeconds;
          const once = async () => {
            const before = { cpu: serverCpu(target), steal: stealMicros(), at: performance.now() };
            const load = await c.drive(target, mode, seconds);
            const cpu = serverCpu(target) - before.cpu;
            const stealMsPerSecond = (stealMicros() - before.steal) / (performance.now() - before.at);
            return { load, cpuUsPerRequest: load.requests === 0 ? Number.NaN : cpu / load.requests, stealMsPerSecond };
          };
          perTarget(results, c, target)[mode].push(mode === "rate-busy" ? await withCoresBusy([SERVER_CORE, LOAD_CORE], once) : await once());
        }
      }
    }
  }
  return results;
}

/** The target's CPU time so far; a server that died says so with its last output. */
function serverCpu(target: Target): number {
  try {
    return cpuMicros(target.server.pid);
  } catch {
    throw new Error(`${target.label} (pid ${target.server.pid}) is gone: ${target.server.output().slice(-3000)}`);
  }
}

function perTarget(results: Map<LoadCase, Map<Target, Record<Mode, Sample[]>>>, c: LoadCase, target: Target): Record<Mode, Sample[]> {
  return results.get(c)!.get(target)!;
}

function rowsOf(c: LoadCase, samples: Map<Target, Record<Mode, Sample[]>>, rate: number): Row[] {
  const rows: Row[] = [];
  const [real, ...floors] = c.targets;
  const modes = c.modes ?? MODES;
  for (const target of c.targets) {
    const s = samples.get(target)!;
    const of = (mode: Mode, pick: (sample: Sample) => number) => spread(s[mode].map(pick));
    const failed = modes.reduce((sum, mode) => sum + s[mode].reduce((n, sample) => n + sample.load.failed, 0), 0);
    const figures: Figure[] = [];
    for (const mode of (["rate", "rate-busy"] as const).filter((m) => modes.includes(m))) {
      const at = `~${rate.toLocaleString("en-US")} rps${mode === "rate-busy" ? ", cores kept out of idle" : ""}`;
      const budget = target === real && c.p99Budget && mode === "rate-busy" ? { budget: c.p99Budget } : {};
      figures.push(
        { label: `${at}: achieved`, unit: "req/s", value: of(mode, (x) => x.load.rps) },
        { label: `${at}: p50`, unit: "ms", value: of(mode, (x) => x.load.p50Ms) },
        { label: `${at}: p99`, unit: "ms", value: of(mode, (x) => x.load.p99Ms), ...budget },
        { label: `${at}: server CPU per request`, unit: "µs", value: of(mode, (x) => x.cpuUsPerRequest) },
        { label: `${at}: host steal`, unit: "ms/s", value: of(mode, (x) => x.stealMsPerSecond) },
      );
    }
    if (modes.includes("one-in-flight")) {
      figures.push(
        { label: "one in flight: p50", unit: "ms", value: of("one-in-flight", (x) => x.load.p50Ms) },
        { label: "one in flight: p99", unit: "ms", value: of("one-in-flight", (x) => x.load.p99Ms) },
        { label: "one in flight: server CPU per request", unit: "µs", value: of("one-in-flight", (x) => x.cpuUsPerRequest) },
      );
    }
    figures.push(
      { label: "saturation: throughput", unit: "req/s", value: of("saturation", (x) => x.load.rps), ...(target === real && c.rpsBudget ? { budget: c.rpsBudget } : {}) },
      { label: "saturation: p50", unit: "ms", value: of("saturation", (x) => x.load.p50Ms) },
      { label: "saturation: p99", unit: "ms", value: of("saturation", (x) => x.load.p99Ms) },
      { label: "saturation: server CPU per request", unit: "µs", value: of("saturation", (x) => x.cpuUsPerRequest) },
      { label: "saturation: host steal", unit: "ms/s", value: of("saturation", (x) => x.stealMsPerSecond) },
    );
    const ratioOf = (base: Target, mode: Mode) => {
      const f = samples.get(base)!;
      return spread(s[mode].map((sample, i) => sample.cpuUsPerRequest / f[mode][i]!.cpuUsPerRequest));
    };
    if (c.relativeToFirst !== undefined && target !== real) {
      const budget = c.relativeToFirst.ratioBudgets.get(target.label);
      figures.push({ label: `CPU per request ÷ ${real.label}, saturation`, unit: "×", value: ratioOf(real, "saturation"), ...(budget === undefined ? {} : { budget }) });
      if (modes.includes("one-in-flight")) figures.push({ label: `CPU per request ÷ ${real.label}, one in flight`, unit: "×", value: ratioOf(real, "one-in-flight") });
    }
    if (c.relativeToFirst === undefined && target === real) {
      // Every floor gets its ratios; the budget is judged against the first.
      for (const floor of floors) {
        const f = samples.get(floor)!;
        const budget = floor === floors[0] && c.ratioBudget ? { budget: c.ratioBudget } : {};
        figures.push({ label: `CPU per request ÷ ${floor.label}, saturation`, unit: "×", value: ratioOf(floor, "saturation"), ...budget });
        figures.push({ label: `CPU per request ÷ ${floor.label}, ~${rate.toLocaleString("en-US")} rps`, unit: "×", value: ratioOf(floor, "rate") });
        figures.push({ label: `throughput ÷ ${floor.label}, saturation`, unit: "×", value: spread(s.saturation.map((sample, i) => sample.load.rps / f.saturation[i]!.load.rps)) });
      }
    }
    if (c.section === "mix" && target === real) {
      const done = s.saturation.flatMap((sample) => [sample.load.perJob]);
      const allowShare = done.map((perJob) => perJob.slice(0, 3).reduce((a, b) => a + b, 0) / perJob.reduce((a, b) => a + b, 0));
      figures.push({ label: "saturation: share of allows", unit: "%", value: spread(allowShare.map((x) => x * 100)) });
    }
    const peak = statusMiB(target.server.pid, "VmHWM");
    figures.push({ label: "peak RSS of the server so far (VmHWM)", unit: "MiB", value: { median: peak, min: peak, max: peak, runs: 1 } });
    const notes = [target === real ? c.note : undefined, failed > 0 ? `${failed} requests failed` : undefined].filter((x) => x !== undefined);
    rows.push({
      section: c.section,
      name: `${c.name} — ${target.label}`,
      status: "ok",
      ...(notes.length > 0 ? { note: notes.join("; ") } : {}),
      figures,
    });
  }
  return rows;
}

async function startNoop(kind: NoopKind): Promise<ServerProcess & { port: number }> {
  const server = await startPinned([path.join(REPO_ROOT, "dist", "bench", "noop-servers.js"), kind], { core: SERVER_CORE, ready: /listening (\d+)/ });
  return { ...server, port: Number(server.match[1]) };
}

export async function runLoopback(options: LoopbackOptions): Promise<Row[]> {
  const plan: Plan = options.quick
    ? { runs: 1, warmupSeconds: 1, rateSeconds: 2, saturationSeconds: 2, rate: 2_000 }
    : { runs: 3, warmupSeconds: 2, rateSeconds: 3, saturationSeconds: 4, rate: 2_000 };
  const work = tempDir("loopback");
  const servers: ServerProcess[] = [];
  const rows: Row[] = [];
  try {
    buildPacedLoader();
    const total = options.quick ? 10_000 : 100_000;
    options.log(`loopback: filling a store with ${total.toLocaleString("en-US")} tokens`);
    const filled = fillStore(path.join(work, "data"), total, [
      { name: "operator", count: 8, role: "tenant_operator", keyLevel: null },
      { name: "readOnly", count: 2, role: "tenant_operator", keyLevel: "read_only" },
    ]);
    const kinds = requestKinds({ operator: filled.known.operator!, readOnly: filled.known.readOnly! });

    const profileArgs = options.profileDir === undefined ? [] : ["--cpu-prof", `--cpu-prof-dir=${options.profileDir}`];
    if (options.profileDir !== undefined) mkdirSync(options.profileDir, { recursive: true });
    const realProcess = await startPinned(
      [path.join(REPO_ROOT, "bin", "portcullis.js"), "serve", "--grpc-port", "0", "--http-port", "0", "--data-dir", filled.dataDir, "--policies", BUNDLED_POLICY_DIR, "--log-level", "info"],
      {
        core: SERVER_CORE,
        env: { ...process.env, PORTCULLIS_TOKEN_SECRET: BENCH_SECRET_HEX },
        ready: /listening: grpc on [^:]+:(\d+), http on [^:]+:(\d+)/,
        nodeFlags: [...SERVER_NODE_FLAGS, ...profileArgs],
      },
    );
    servers.push(realProcess);
    const real: Target = { label: "portcullis", server: realProcess, grpcUrl: `http://127.0.0.1:${realProcess.match[1]}`, httpUrl: `http://127.0.0.1:${realProcess.match[2]}` };
    const noop = async (kind: NoopKind, label: string): Promise<Target> => {
      const server = await startNoop(kind);
      servers.push(server);
      return { label, server, grpcUrl: `http://127.0.0.1:${server.port}`, httpUrl: `http://127.0.0.1:${server.port}` };
    };
    const grpcFloor = await noop("grpc-js", "grpc-js no-op");
    const http2Floor = await noop("node-http2", "node:http2 no-op");
    const connectFloor = await noop("connect-http1", "connect-node HTTP/1.1 no-op");
    const httpFloor = await noop("node-http", "node:http no-op");

    // Bodies, checked once against the real server before any load.
    const grpcAddress = `127.0.0.1:${realProcess.match[1]}`;
    const authorizeBodies: string[] = [];
    for (const [i, kind] of kinds.entries()) {
      const body = frame(toBinary(AuthorizeRequestSchema, authorizeRequest(kind.fields)));
      const answer = fromBinary(AuthorizeResponseSchema, await grpcCall(grpcAddress, AUTHORIZE_PATH, body.subarray(5)));
      if (answer.code !== kind.expect) throw new Error(`${kind.name}: Authorize answered \`${answer.code}\` (${answer.reason}), expected \`${kind.expect}\``);
      const file = path.join(work, `authorize-${i}.bin`);
      writeFileSync(file, body);
      authorizeBodies.push(file);
    }

    // Envoy Check: only once the transport exists and answers.
    let checkBodies: string[] | null = null;
    let checkPending = "no `src/transport/envoy.ts` yet";
    if (envoyTransportExists()) {
      try {
        const codec: CheckCodec = loadCheckCodec();
        checkBodies = [];
        for (const [i, kind] of kinds.entries()) {
          const message = codec.encode(kind.fields);
          const status = codec.statusCode(await grpcCall(grpcAddress, CHECK_PATH, message));
          if ((status === 0) !== (kind.expect === "ok")) throw new Error(`${kind.name}: Check answered status ${status}`);
          const file = path.join(work, `check-${i}.bin`);
          writeFileSync(file, frame(message));
          checkBodies.push(file);
        }
      } catch (error) {
        checkBodies = null;
        checkPending = `\`src/transport/envoy.ts\` exists but Check did not answer as expected: ${error instanceof Error ? error.message : String(error)}`;
      }
    }

    const allow = kinds[0]!;
    const h2Single = (route: string, bodyFile: string): Drive => (target, mode, seconds) =>
      mode === "saturation"
        ? runH2load([{ url: `${target.grpcUrl}${route}`, bodyFile, ...H2_SATURATION }], seconds, work)
        : mode === "one-in-flight"
          ? runPaced({ origin: target.grpcUrl, path: route, connections: 1, load: { streamsPerConnection: 1 }, bodies: [{ file: bodyFile, weight: 1 }] }, seconds)
          : runPaced({ origin: target.grpcUrl, path: route, connections: H2_RATE_CONNECTIONS, load: { rate: plan.rate }, bodies: [{ file: bodyFile, weight: 1 }] }, seconds);
    const connectDrive = (body: Uint8Array, contentType: string): Drive => (target, mode, seconds) =>
      runWrk(
        {
          url: `${target.httpUrl}${AUTHORIZE_PATH}`,
          body,
          contentType,
          headers: { "Connect-Protocol-Version": "1" },
          ...(mode === "saturation" ? H1_SATURATION : { connections: H1_RATE.connections, delayMs: (H1_RATE.connections * 1000) / plan.rate }),
        },
        seconds,
        work,
      );
    // Every kind interleaved on the same connections, as Envoy multiplexes its checks: paced at the rate, closed loop at saturation.
    const mixDrive = (route: string, bodies: readonly string[]): Drive => (target, mode, seconds) =>
      runPaced(
        {
          origin: target.grpcUrl,
          path: route,
          connections: mode === "saturation" ? H2_SATURATION.connections : H2_RATE_CONNECTIONS,
          load: mode === "saturation" ? { streamsPerConnection: H2_SATURATION.streams } : { rate: plan.rate },
          bodies: bodies.map((file, i) => ({ file, weight: kinds[i]!.weight })),
        },
        seconds,
      );

    const cases: LoadCase[] = [];
    const pendingRows: Row[] = [];
    if (options.loopback) {
      cases.push({ name: "Authorize over gRPC, allow", section: "loopback", targets: [real, grpcFloor, http2Floor], drive: h2Single(AUTHORIZE_PATH, authorizeBodies[0]!) });
      const json = new TextEncoder().encode(toJsonString(AuthorizeRequestSchema, authorizeRequest(allow.fields)));
      cases.push({
        name: "Authorize over Connect JSON (HTTP/1.1), allow",
        section: "loopback",
        targets: [real, connectFloor, httpFloor],
        drive: connectDrive(json, "application/json"),
        ratioBudget: { limit: 1.25, atMost: true, text: "≤ 1.25× connect no-op" },
        note: "wrk has no fixed-rate mode: the ~2,000 rps figures pace 8 connections with wrk's delay() (closed loop), so the achieved rate is shown",
      });
      cases.push({
        name: "Authorize over Connect binary (HTTP/1.1), allow",
        section: "loopback",
        targets: [real, connectFloor],
        drive: connectDrive(toBinary(AuthorizeRequestSchema, authorizeRequest(allow.fields)), "application/proto"),
        ratioBudget: { limit: 1.25, atMost: true, text: "≤ 1.25× connect no-op" },
      });
      if (checkBodies !== null) {
        cases.push({ name: "Envoy Check over gRPC, allow", section: "loopback", targets: [real, grpcFloor, http2Floor], drive: h2Single(CHECK_PATH, checkBodies[0]!), p99Budget: P99_BUDGET });
      } else {
        pendingRows.push({ section: "loopback", name: "Envoy Check over gRPC, allow", status: "pending", note: checkPending, figures: [] });
      }
      // Envoy's HTTP ext_authz service: GET <prefix>/envoy<original path> with the original headers; allow = 200.
      const extAuthzPath = `/ext-authz/envoy${allow.fields.path}`;
      const extAuthzHeaders = { ...allow.fields.headers, Host: allow.fields.host };
      const extAuthzCode = await httpGetCode(`${real.httpUrl}${extAuthzPath}`, extAuthzHeaders);
      if (extAuthzCode !== "200 ok") throw new Error(`HTTP ext-authz (Envoy mode): answered ${extAuthzCode}, expected 200 ok`);
      cases.push({
        name: "HTTP ext-authz, Envoy HTTP mode (HTTP/1.1), allow",
        section: "loopback",
        targets: [real, httpFloor],
        drive: (target, mode, seconds) =>
          runWrk(
            {
              url: `${target.httpUrl}${extAuthzPath}`,
              method: "GET",
              body: new Uint8Array(0),
              contentType: "application/octet-stream",
              headers: extAuthzHeaders,
              ...(mode === "saturation" ? H1_SATURATION : { connections: H1_RATE.connections, delayMs: (H1_RATE.connections * 1000) / plan.rate }),
            },
            seconds,
            work,
          ),
        note: "GET /ext-authz/envoy<path> with the original headers (Authorization, Host), as Envoy's HTTP ext_authz sends it; floor is bare node:http; wrk paced as for Connect (closed loop)",
      });
    }
    if (options.paths && checkBodies !== null) {
      // One server, each path its own target, so that every ratio to the Check allow comes from the same minutes.
      const kindIndex = (name: string) => kinds.findIndex((k) => k.name === name);
      const paths: { label: string; route: string; body: string; budget?: Budget }[] = [
        { label: "Check allow", route: CHECK_PATH, body: checkBodies[0]! },
        { label: "Check scope_denied", route: CHECK_PATH, body: checkBodies[kindIndex("deny scope (read_only POST)")]!, budget: DENY_BUDGET },
        { label: "Check unauthenticated (bad checksum)", route: CHECK_PATH, body: checkBodies[kindIndex("deny bad checksum")]!, budget: DENY_BUDGET },
        { label: "Check unauthenticated (unknown token, repeated)", route: CHECK_PATH, body: checkBodies[kindIndex("deny unknown token")]!, budget: DENY_BUDGET },
        { label: "Authorize allow", route: AUTHORIZE_PATH, body: authorizeBodies[0]!, budget: { limit: 1.1, atMost: true, text: "≤ 1.1× Check allow" } },
      ];
      const drives = new Map<Target, Drive>();
      for (const p of paths) drives.set({ ...real, label: p.label }, h2Single(p.route, p.body));
      cases.push({
        name: "Envoy Check and Authorize paths over gRPC",
        section: "loopback",
        targets: [...drives.keys()],
        drive: (target, mode, seconds) => drives.get(target)!(target, mode, seconds),
        modes: PATH_MODES,
        relativeToFirst: { ratioBudgets: new Map(paths.flatMap((p) => (p.budget === undefined ? [] : [[p.label, p.budget] as const]))) },
        note: "one real server, each path driven alone in turn: one in flight is h2-paced closed loop on 1 connection × 1 stream; saturation is h2load -c 4 -m 16; the unknown token is one well-formed token the store never issued, sent on every request",
      });
    }
    if (options.mix) {
      const mixNote = `bundled policies, ${total.toLocaleString("en-US")} tokens stored; kinds ${kinds.map((k) => k.name).join(", ")}, weighted 16:16:16:1:1:1:1:1 for ~90% allows, interleaved on the same connections as Envoy sends them (h2-paced: ${H2_RATE_CONNECTIONS} connections paced at the rate; ${H2_SATURATION.connections} × ${H2_SATURATION.streams} in flight at saturation); one token per allow kind, so the token cache hits`;
      cases.push({ name: "mix: Authorize over gRPC", section: "mix", targets: [real, grpcFloor, http2Floor], drive: mixDrive(AUTHORIZE_PATH, authorizeBodies), note: mixNote });
      if (checkBodies !== null) {
        cases.push({
          name: "mix: Envoy Check over gRPC",
          section: "mix",
          targets: [real, grpcFloor, http2Floor],
          drive: mixDrive(CHECK_PATH, checkBodies),
          note: mixNote,
          ratioBudget: { limit: 1.25, atMost: true, text: "≤ 1.25× grpc-js no-op" },
          rpsBudget: { limit: 10_000, atMost: false, text: "≥ 10,000 req/s" },
          p99Budget: P99_BUDGET,
        });
      } else {
        pendingRows.push({ section: "mix", name: "mix: Envoy Check over gRPC", status: "pending", note: checkPending, figures: [] });
      }
    }

    const results = await measure(cases, plan, options.log);
    for (const c of cases) rows.push(...rowsOf(c, results.get(c)!, plan.rate));
    rows.push(...pendingRows);
  } finally {
    for (const server of servers) await stopGroup(server.child);
    rmSync(work, { recursive: true, force: true });
  }
  if (options.profileDir !== undefined) {
    const profiles = readdirSync(options.profileDir).filter((file) => file.endsWith(".cpuprofile"));
    const latest = profiles.sort().at(-1);
    if (latest !== undefined) options.log(`\nserver CPU profile ${path.join(options.profileDir, latest)}, top self time:\n${summariseProfile(path.join(options.profileDir, latest), 25)}`);
  }
  return rows;
}
