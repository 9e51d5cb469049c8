#!/usr/bin/env node
/**
 * What configured webhooks cost Envoy `Check`, in one run: two servers of this
 * checkout, each in a process of its own pinned to core 0 (the example policy
 * set without webhooks, and the same set with one endpoint subscribed to `*`,
 * a receiver in this process answering 204; decision log off in both), answer
 * the same allows (a cached token) and denials (no token) from this client on
 * core 1. The figure is the server's CPU time per request (user
 * + system, `process.cpuUsage` before and after a batch); rounds rotate which
 * server goes first, and each round gives a ratio to the no-log server of the
 * same round, so the machine's drift cancels out. Medians are quoted.
 *
 * Needs a build (`npm run build`) and `taskset` (util-linux).
 *
 * Webhooks are delivered off the decision path, so the two should be within
 * noise: a denial flood is one security event row, and one webhook, per minute.
 *
 * Run: `node bench/webhooks-cost.mjs [rounds] [requests per batch]`
 * (default 10 rounds of 10,000, 4 connections x 16 streams); prints one JSON line.
 */
import fs from "node:fs";
import * as http from "node:http";
import os from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { checkBodyEncoder, measureRounds, serveCpuOnStdin, startServerChild } from "./check-cpu.mjs";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const MODES = ["none", "webhooks"];
const RECEIVED = { count: 0 };

if (process.argv[2] === "--serve") await serve(process.argv[3], process.argv[4]);
else await compare();

/** Child mode: a server of the example policy set, with one webhook endpoint at `receiverUrl` in mode `webhooks`; prints its ports and a token, then answers "cpu" lines. */
async function serve(mode, receiverUrl) {
  const load = (file) => import(pathToFileURL(path.join(REPO, file)).href);
  const { startServer } = await load("dist/src/main.js");
  const { createToken } = await load("dist/src/service/tokens.js");
  const { pino } = await load("node_modules/pino/pino.js");
  process.env.PORTCULLIS_TOKEN_SECRET = "5e".repeat(32);
  process.env.PORTCULLIS_BENCH_WEBHOOK_SECRET = "bench-webhook-secret-0123456789";
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-webhook-bench-"));
  const policyDir = path.join(dataDir, "policies");
  fs.cpSync(path.join(REPO, "policies"), policyDir, { recursive: true });
  if (mode === "webhooks") {
    const file = path.join(policyDir, "policy-set.json");
    const settings = JSON.parse(fs.readFileSync(file, "utf8"));
    settings.policySet.webhooks = [{ id: "bench", url: receiverUrl, events: ["*"], secret: "env:PORTCULLIS_BENCH_WEBHOOK_SECRET" }];
    fs.writeFileSync(file, JSON.stringify(settings));
  }
  const server = await startServer(
    { host: "127.0.0.1", grpcPort: 0, httpPort: 0, policyDir, dataDir, logLevel: "silent", watchPolicies: false, decisionLog: undefined },
    pino({ level: "silent" }),
  );
  await serveCpuOnStdin(server, dataDir, createToken);
}

async function compare() {
  const rounds = Number(process.argv[2] ?? 10);
  const perBatch = Number(process.argv[3] ?? 10_000);
  const checkBody = await checkBodyEncoder(REPO);

  const receiver = http.createServer((request, response) => {
    request.resume();
    request.on("end", () => {
      RECEIVED.count++;
      response.writeHead(204).end();
    });
  });
  await new Promise((resolve) => receiver.listen(0, "127.0.0.1", resolve));
  const receiverUrl = `http://127.0.0.1:${receiver.address().port}/hook`;
  const servers = [];
  for (const mode of MODES) servers.push({ mode, ...(await startServerChild(fileURLToPath(import.meta.url), [mode, receiverUrl], checkBody)) });
  try {
    const rows = await measureRounds(servers, { rounds, perBatch, baseMode: "none", ratioKey: "medianRoundRatioToNone" });
    const deliveries = {};
    for (const server of servers) deliveries[server.mode] = await webhookDeliveries(server);
    console.log(JSON.stringify({ rounds, perBatch, rows, webhookDeliveries: deliveries, webhooksReceived: RECEIVED.count }));
  } finally {
    for (const server of servers) server.child.stdin.end();
    receiver.close();
  }
}

/** The server's webhook delivery counts by outcome, from /metrics. */
async function webhookDeliveries(server) {
  const text = await (await fetch(`http://127.0.0.1:${server.httpPort}/metrics`)).text();
  const counts = {};
  for (const match of text.matchAll(/^portcullis_webhook_deliveries_total\{outcome="([a-z_]+)"\} (\d+)$/gm)) counts[match[1]] = Number(match[2]);
  return counts;
}

