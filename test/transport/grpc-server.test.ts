/**
 * The gRPC server on node:http2, checked two ways: through grpc-js's client
 * (an independent implementation of the protocol, as Envoy's would be) and
 * through raw HTTP/2 requests for what a well-behaved client never sends.
 */
import * as http2 from "node:http2";
import * as net from "node:net";
import { gzipSync } from "node:zlib";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GrpcError, GrpcStatus, createGrpcServer, deadlineOf, frame, headerValue, messageOf, percentEncode, type GrpcMethod, type GrpcServer } from "../../src/transport/grpc-server.js";

const MAX = 1024;
const errors: Array<{ error: unknown; path: string }> = [];
let release: (() => void) | undefined;
const watchers = new Set<(message: Buffer) => void>();
const seenAuthorization: string[] = [];

const methods = new Map<string, GrpcMethod>([
  ["/test.Echo/Echo", { kind: "unary", handle: (request) => Buffer.concat([Buffer.from("echo:"), request]) }],
  ["/test.Echo/Framed", { kind: "unary", framed: true, handle: (request) => frame(Buffer.concat([Buffer.from("framed:"), request])) }],
  ["/test.Echo/Headers", { kind: "unary", handle: (_request, call) => Buffer.from(JSON.stringify({ authorization: headerValue(call, "authorization") ?? null, peer: call.peerAddress })) }],
  ["/test.Echo/Record", { kind: "unary", handle: (_request, call) => (seenAuthorization.push(headerValue(call, "authorization") ?? ""), Buffer.alloc(0)) }],
  ["/test.Echo/Fail", { kind: "unary", handle: (request) => { throw new GrpcError(GrpcStatus.NOT_FOUND, request.toString("utf8")); } }],
  ["/test.Echo/Crash", { kind: "unary", handle: () => { throw new Error("secret internals"); } }],
  ["/test.Echo/Later", { kind: "unary", handle: (request) => new Promise<Buffer>((resolve) => setTimeout(() => resolve(request), 20)) }],
  ["/test.Echo/LaterFail", { kind: "unary", handle: () => Promise.reject(new GrpcError(GrpcStatus.UNAVAILABLE, "not now")) }],
  ["/test.Echo/Held", { kind: "unary", handle: (request) => new Promise<Buffer>((resolve) => { release = () => resolve(request); }) }],
  [
    "/test.Echo/Watch",
    {
      kind: "server-streaming",
      handle: (request, _call, send) => {
        send(request);
        watchers.add(send);
        return () => watchers.delete(send);
      },
    },
  ],
]);

let server: GrpcServer;
let address: string;

beforeAll(async () => {
  server = createGrpcServer({ methods, maxMessageBytes: MAX, onError: (error, path) => errors.push({ error, path }) });
  address = `127.0.0.1:${await server.listen("127.0.0.1", 0)}`;
});
afterAll(() => server.close(1_000));

const bytes = (b: Buffer): Buffer => b;

function call(path: string, request: Buffer, options: { metadata?: grpc.Metadata; deadlineMs?: number; channel?: grpc.ChannelOptions } = {}): Promise<{ error: grpc.ServiceError | null; response: Buffer | undefined }> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure(), options.channel ?? {});
  const callOptions = options.deadlineMs === undefined ? {} : { deadline: Date.now() + options.deadlineMs };
  return new Promise((resolve) => {
    client.makeUnaryRequest(path, bytes, bytes, request, options.metadata ?? new grpc.Metadata(), callOptions, (error, response) => {
      client.close();
      resolve({ error, response });
    });
  });
}

interface RawResponse {
  readonly headers: http2.IncomingHttpHeaders;
  readonly body: Buffer;
  readonly trailers: http2.IncomingHttpHeaders;
}

