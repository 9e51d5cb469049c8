#!/usr/bin/env node
/**
 * Interleaved A/B of the Envoy `Check` allow between two built checkouts of
 * Portcullis (say the commit before a change and the change), over loopback:
 * each checkout's real server runs in a process of its own pinned to core 0,
 * this client sends from core 1, and the figure is the server's CPU time per
 * request (user + system, `process.cpuUsage` read before and after a batch).
 * Rounds alternate which server goes first, and each round gives one B/A
 * ratio, so the machine's drift between rounds cancels out; the median of
 * those ratios is the figure to quote.
 *
 * Each checkout needs `node_modules` and a build (`npm ci`, or `npm run
 * build`), for example with `git worktree add --detach /tmp/before <commit>`.
 *
 * Run: `node bench/ab-checkouts.mjs A_DIR B_DIR [rounds] [requests per round]`
 * (default 12 rounds of 10,000, 4 connections x 16 streams); prints one JSON line.
 * Needs `taskset` (util-linux).
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { pathToFileURL } from "node:url";
import { runBatch } from "./check-cpu.mjs";


if (process.argv[2] === "--serve") await serve(path.resolve(process.argv[3]));
else await compare();

/** Child mode: one checkout's server with a temporary store; prints its port and a token, then answers "cpu" lines. */
async function serve(dir) {
  const load = (file) => import(pathToFileURL(path.join(dir, file)).href);
  const { startServer } = await load("dist/src/main.js");
  const { createToken } = await load("dist/src/service/tokens.js");
  const { pino } = await load("node_modules/pino/pino.js");
  process.env.PORTCULLIS_TOKEN_SECRET = "5e".repeat(32);
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-ab-"));
  const server = await startServer(
    { host: "127.0.0.1", grpcPort: 0, httpPort: 0, policyDir: path.join(dir, "policies"), dataDir, logLevel: "silent" },
    pino({ level: "silent" }),
  );
  const fields = { tenant: "acme", workspace: "main", environment: "production", type: "service", actor: "ab", name: "ab", role: "tenant_operator" };
  // why: await, so that checkouts from before and after token creation became asynchronous both work
  const { token } = await createToken(server.store, server.policy(), fields, Date.now());
  process.stdout.write(`${JSON.stringify({ port: server.grpcPort, token })}\n`);
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

async function compare() {
  const [aDir, bDir] = [process.argv[2], process.argv[3]].map((dir) => (dir === undefined ? undefined : path.resolve(dir)));
  if (aDir === undefined || bDir === undefined) {
    process.stderr.write("usage: node bench/ab-checkouts.mjs A_DIR B_DIR [rounds] [requests per round]\n");
    process.exit(2);
  }
  const rounds = Number(process.argv[4] ?? 12);
  const perRound = Number(process.argv[5] ?? 10_000);
  // The client encodes with B's generated Envoy types: the wire format is Envoy's, the same for both.
  const { create, toBinary } = await import(pathToFileURL(path.join(bDir, "node_modules/@bufbuild/protobuf/dist/esm/index.js")).href);
  const { CheckRequestSchema } = await import(pathToFileURL(path.join(bDir, "dist/src/gen/envoy/service/auth/v3/external_auth_pb.js")).href);
  const checkBody = (token) => {
    const message = create(CheckRequestSchema, {
      attributes: {
        source: { address: { address: { case: "socketAddress", value: { address: "203.0.113.10" } } } },
        request: { http: { method: "GET", path: "/api/payouts", host: "api.example.com", headers: { authorization: `Bearer ${token}`, "user-agent": "curl/8", accept: "*/*" } } },
      },
    });
    const bytes = toBinary(CheckRequestSchema, message);
    const framed = Buffer.alloc(5 + bytes.length);
    framed.writeUInt32BE(bytes.length, 1);
    framed.set(bytes, 5);
    return framed;
  };

  const a = await startServer(aDir, checkBody);
  const b = await startServer(bDir, checkBody);
  try {
    await runBatch(a, a.body, 2_000);
    await runBatch(b, b.body, 2_000);
    const aMicros = [];
    const bMicros = [];
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? [a, b] : [b, a];
      for (const server of order) (server === a ? aMicros : bMicros).push(await runBatch(server, server.body, perRound));
    }
    const ratios = aMicros.map((micros, i) => bMicros[i] / micros);
    const round1 = (x) => Math.round(x * 10) / 10;
    console.log(
      JSON.stringify({
        a: aDir,
        b: bDir,
        aMicrosPerRequest: aMicros.map(round1),
        bMicrosPerRequest: bMicros.map(round1),
        aMedian: round1(median(aMicros)),
        bMedian: round1(median(bMicros)),
        ratioOfMedians: Math.round((median(bMicros) / median(aMicros)) * 1000) / 1000,
        medianRoundRatio: Math.round(median(ratios) * 1000) / 1000,
      }),
    );
  } finally {
    a.child.stdin.end();
    b.child.stdin.end();
  }
}

async function startServer(dir, checkBody) {
  const child = spawn("taskset", ["-c", "0", process.execPath, "--max-semi-space-size=8", new URL(import.meta.url).pathname, "--serve", dir], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  const waiting = [];
  readline.createInterface({ input: child.stdout }).on("line", (line) => waiting.shift()?.(JSON.parse(line)));
  const next = () => new Promise((resolve) => waiting.push(resolve));
  const { port, token } = await next();
  const cpuMicros = async () => {
    const answer = next();
    child.stdin.write("cpu\n");
    return (await answer).cpuMicros;
  };
  return { child, port, body: checkBody(token), cpuMicros };
}

function median(values) {
  const sorted = [...values].sort((x, y) => x - y);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}
