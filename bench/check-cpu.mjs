/**
 * What the `*-cost.mjs` benches share: a server of this checkout in a child
 * process pinned to core 0 that reports its own CPU time on request, and a
 * batch of Envoy `Check` calls sent to it from this process (4 connections x
 * 16 streams), measured as the server's CPU microseconds per call.
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import * as http2 from "node:http2";
import path from "node:path";
import readline from "node:readline";
import { pathToFileURL } from "node:url";

const CONNECTIONS = 4;
const STREAMS_PER_CONNECTION = 16;

/**
 * Starts `node script --serve …args` pinned to core 0. The child prints one
 * JSON line `{ port, httpPort, token }` when it listens, then answers each
 * line on its stdin with `{ cpuMicros }`; it stops when its stdin ends.
 */
export async function startServerChild(script, args, checkBody) {
  const child = spawn("taskset", ["-c", "0", process.execPath, "--max-semi-space-size=8", script, "--serve", ...args], { stdio: ["pipe", "pipe", "inherit"] });
  const waiting = [];
  readline.createInterface({ input: child.stdout }).on("line", (line) => waiting.shift()?.(JSON.parse(line)));
  const next = () => new Promise((resolve) => waiting.push(resolve));
  const { port, httpPort, token } = await next();
  // why: a Check answers grpc-status 0 for a denial too, so the allow is checked to be one (fetch would drop the Host header)
  const status = await new Promise((resolve, reject) => {
    http.get({ host: "127.0.0.1", port: httpPort, path: "/ext-authz/envoy/api/payouts?page=2", headers: { authorization: `Bearer ${token}`, host: "api.example.com" } }, (response) => {
      response.resume();
      resolve(response.statusCode);
    }).on("error", reject);
  });
  if (status !== 200) throw new Error(`the bench token was not allowed: ${status}`);
  const cpuMicros = async () => {
    const answer = next();
    child.stdin.write("cpu\n");
    return (await answer).cpuMicros;
  };
  return { child, port, httpPort, allow: checkBody(token), deny: checkBody(null), cpuMicros };
}

/**
 * The child's side of {@link startServerChild}: makes an operator token,
 * prints the ports and the token, answers each stdin line with this
 * process's CPU time, and stops the server (removing `dataDir`) when stdin ends.
 */
export async function serveCpuOnStdin(server, dataDir, createToken) {
  const fields = { tenant: "acme", workspace: "main", environment: "production", type: "service", actor: "bench", name: "bench", role: "tenant_operator" };
  const { token } = await createToken(server.store, server.policy(), fields, Date.now());
  process.stdout.write(`${JSON.stringify({ port: server.grpcPort, httpPort: server.httpPort, token })}\n`);
  readline.createInterface({ input: process.stdin }).on("line", () => {
    const usage = process.cpuUsage();
    process.stdout.write(`${JSON.stringify({ cpuMicros: usage.user + usage.system })}\n`);
  });
  const stop = async () => {
    await server.close(100);
    fs.rmSync(dataDir, { recursive: true, force: true });
    process.exit(0);
  };
  process.stdin.on("end", stop);
  for (const signal of ["SIGTERM", "SIGINT"]) process.on(signal, stop);
}

/** Sends `count` Check calls of one body; resolves to the server's CPU microseconds per call. */
export async function runBatch(server, body, count) {
  const sessions = Array.from({ length: CONNECTIONS }, () => http2.connect(`http://127.0.0.1:${server.port}`));
  await Promise.all(sessions.map((session) => new Promise((resolve) => session.once("connect", resolve))));
  let sent = 0;
  let answered = 0;
  const before = await server.cpuMicros();
  const sendOne = (session) =>
    new Promise((resolve) => {
      const stream = session.request({ ":method": "POST", ":path": "/envoy.service.auth.v3.Authorization/Check", "content-type": "application/grpc", te: "trailers" });
      stream.on("trailers", (trailers) => {
        if (trailers["grpc-status"] === "0") answered++;
      });
      stream.on("data", () => undefined);
      stream.on("close", resolve);
      stream.on("error", () => undefined);
      stream.end(body);
    });
  await Promise.all(
    sessions.flatMap((session) =>
      Array.from({ length: STREAMS_PER_CONNECTION }, async () => {
        while (sent < count) {
          sent++;
          await sendOne(session);
        }
      }),
    ),
  );
  const after = await server.cpuMicros();
  for (const session of sessions) session.close();
  if (answered !== count) throw new Error(`only ${answered} of ${count} Check calls answered`);
  return (after - before) / count;
}

/**
 * The framed Envoy `CheckRequest` of the benches, from the build: a GET of
 * /api/payouts on api.example.com with `Bearer token`, or no credential when
 * `token` is null.
 */
export async function checkBodyEncoder(repo) {
  const { create, toBinary } = await import(pathToFileURL(path.join(repo, "node_modules/@bufbuild/protobuf/dist/esm/index.js")).href);
  const { CheckRequestSchema } = await import(pathToFileURL(path.join(repo, "dist/src/gen/envoy/service/auth/v3/external_auth_pb.js")).href);
  return (token) => {
    const headers = { "user-agent": "curl/8", accept: "*/*", ...(token === null ? {} : { authorization: `Bearer ${token}` }) };
    const message = create(CheckRequestSchema, {
      attributes: {
        source: { address: { address: { case: "socketAddress", value: { address: "203.0.113.10" } } } },
        request: { http: { method: "GET", path: "/api/payouts?page=2", host: "api.example.com", headers } },
      },
    });
    const bytes = toBinary(CheckRequestSchema, message);
    const framed = Buffer.alloc(5 + bytes.length);
    framed.writeUInt32BE(bytes.length, 1);
    framed.set(bytes, 5);
    return framed;
  };
}

/**
 * Warms each server up, then runs `rounds` rounds of one allow and one deny
 * batch per server, rotating which server goes first so that the machine's
 * drift cancels out. Returns, per `"<mode> <allow|deny>"`, the median, min
 * and max CPU microseconds per request and the median of the per-round
 * ratios to the server of `baseMode` (under `ratioKey`).
 */
export async function measureRounds(servers, { rounds, perBatch, baseMode, ratioKey }) {
  const figures = Object.fromEntries(servers.flatMap((server) => ["allow", "deny"].map((kind) => [`${server.mode} ${kind}`, []])));
  for (const server of servers) {
    await runBatch(server, server.allow, 2_000);
    await runBatch(server, server.deny, 2_000);
  }
  for (let round = 0; round < rounds; round++) {
    const order = servers.map((_, i) => servers[(i + round) % servers.length]);
    for (const server of order) {
      figures[`${server.mode} allow`].push(await runBatch(server, server.allow, perBatch));
      figures[`${server.mode} deny`].push(await runBatch(server, server.deny, perBatch));
    }
  }
  const round2 = (x) => Math.round(x * 100) / 100;
  const rows = {};
  for (const server of servers) {
    for (const kind of ["allow", "deny"]) {
      const micros = figures[`${server.mode} ${kind}`];
      const base = figures[`${baseMode} ${kind}`];
      rows[`${server.mode} ${kind}`] = {
        medianMicrosPerRequest: round2(median(micros)),
        min: round2(Math.min(...micros)),
        max: round2(Math.max(...micros)),
        [ratioKey]: round2(median(micros.map((value, i) => value / base[i]))),
      };
    }
  }
  return rows;
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}