/** One HTTP/2 request with exactly these headers and body chunks. */
function raw(headers: http2.OutgoingHttpHeaders, chunks: Buffer[]): Promise<RawResponse> {
  const session = http2.connect(`http://${address}`);
  return new Promise((resolve, reject) => {
    const request = session.request({ ":method": "POST", "content-type": "application/grpc", te: "trailers", ...headers });
    let responseHeaders: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    const body: Buffer[] = [];
    request.on("response", (h) => (responseHeaders = h));
    request.on("trailers", (t) => (trailers = t));
    request.on("data", (chunk: Buffer) => body.push(chunk));
    request.on("error", reject);
    request.on("close", () => {
      session.close();
      resolve({ headers: responseHeaders, body: Buffer.concat(body), trailers });
    });
    for (const chunk of chunks) request.write(chunk);
    request.end();
  });
}

/** grpc-status and grpc-message wherever they came (trailers, or the headers of a trailers-only response). */
function statusOf(response: RawResponse): { code: number; message: string | undefined } {
  const source = response.trailers["grpc-status"] !== undefined ? response.trailers : response.headers;
  const message = source["grpc-message"];
  return { code: Number(source["grpc-status"]), message: typeof message === "string" ? decodeURIComponent(message) : undefined };
}

describe("unary calls through a grpc-js client", () => {
  it("answer the handler's message with OK", async () => {
    const { error, response } = await call("/test.Echo/Echo", Buffer.from("hi"));
    expect(error).toBeNull();
    expect(response!.toString()).toBe("echo:hi");
  });

  it("send a framed method's bytes as they are, prefix included", async () => {
    const { error, response } = await call("/test.Echo/Framed", Buffer.from("hi"));
    expect(error).toBeNull();
    expect(response!.toString()).toBe("framed:hi");
    const { body } = await raw({ ":path": "/test.Echo/Framed" }, [frame(Buffer.from("hi"))]);
    expect(body.equals(frame(Buffer.from("framed:hi")))).toBe(true);
  });

  it("answer an empty request message too", async () => {
    const { error, response } = await call("/test.Echo/Echo", Buffer.alloc(0));
    expect(error).toBeNull();
    expect(response!.toString()).toBe("echo:");
  });

  it("answer UNIMPLEMENTED for a method not served", async () => {
    const { error } = await call("/test.Echo/Nope", Buffer.from("x"));
    expect(error).toMatchObject({ code: grpc.status.UNIMPLEMENTED, details: "method /test.Echo/Nope is not served here" });
  });

  it("send a GrpcError's code and message, percent-encoded on the wire and intact at the client", async () => {
    const message = "no token `tok_é` at 100% — ünïcode\tand tab";
    const { error } = await call("/test.Echo/Fail", Buffer.from(message));
    expect(error).toMatchObject({ code: grpc.status.NOT_FOUND, details: message });
  });

  it("answer INTERNAL without the exception's text, and report it", async () => {
    errors.length = 0;
    const { error } = await call("/test.Echo/Crash", Buffer.from("x"));
    expect(error!.code).toBe(grpc.status.INTERNAL);
    expect(error!.details).not.toContain("secret");
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ path: "/test.Echo/Crash", error: { message: "secret internals" } });
  });

  it("wait for a handler's promise, and send its rejection's status", async () => {
    expect((await call("/test.Echo/Later", Buffer.from("late"))).response!.toString()).toBe("late");
    expect((await call("/test.Echo/LaterFail", Buffer.from("x"))).error).toMatchObject({ code: grpc.status.UNAVAILABLE, details: "not now" });
  });

  it("read a gzip-compressed request from a client that compresses", async () => {
    // 2 is gzip in grpc-js's compression algorithms.
    const { error, response } = await call("/test.Echo/Echo", Buffer.from("z".repeat(500)), { channel: { "grpc.default_compression_algorithm": 2 } });
    expect(error).toBeNull();
    expect(response!.toString()).toBe(`echo:${"z".repeat(500)}`);
  });

  it("give handlers the peer's address", async () => {
    const { response } = await call("/test.Echo/Headers", Buffer.alloc(0));
    expect(JSON.parse(response!.toString())).toMatchObject({ authorization: null, peer: expect.stringMatching(/127\.0\.0\.1$/) });
  });

  it("answer RESOURCE_EXHAUSTED for a message over the limit", async () => {
    const { error } = await call("/test.Echo/Echo", Buffer.alloc(MAX + 1));
    expect(error).toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED, details: `the request message is larger than ${MAX} bytes` });
    // The limit itself is accepted.
    expect((await call("/test.Echo/Echo", Buffer.alloc(MAX))).error).toBeNull();
  });
});

