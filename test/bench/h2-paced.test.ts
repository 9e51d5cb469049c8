/**
 * The bench's HTTP/2 load generator (`bench/h2-paced.c`) against a small
 * node:http2 gRPC server that records what arrives: kinds in their weights,
 * requests spread over the run at a rate rather than sent at once, the
 * in-flight bound in closed loop, and answers other than grpc-status 0
 * counted as failures. Needs a C compiler and nghttp2's headers
 * (`libnghttp2-dev`); `.ci/install-system-packages` installs them.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildPacedLoader, runPaced, type PacedJob } from "../../bench/load.js";
import { frame } from "../../src/transport/grpc-server.js";

const canBuild =
  spawnSync("cc", ["--version"], { stdio: "ignore" }).status === 0 &&
  spawnSync("sh", ["-c", "echo '#include <nghttp2/nghttp2.h>' | cc -E -x c - >/dev/null"], { stdio: "ignore" }).status === 0;

/** A request's kind is its message's one byte; kind 3 answers grpc-status 7, the others 0. */
interface Recorder {
  readonly arrivals: { kind: number; atMs: number }[];
  maxInFlight: number;
}

function startRecordingServer(recorder: Recorder): Promise<{ server: http2.Http2Server; origin: string }> {
  let inFlight = 0;
  const server = http2.createServer();
  server.on("stream", (stream) => {
    inFlight++;
    recorder.maxInFlight = Math.max(recorder.maxInFlight, inFlight);
    const chunks: Buffer[] = [];
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("close", () => inFlight--);
    stream.on("end", () => {
      const kind = Buffer.concat(chunks)[5]!;
      recorder.arrivals.push({ kind, atMs: performance.now() });
      // Answer a little later, so that in closed loop several requests are in flight at once.
      setTimeout(() => {
        if (stream.destroyed) return;
        stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
        stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": kind === 3 ? "7" : "0" }));
        stream.end(frame(new Uint8Array(0)));
      }, 2);
    });
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve({ server, origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}` })));
}

describe.runIf(canBuild)("bench/h2-paced.c", () => {
  let dir: string;
  let binary: string;
  let bodies: string[];
  const recorder: Recorder = { arrivals: [], maxInFlight: 0 };
  let server: http2.Http2Server;
  let origin: string;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "portcullis-h2-paced-"));
    binary = buildPacedLoader(path.join(dir, "h2-paced"));
    bodies = [1, 2, 3].map((kind) => {
      const file = path.join(dir, `kind-${kind}.bin`);
      writeFileSync(file, frame(new Uint8Array([kind])));
      return file;
    });
    ({ server, origin } = await startRecordingServer(recorder));
  });

  afterAll(async () => {
    await new Promise((resolve) => server?.close(resolve));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** Runs the built binary against the recording server, from a clean record. */
  const paced = (connections: number, load: PacedJob["load"], kinds: readonly (readonly [kind: number, weight: number])[], seconds: number) => {
    recorder.arrivals.length = 0;
    recorder.maxInFlight = 0;
    const jobBodies = kinds.map(([kind, weight]) => ({ file: bodies[kind - 1]!, weight }));
    return runPaced({ origin, path: "/x.Y/Z", connections, load, bodies: jobBodies }, seconds, { binary, core: 0 });
  };

  it("sends each kind in its weight, spread over the run at the rate", async () => {
    const result = await paced(2, { rate: 500 }, [[1, 3], [2, 1]], 0.4);
    expect(result).toMatchObject({ requests: 200, failed: 0, perJob: [150, 50] });
    expect(recorder.arrivals.filter((a) => a.kind === 1)).toHaveLength(150);
    expect(recorder.arrivals.filter((a) => a.kind === 2)).toHaveLength(50);
    // Request 199 is due 398 ms after request 0: all at once would take a few ms.
    const spanMs = recorder.arrivals.at(-1)!.atMs - recorder.arrivals[0]!.atMs;
    expect(spanMs).toBeGreaterThan(300);
    expect(result.p50Ms).toBeGreaterThan(1.5); // the server's 2 ms pause is inside every latency
  });

  it("counts an answer other than grpc-status 0 as failed, not done", async () => {
    const result = await paced(1, { rate: 200 }, [[1, 1], [3, 1]], 0.2);
    expect(result).toMatchObject({ requests: 20, failed: 20, perJob: [20, 0] });
    expect(recorder.arrivals).toHaveLength(40);
  });

  it("keeps at most streams × connections in flight in closed loop", async () => {
    const result = await paced(2, { streamsPerConnection: 3 }, [[1, 1]], 0.3);
    expect(result.failed).toBe(0);
    expect(result.requests).toBeGreaterThan(12);
    expect(recorder.maxInFlight).toBe(6);
  });
});
