/**
 * The gRPC server against clients that misbehave on purpose: each case is one
 * finding of issue 13, reproduced with raw HTTP/2 on loopback.
 */
import * as http2 from "node:http2";
import * as grpc from "@grpc/grpc-js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { GrpcStatus, createGrpcServer, frame, type GrpcMethod, type GrpcServer } from "../../src/transport/grpc-server.js";

const MAX = 1024 * 1024;
const methods = new Map<string, GrpcMethod>([
  ["/test.Echo/Echo", { kind: "unary", handle: (request) => Buffer.concat([Buffer.from("echo:"), request]) }],
  ["/test.Echo/Later", { kind: "unary", handle: (request) => new Promise<Buffer>((resolve) => setTimeout(() => resolve(request), 20)) }],
]);

// An exception thrown from a node:http2 callback would kill a real server; here it is recorded so that the test fails instead of the worker.
const uncaught: unknown[] = [];
const record = (error: unknown): void => void uncaught.push(error);

let server: GrpcServer;
let address: string;
const sessions = new Set<http2.ClientHttp2Session>();

beforeAll(async () => {
  process.on("uncaughtExceptionMonitor", record);
  server = createGrpcServer({ methods, maxMessageBytes: MAX, limits: { idleTimeoutMs: 400, maxBufferedBytesPerSession: 4 * MAX, maxBufferedBytes: 8 * MAX } });
  address = `127.0.0.1:${await server.listen("127.0.0.1", 0)}`;
});
afterAll(async () => {
  await server.close(500);
  process.off("uncaughtExceptionMonitor", record);
});
afterEach(() => {
  for (const session of sessions) session.destroy();
  sessions.clear();
});

function connect(): http2.ClientHttp2Session {
  const session = http2.connect(`http://${address}`);
  session.on("error", () => undefined);
  sessions.add(session);
  return session;
}

interface Outcome {
  readonly status: number | undefined;
  readonly grpcStatus: number | undefined;
  readonly message: string | undefined;
  readonly body: Buffer;
  readonly afterMs: number;
}

/** Opens a call, writes `chunks` without ending it (unless `end`), and resolves with how it ended. */
function open(session: http2.ClientHttp2Session, path: string, chunks: Buffer[], options: { end?: boolean; headers?: http2.OutgoingHttpHeaders } = {}): { stream: http2.ClientHttp2Stream; done: Promise<Outcome> } {
  const started = Date.now();
  const stream = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers", ...options.headers });
  stream.on("error", () => undefined);
  let headers: http2.IncomingHttpHeaders = {};
  let trailers: http2.IncomingHttpHeaders = {};
  const body: Buffer[] = [];
  stream.on("response", (h) => (headers = h));
  stream.on("trailers", (t) => (trailers = t));
  stream.on("data", (chunk: Buffer) => body.push(chunk));
  for (const chunk of chunks) stream.write(chunk);
  if (options.end === true) stream.end();
  const done = new Promise<Outcome>((resolve) =>
    stream.on("close", () => {
      const source = trailers["grpc-status"] !== undefined ? trailers : headers;
      const message = source["grpc-message"];
      resolve({
        status: headers[":status"] as number | undefined,
        grpcStatus: source["grpc-status"] === undefined ? undefined : Number(source["grpc-status"]),
        message: typeof message === "string" ? decodeURIComponent(message) : undefined,
        body: Buffer.concat(body),
        afterMs: Date.now() - started,
      });
    }),
  );
  return { stream, done };
}

/** A length prefix announcing `length` bytes, uncompressed. */
function prefix(length: number): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(length, 1);
  return head;
}

function echo(text: string): Promise<{ error: grpc.ServiceError | null; response: Buffer | undefined }> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  const bytes = (b: Buffer): Buffer => b;
  return new Promise((resolve) =>
    client.makeUnaryRequest("/test.Echo/Echo", bytes, bytes, Buffer.from(text), (error, response) => {
      client.close();
      resolve({ error, response });
    }),
  );
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("finding 1: a stream reset or destroyed mid-message never reaches an answer on a dead stream", () => {
  it("survives two partial calls on one session destroyed 300 ms later, and keeps answering", async () => {
    uncaught.length = 0;
    const session = connect();
    const partial = Buffer.concat([prefix(100), Buffer.from("abc")]);
    const calls = [open(session, "/test.Echo/Echo", [partial]), open(session, "/test.Echo/Echo", [partial])];
    await sleep(300);
    session.destroy();
    await Promise.all(calls.map((call) => call.done));
    await sleep(50);
    expect(uncaught).toEqual([]);
    expect((await echo("alive")).response?.toString()).toBe("echo:alive");
  });

  it.each([
    ["reset with CANCEL", (stream: http2.ClientHttp2Stream) => stream.close(http2.constants.NGHTTP2_CANCEL)],
    ["reset with INTERNAL_ERROR", (stream: http2.ClientHttp2Stream) => stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR)],
    ["destroyed", (stream: http2.ClientHttp2Stream) => stream.destroy()],
  ])("survives a partial call %s, at every point, and keeps answering", async (_name, kill) => {
    uncaught.length = 0;
    for (const delayMs of [0, 1, 5, 20]) {
      const session = connect();
      const call = open(session, "/test.Echo/Echo", [Buffer.concat([prefix(100), Buffer.from("abc")])]);
      await sleep(delayMs);
      kill(call.stream);
      await call.done;
      // A whole message, reset just as the answer is due.
      const racing = open(session, "/test.Echo/Later", [frame(Buffer.from("x"))], { end: true });
      await sleep(delayMs);
      kill(racing.stream);
      await racing.done;
      session.destroy();
    }
    await sleep(50);
    expect(uncaught).toEqual([]);
    expect((await echo("alive")).response?.toString()).toBe("echo:alive");
  });
});

