#!/usr/bin/env node
/**
 * The held-open-stream attack against one built checkout's real server: 3
 * connections x 250 `Check` streams, each sending a length prefix of ~1 MiB
 * and ~1 MiB of it, never ending. Meanwhile a probe sends a normal `Check`
 * allow every 20 ms. Prints the server's RSS (from /proc) before, at its peak,
 * after 8 s of holding, and 2 s after the attackers disconnect, with how many
 * streams were refused (RESOURCE_EXHAUSTED, or reset by HTTP/2 error code) and
 * how the probe fared.
 *
 * The server is the one `bench/ab-checkouts.mjs --serve` starts (a temporary
 * store, the checkout's bundled policies). Loopback only; bounded to ~11 s.
 *
 * Run: `node bench/held-open-attack.mjs DIR` (DIR: a checkout with node_modules and a build).
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import * as http2 from "node:http2";
import path from "node:path";
import readline from "node:readline";
import { pathToFileURL } from "node:url";

const CONNECTIONS = 3;
const STREAMS_PER_CONNECTION = 250;
const MESSAGE_BYTES = 1024 * 1024 - 16;
const HOLD_MS = 8_000;

const dir = process.argv[2] === undefined ? undefined : path.resolve(process.argv[2]);
if (dir === undefined) {
  process.stderr.write("usage: node bench/held-open-attack.mjs DIR\n");
  process.exit(2);
}
const { create, toBinary } = await import(pathToFileURL(path.join(dir, "node_modules/@bufbuild/protobuf/dist/esm/index.js")).href);
const { CheckRequestSchema } = await import(pathToFileURL(path.join(dir, "dist/src/gen/envoy/service/auth/v3/external_auth_pb.js")).href);

const serverScript = new URL("./ab-checkouts.mjs", import.meta.url).pathname;
const child = spawn(process.execPath, ["--max-semi-space-size=8", serverScript, "--serve", dir], { stdio: ["pipe", "pipe", "inherit"] });
const { port, token } = JSON.parse(await new Promise((resolve) => readline.createInterface({ input: child.stdout }).once("line", resolve)));
let exited = null;
child.on("exit", (code, signal) => (exited = signal ?? code));
// 0 once the server has exited
function rssMiB() {
  try {
    return Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${child.pid}/status`, "utf8"))[1]) / 1024;
  } catch {
    return 0;
  }
}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const CHECK = { ":method": "POST", ":path": "/envoy.service.auth.v3.Authorization/Check", "content-type": "application/grpc", te: "trailers" };

const request = create(CheckRequestSchema, {
  attributes: {
    source: { address: { address: { case: "socketAddress", value: { address: "203.0.113.10" } } } },
    request: { http: { method: "GET", path: "/api/payouts", host: "api.example.com", headers: { authorization: `Bearer ${token}` } } },
  },
});
const bytes = toBinary(CheckRequestSchema, request);
const goodCall = Buffer.alloc(5 + bytes.length);
goodCall.writeUInt32BE(bytes.length, 1);
goodCall.set(bytes, 5);

let probeAnswered = 0;
let probeFailed = 0;
let probing = true;
const probeSession = http2.connect(`http://127.0.0.1:${port}`);
probeSession.on("error", () => undefined);
const probe = (async () => {
  while (probing) {
    // A server that died (as one without the guards does when the attackers disconnect) fails every probe after.
    if (probeSession.destroyed) {
      probeFailed++;
      await sleep(20);
      continue;
    }
    await new Promise((resolve) => {
      const stream = probeSession.request(CHECK);
      let ok = false;
      stream.on("trailers", (trailers) => (ok = trailers["grpc-status"] === "0"));
      stream.on("data", () => undefined);
      stream.on("error", () => undefined);
      stream.on("close", () => {
        if (ok) probeAnswered++;
        else probeFailed++;
        resolve();
      });
      stream.setTimeout(2_000, () => stream.close());
      stream.end(goodCall);
    });
    await sleep(20);
  }
})();

await sleep(500);
const before = rssMiB();
let peak = before;
const sampler = setInterval(() => (peak = Math.max(peak, rssMiB())), 50);
const prefix = Buffer.alloc(5);
prefix.writeUInt32BE(MESSAGE_BYTES, 1);
const body = Buffer.alloc(MESSAGE_BYTES - 1_008);
let refused = 0;
// Streams the server reset while the attack held, by HTTP/2 error code (11, ENHANCE_YOUR_CALM, is node:http2's own session memory bound).
const resetWhileHeld = {};
let holding = true;
const attackers = [];
for (let c = 0; c < CONNECTIONS; c++) {
  const session = http2.connect(`http://127.0.0.1:${port}`, { settings: { initialWindowSize: 2 ** 31 - 1 } });
  session.on("error", () => undefined);
  attackers.push(session);
  for (let i = 0; i < STREAMS_PER_CONNECTION; i++) {
    const stream = session.request(CHECK);
    stream.on("error", () => undefined);
    stream.on("data", () => undefined);
    const countRefusal = (headers) => {
      if (headers["grpc-status"] === "8") refused++;
    };
    stream.on("response", countRefusal);
    stream.on("trailers", countRefusal);
    stream.on("close", () => {
      if (holding && stream.rstCode !== 0) resetWhileHeld[stream.rstCode] = (resetWhileHeld[stream.rstCode] ?? 0) + 1;
    });
    stream.write(prefix);
    stream.write(body);
  }
}
await sleep(HOLD_MS);
const held = rssMiB();
holding = false;
clearInterval(sampler);
for (const session of attackers) session.destroy();
await sleep(2_000);
const afterDisconnect = rssMiB();
probing = false;
await probe;
probeSession.close();
child.stdin.end();
console.log(
  JSON.stringify({
    checkout: dir,
    serverExited: exited,
    rssBeforeMiB: Math.round(before),
    rssPeakMiB: Math.round(peak),
    rssHeldMiB: Math.round(held),
    rssAfterDisconnectMiB: Math.round(afterDisconnect),
    streamsRefusedResourceExhausted: refused,
    streamsResetWhileHeld: resetWhileHeld,
    probeChecksAnswered: probeAnswered,
    probeChecksFailed: probeFailed,
  }),
);
