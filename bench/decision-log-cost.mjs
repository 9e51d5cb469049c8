#!/usr/bin/env node
/**
 * What the decision log costs Envoy `Check`, in one run: three servers of this
 * checkout, each in a process of its own pinned to core 0 (no log, the
 * `denials` mode, the `all` mode, both writing to a file in the temporary
 * folder), answer the same allows (a cached token) and denials (no token) from
 * this client on core 1. The figure is the server's CPU time per request (user
 * + system, `process.cpuUsage` before and after a batch); rounds rotate which
 * server goes first, and each round gives a ratio to the no-log server of the
 * same round, so the machine's drift cancels out. Medians are quoted.
 *
 * Needs a build (`npm run build`) and `taskset` (util-linux).
 *
 * Run: `node bench/decision-log-cost.mjs [rounds] [requests per batch]`
 * (default 10 rounds of 10,000, 4 connections x 16 streams); prints one JSON line.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { checkBodyEncoder, measureRounds, serveCpuOnStdin, startServerChild } from "./check-cpu.mjs";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const MODES = ["none", "denials", "all"];

if (process.argv[2] === "--serve") await serve(process.argv[3]);
else await compare();

/** Child mode: a server with the decision log in `mode` (or none); prints its ports and a token, then answers "cpu" lines. */
async function serve(mode) {
  const load = (file) => import(pathToFileURL(path.join(REPO, file)).href);
  const { startServer } = await load("dist/src/main.js");
  const { createToken } = await load("dist/src/service/tokens.js");
  const { pino } = await load("node_modules/pino/pino.js");
  process.env.PORTCULLIS_TOKEN_SECRET = "5e".repeat(32);
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-dlog-bench-"));
  const logFile = path.join(dataDir, "decisions.jsonl");
  const decisionLog = mode === "none" ? {} : { decisionLog: { sink: { kind: "file", path: logFile }, mode, sampleRate: 0, maxFileBytes: 1024 ** 3, maxFiles: 1, capacity: 10_000 } };
  const server = await startServer(
    { host: "127.0.0.1", grpcPort: 0, httpPort: 0, policyDir: path.join(REPO, "policies"), dataDir, logLevel: "silent", ...decisionLog },
    pino({ level: "silent" }),
  );
  await serveCpuOnStdin(server, dataDir, createToken);
}

async function compare() {
  const rounds = Number(process.argv[2] ?? 10);
  const perBatch = Number(process.argv[3] ?? 10_000);
  const checkBody = await checkBodyEncoder(REPO);

  const servers = [];
  for (const mode of MODES) servers.push({ mode, ...(await startServerChild(fileURLToPath(import.meta.url), [mode], checkBody)) });
  try {
    const rows = await measureRounds(servers, { rounds, perBatch, baseMode: "none", ratioKey: "medianRoundRatioToNoLog" });
    const drops = {};
    for (const server of servers) drops[server.mode] = await droppedRecords(server);
    console.log(JSON.stringify({ rounds, perBatch, rows, droppedRecords: drops }));
  } finally {
    for (const server of servers) server.child.stdin.end();
  }
}

/** The server's count of dropped decision log records, from /metrics. */
async function droppedRecords(server) {
  const text = await (await fetch(`http://127.0.0.1:${server.httpPort}/metrics`)).text();
  let total = 0;
  for (const match of text.matchAll(/^portcullis_decision_log_dropped_total\{reason="[a-z_]+"\} (\d+)$/gm)) total += Number(match[1]);
  return total;
}