describe("finding 2: an unfinished request is bounded in time and in bytes", () => {
  it("meets grpc-timeout from the call's start, while its message is still arriving (DEADLINE_EXCEEDED)", async () => {
    const call = open(connect(), "/test.Echo/Echo", [Buffer.concat([prefix(100), Buffer.from("abc")])], { headers: { "grpc-timeout": "150m" } });
    const outcome = await call.done;
    expect(outcome.grpcStatus).toBe(GrpcStatus.DEADLINE_EXCEEDED);
    expect(outcome.afterMs).toBeLessThan(390);
  });

  it("refuses a declared length over the limit as soon as the prefix is read (RESOURCE_EXHAUSTED), without waiting for the end", async () => {
    const call = open(connect(), "/test.Echo/Echo", [Buffer.concat([prefix(MAX + 1), Buffer.from("abc")])]);
    const outcome = await call.done;
    expect(outcome).toMatchObject({ grpcStatus: GrpcStatus.RESOURCE_EXHAUSTED, message: `the request message is larger than ${MAX} bytes` });
    expect(outcome.afterMs).toBeLessThan(300);
    // The prefix split across frames counts too.
    const split = open(connect(), "/test.Echo/Echo", [prefix(MAX + 1).subarray(0, 2), prefix(MAX + 1).subarray(2)]);
    expect((await split.done).grpcStatus).toBe(GrpcStatus.RESOURCE_EXHAUSTED);
  });

  it("cuts a call that stops sending mid-message after the idle timeout", async () => {
    const call = open(connect(), "/test.Echo/Echo", [Buffer.concat([prefix(100), Buffer.from("abc")])]);
    const outcome = await call.done;
    expect(outcome.grpcStatus).toBe(GrpcStatus.DEADLINE_EXCEEDED);
    expect(outcome.message).toContain("no data for 400 ms");
    expect(outcome.afterMs).toBeGreaterThanOrEqual(390);
    expect(server.bufferedBytes()).toBe(0);
  });

  it("bounds the bytes held for unfinished calls per connection and for the server, refusing calls past the bound, and keeps answering", async () => {
    const almost = Buffer.concat([prefix(MAX), Buffer.alloc(MAX - 64 * 1024)]);
    const outcomes: Array<Promise<Outcome>> = [];
    const peaks: number[] = [];
    for (let s = 0; s < 3; s++) {
      const session = connect();
      for (let i = 0; i < 8; i++) outcomes.push(open(session, "/test.Echo/Echo", [almost]).done);
    }
    const watcher = setInterval(() => peaks.push(server.bufferedBytes()), 5);
    await sleep(250);
    expect((await echo("still here")).response?.toString()).toBe("echo:still here");
    clearInterval(watcher);
    expect(Math.max(...peaks)).toBeGreaterThan(MAX);
    expect(Math.max(...peaks)).toBeLessThanOrEqual(8 * MAX);
    // Every call ends on its own: refused past the bound, or cut by the idle timeout.
    const settled = await Promise.all(outcomes);
    expect(settled.filter((outcome) => outcome.grpcStatus === GrpcStatus.RESOURCE_EXHAUSTED).length).toBeGreaterThan(0);
    expect(settled.every((outcome) => outcome.grpcStatus === GrpcStatus.RESOURCE_EXHAUSTED || outcome.grpcStatus === GrpcStatus.DEADLINE_EXCEEDED)).toBe(true);
    await expect.poll(() => server.bufferedBytes()).toBe(0);
  });
});

describe("finding 4: codecs other than protobuf", () => {
  it.each(["application/grpc+json", "application/grpc+thrift", "application/grpc+json; charset=utf-8"])("answer 415 to %s instead of reading JSON as protobuf", async (contentType) => {
    const outcome = await open(connect(), "/test.Echo/Echo", [frame(Buffer.from('{"a":1}'))], { end: true, headers: { "content-type": contentType } }).done;
    expect(outcome.status).toBe(415);
  });

  it.each(["application/grpc", "application/grpc+proto", "application/grpc;charset=utf-8", "application/grpc+proto; x=y"])("serve %s", async (contentType) => {
    const outcome = await open(connect(), "/test.Echo/Echo", [frame(Buffer.from("x"))], { end: true, headers: { "content-type": contentType } }).done;
    expect(outcome.grpcStatus).toBe(GrpcStatus.OK);
    expect(outcome.body.subarray(5).toString()).toBe("echo:x");
  });
});