describe("requests a gRPC client would not send", () => {
  const echo = { ":path": "/test.Echo/Echo" };

  it("refuse a content-type other than application/grpc with HTTP 415, and a GET with 405", async () => {
    expect((await raw({ ...echo, "content-type": "application/json" }, [frame(Buffer.from("x"))])).headers[":status"]).toBe(415);
    expect((await raw({ ...echo, ":method": "GET" }, [])).headers[":status"]).toBe(405);
    // application/grpc+proto is gRPC.
    const proto = await raw({ ...echo, "content-type": "application/grpc+proto" }, [frame(Buffer.from("x"))]);
    expect(statusOf(proto).code).toBe(GrpcStatus.OK);
  });

  it("answer INTERNAL for no message, two messages, or a body cut inside a message", async () => {
    expect(statusOf(await raw(echo, []))).toMatchObject({ code: GrpcStatus.INTERNAL, message: expect.stringContaining("no message") });
    expect(statusOf(await raw(echo, [frame(Buffer.from("a")), frame(Buffer.from("b"))]))).toMatchObject({ code: GrpcStatus.INTERNAL, message: expect.stringContaining("more than one message") });
    expect(statusOf(await raw(echo, [frame(Buffer.from("abc")).subarray(0, 6)]))).toMatchObject({ code: GrpcStatus.INTERNAL, message: expect.stringContaining("inside a message") });
    expect(statusOf(await raw(echo, [Buffer.from([0, 0])]))).toMatchObject({ code: GrpcStatus.INTERNAL, message: expect.stringContaining("prefix") });
  });

  it("give handlers every value of a repeated Authorization header, which node:http2's header object drops", async () => {
    // Neither grpc-js nor node:http2's client will send a repeated Authorization, so the frames are written by hand.
    seenAuthorization.length = 0;
    const socket = net.connect(Number(address.split(":")[1]), "127.0.0.1");
    socket.on("error", () => undefined);
    socket.on("data", () => undefined);
    socket.write(Buffer.concat([Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), h2Frame(4, 0, 0, Buffer.alloc(0))]));
    const block = hpackLiterals([
      [":method", "POST"],
      [":scheme", "http"],
      [":path", "/test.Echo/Record"],
      [":authority", "localhost"],
      ["content-type", "application/grpc"],
      ["authorization", "Bearer one"],
      ["authorization", "Bearer two"],
    ]);
    socket.write(Buffer.concat([h2Frame(1, 0x4, 1, block), h2Frame(0, 0x1, 1, frame(Buffer.alloc(0)))]));
    await expect.poll(() => seenAuthorization).toEqual(["Bearer one, Bearer two"]);
    socket.destroy();
  });

  it("read a message split across many DATA frames", async () => {
    const framed = frame(Buffer.from("split message"));
    const chunks = [...framed].map((byte) => Buffer.from([byte]));
    const response = await raw(echo, chunks);
    expect(statusOf(response).code).toBe(GrpcStatus.OK);
    expect(response.body.subarray(5).toString()).toBe("echo:split message");
  });

  it("refuse a declared length over the limit before reading it, and a body that keeps coming", async () => {
    const prefix = Buffer.from([0, 0, 0x10, 0, 0]); // 1 MiB declared
    expect(statusOf(await raw(echo, [Buffer.concat([prefix, Buffer.alloc(10)])])).code).toBe(GrpcStatus.RESOURCE_EXHAUSTED);
    const flood = Array.from({ length: 8 }, () => Buffer.alloc(MAX));
    expect(statusOf(await raw(echo, flood)).code).toBe(GrpcStatus.RESOURCE_EXHAUSTED);
  });

  it("decompress gzip and deflate, refuse a compressed flag without an encoding, and a gzip bomb", async () => {
    const withLength = (payload: Buffer) => {
      const framed = frame(payload);
      framed[0] = 1; // compressed
      return framed;
    };
    const gz = gzipSync(Buffer.from("packed"));
    const ok = await raw({ ...echo, "grpc-encoding": "gzip" }, [withLength(gz)]);
    expect(ok.body.subarray(5).toString()).toBe("echo:packed");
    expect(statusOf(await raw(echo, [withLength(gz)]))).toMatchObject({ code: GrpcStatus.INTERNAL, message: expect.stringContaining("identity") });
    const bomb = gzipSync(Buffer.alloc(MAX * 64));
    expect(bomb.length).toBeLessThan(MAX);
    expect(statusOf(await raw({ ...echo, "grpc-encoding": "gzip" }, [withLength(bomb)])).code).toBe(GrpcStatus.RESOURCE_EXHAUSTED);
    expect(statusOf(await raw({ ...echo, "grpc-encoding": "gzip" }, [withLength(Buffer.from("not gzip"))]))).toMatchObject({ code: GrpcStatus.INTERNAL, message: "the message does not decompress as gzip" });
  });

  it("answer UNIMPLEMENTED for an encoding it cannot read, naming those it can", async () => {
    const response = await raw({ ...echo, "grpc-encoding": "br" }, [frame(Buffer.from("x"))]);
    expect(statusOf(response).code).toBe(GrpcStatus.UNIMPLEMENTED);
    expect(response.headers["grpc-accept-encoding"]).toBe("identity,gzip,deflate");
  });

  it("end a slow handler at the client's grpc-timeout with DEADLINE_EXCEEDED, and refuse a malformed one", async () => {
    const slow = await raw({ ":path": "/test.Echo/Later", "grpc-timeout": "5m" }, [frame(Buffer.from("x"))]);
    expect(statusOf(slow).code).toBe(GrpcStatus.DEADLINE_EXCEEDED);
    const inTime = await raw({ ":path": "/test.Echo/Later", "grpc-timeout": "2S" }, [frame(Buffer.from("x"))]);
    expect(statusOf(inTime).code).toBe(GrpcStatus.OK);
    expect(statusOf(await raw({ ...echo, "grpc-timeout": "soon" }, [frame(Buffer.from("x"))])).code).toBe(GrpcStatus.INTERNAL);
  });

  it("survive a connection that does not speak HTTP/2, and keep answering", async () => {
    const socket = net.connect(Number(address.split(":")[1]), "127.0.0.1");
    socket.on("error", () => undefined);
    socket.write("POST /test.Echo/Echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
    socket.resume();
    // The server answers GOAWAY and hangs up.
    await new Promise((resolve) => socket.on("close", resolve));
    expect((await call("/test.Echo/Echo", Buffer.from("still"))).response!.toString()).toBe("echo:still");
  });

  it("survive a client that cancels a call in flight, and keep answering", async () => {
    const session = http2.connect(`http://${address}`);
    const request = session.request({ ":method": "POST", ":path": "/test.Echo/Held", "content-type": "application/grpc" });
    request.on("error", () => undefined);
    request.end(frame(Buffer.from("held")));
    await new Promise((resolve) => setTimeout(resolve, 50));
    request.close(http2.constants.NGHTTP2_CANCEL);
    await new Promise((resolve) => request.on("close", resolve));
    session.close();
    release!();
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect((await call("/test.Echo/Echo", Buffer.from("after"))).response!.toString()).toBe("echo:after");
  });
});

