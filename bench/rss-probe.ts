/**
 * Child process of the RSS row: starts the real server over a prepared data
 * folder, runs one decision per token in a file through its authorizer, and
 * prints its RSS before and after as one JSON line.
 *
 * Usage: node --expose-gc dist/bench/rss-probe.js DATA_DIR TOKENS_FILE POLICY_DIR
 * (with PORTCULLIS_TOKEN_SECRET set to the store's secret).
 */
import { readFileSync } from "node:fs";
import { pino } from "pino";
import { startServer } from "../src/main.js";
import { input } from "./fixtures.js";
import { statusMiB } from "./proc-cpu.js";

const [dataDir, tokensFile, policyDir] = process.argv.slice(2);
if (dataDir === undefined || tokensFile === undefined || policyDir === undefined) {
  process.stderr.write("usage: rss-probe DATA_DIR TOKENS_FILE POLICY_DIR\n");
  process.exit(2);
}
const tokens = readFileSync(tokensFile, "utf8").split("\n").filter((line) => line !== "");
const server = await startServer({ host: "127.0.0.1", grpcPort: 0, httpPort: 0, policyDir, dataDir, logLevel: "silent" }, pino({ level: "silent" }));
try {
  const startedMiB = statusMiB(process.pid, "VmRSS");
  let allowed = 0;
  for (let i = 0; i < tokens.length; i++) {
    if ((await server.authorize(input({ token: tokens[i]! }))).decision.allowed) allowed++;
    // A server yields between requests, so its timers (last-used batches) run; a synchronous burst would not.
    if (i % 1_000 === 999) await new Promise((resolve) => setImmediate(resolve));
  }
  const afterMiB = statusMiB(process.pid, "VmRSS");
  // Settled: pending batches written and garbage collected, so what is left is what the cache and store hold.
  // Two collections with pauses: V8 hands freed pages back to the OS from a background
  // thread, so RSS read right after one gc() still counts pages about to be unmapped.
  for (let round = 0; round < 2; round++) {
    await new Promise((resolve) => setTimeout(resolve, 300));
    (globalThis as { gc?: () => void }).gc?.();
  }
  await new Promise((resolve) => setTimeout(resolve, 300));
  const settledMiB = statusMiB(process.pid, "VmRSS");
  const peakMiB = statusMiB(process.pid, "VmHWM");
  process.stdout.write(`${JSON.stringify({ startedMiB, afterMiB, settledMiB, peakMiB, allowed, decisions: tokens.length })}\n`);
} finally {
  await server.close(100);
}