/** An HTTP/2 frame: 3-byte length, type, flags, stream id. */
function h2Frame(type: number, flags: number, streamId: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(streamId, 5);
  return Buffer.concat([head, payload]);
}

/** An HPACK header block of literal fields without indexing, plain strings (RFC 7541 section 6.2.2); names and values under 127 bytes. */
function hpackLiterals(fields: Array<[string, string]>): Buffer {
  const literal = (text: string) => Buffer.concat([Buffer.from([text.length]), Buffer.from(text, "latin1")]);
  return Buffer.concat(fields.flatMap(([name, value]) => [Buffer.from([0]), literal(name), literal(value)]));
}

describe("pure helpers", () => {
  it("percent-encode only what grpc-message must not carry raw", () => {
    expect(percentEncode("plain text: ok!")).toBe("plain text: ok!");
    expect(percentEncode("100%")).toBe("100%25");
    expect(percentEncode("é\n")).toBe("%C3%A9%0A");
  });

  it("read grpc-timeout in every unit", () => {
    expect(deadlineOf(undefined, 0)).toBeNull();
    expect(deadlineOf("2H", 0)).toBe(7_200_000);
    expect(deadlineOf("3M", 0)).toBe(180_000);
    expect(deadlineOf("1S", 0)).toBe(1_000);
    expect(deadlineOf("250m", 0)).toBe(250);
    expect(deadlineOf("1500u", 0)).toBe(1.5);
    expect(deadlineOf("99999999n", 0)).toBeCloseTo(99.999999);
    expect(deadlineOf("123456789S", 0)).toBe(-1);
    expect(deadlineOf("1s", 0)).toBe(-1);
    expect(deadlineOf("", 0)).toBe(-1);
  });

  it("join repeated header values from the raw list", () => {
    const callOf = (rawHeaders: string[]) => ({ headers: {}, rawHeaders, peerAddress: "" });
    expect(headerValue(callOf(["authorization", "a", "x", "y", "authorization", "b"]), "authorization")).toBe("a, b");
    expect(headerValue(callOf(["x", "y"]), "authorization")).toBeUndefined();
  });

  it("take exactly one whole message from a body", () => {
    expect(messageOf(frame(Buffer.from("one")), "identity", MAX).toString()).toBe("one");
    expect(() => messageOf(Buffer.from([2, 0, 0, 0, 0]), "gzip", MAX)).toThrow(/compressed flag 2/);
  });
});

describe("server-streaming calls and closing", () => {
  it("stream messages until the server closes, then end with UNAVAILABLE; unary calls in flight finish within the grace", async () => {
    const local = createGrpcServer({ methods, maxMessageBytes: MAX });
    const port = await local.listen("127.0.0.1", 0);
    const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    const received: string[] = [];
    const watch = client.makeServerStreamRequest("/test.Echo/Watch", bytes, bytes, Buffer.from("first"));
    watch.on("data", (message: Buffer) => received.push(message.toString()));
    const ended = new Promise<grpc.StatusObject>((resolve) => watch.on("status", resolve));
    watch.on("error", () => undefined);
    await expect.poll(() => received).toEqual(["first"]);
    for (const send of watchers) send(Buffer.from("second"));
    await expect.poll(() => received).toEqual(["first", "second"]);

    const held = new Promise<{ error: grpc.ServiceError | null; response: Buffer | undefined }>((resolve) =>
      client.makeUnaryRequest("/test.Echo/Held", bytes, bytes, Buffer.from("in flight"), (error, response) => resolve({ error, response })),
    );
    await new Promise((resolve) => setTimeout(resolve, 50));
    const closed = local.close(2_000);
    expect(await ended).toMatchObject({ code: grpc.status.UNAVAILABLE, details: "the server is shutting down" });
    expect(watchers.size).toBe(0);
    release!();
    expect((await held).response!.toString()).toBe("in flight");
    await closed;
    client.close();
  });

  it("cut calls still running when the grace runs out", async () => {
    const local = createGrpcServer({ methods, maxMessageBytes: MAX });
    const port = await local.listen("127.0.0.1", 0);
    const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    const held = new Promise<grpc.ServiceError | null>((resolve) => client.makeUnaryRequest("/test.Echo/Held", bytes, bytes, Buffer.from("x"), (error) => resolve(error)));
    await new Promise((resolve) => setTimeout(resolve, 50));
    const started = Date.now();
    await local.close(100);
    expect(Date.now() - started).toBeLessThan(1_000);
    expect((await held)!.code).not.toBe(grpc.status.OK);
    client.close();
  });
});
