/**
 * A gRPC server on `node:http2`: unary and server-streaming methods whose
 * handlers take and give message bytes, framed as
 * https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md says.
 *
 * Why not `@grpc/grpc-js`: it sits on every Envoy `Check`, and grpc-js's own
 * work per call (metadata objects, interceptor chain, call state) cost about
 * 40–90 µs of CPU on top of `node:http2`'s 60 on the benchmark machine: more
 * than the decision itself (BENCHMARKS.md). This module does only what a unary
 * call needs: check the request's headers, collect one length-prefixed message
 * (identity, gzip or deflate), call the handler, and answer one message and
 * `grpc-status`, or a trailers-only error.
 */
import * as http2 from "node:http2";
import { gunzipSync, inflateSync } from "node:zlib";

/** The gRPC status codes this server sends (https://grpc.github.io/grpc/core/md_doc_statuscodes.html). */
export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  RESOURCE_EXHAUSTED: 8,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
} as const;

/** Thrown by a handler: answered as this status and message. Anything else thrown answers INTERNAL. */
export class GrpcError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
    this.name = "GrpcError";
  }
}

/** What a handler may know of its call besides the request message. */
export interface GrpcCall {
  /** The request's headers (gRPC metadata) as node:http2 reads them: it keeps only the first of repeated `authorization`, so read credentials with {@link headerValue}. */
  readonly headers: http2.IncomingHttpHeaders;
  /** Names (lower case) and values in the order received, repeats included. */
  readonly rawHeaders: readonly string[];
  /** The peer's IP address as the socket reports it (`::ffff:`-mapped for IPv4 on a dual-stack socket), `""` when unknown. */
  readonly peerAddress: string;
}

/** A unary method: one request message in, one response message out (as protobuf-es's `toBinary` gives it), or a thrown error. */
export type UnaryHandler = (request: Buffer, call: GrpcCall) => Uint8Array | Promise<Uint8Array>;

/**
 * A server-streaming method: `send` writes one response message. It returns the
 * function that stops it, called once when the call ends: the client cancelled,
 * or the server is closing, in which case the call ends with UNAVAILABLE.
 */
export type ServerStreamingHandler = (request: Buffer, call: GrpcCall, send: (message: Uint8Array) => void) => () => void;

export interface UnaryMethod {
  readonly kind: "unary";
  readonly handle: UnaryHandler;
  /** The handler returns the message already framed (its 5-byte prefix included), which saves a copy of every response. */
  readonly framed?: boolean;
}

export type GrpcMethod = UnaryMethod | { readonly kind: "server-streaming"; readonly handle: ServerStreamingHandler };

export interface GrpcServerOptions {
  /** Methods by path, `/package.Service/Method`. */
  readonly methods: ReadonlyMap<string, GrpcMethod>;
  /** Largest request message accepted, after decompression; larger ones answer RESOURCE_EXHAUSTED. */
  readonly maxMessageBytes: number;
  /** Told about an exception a handler threw that was not a {@link GrpcError} (answered INTERNAL without its text). */
  readonly onError?: (error: unknown, path: string) => void;
}

export interface GrpcServer {
  /** Binds `host:port` (0 picks a free port) and resolves to the bound port. */
  listen(host: string, port: number): Promise<number>;
  /**
   * Stops accepting connections, sends GOAWAY on open ones and ends streaming
   * calls with UNAVAILABLE; unary calls in flight get `graceMs` to finish, then
   * every connection is cut.
   */
  close(graceMs: number): Promise<void>;
}

const SUPPORTED_ENCODINGS = "identity,gzip,deflate";
const HEADER_BYTES = 5;

/** Creates the server; {@link GrpcServer.listen} binds it. */
export function createGrpcServer(options: GrpcServerOptions): GrpcServer {
  const { methods, maxMessageBytes } = options;
  const server = http2.createServer({
    // Node's default (10 MB) would refuse streams while a few 1 MB messages are buffered.
    maxSessionMemory: 64,
    settings: { maxConcurrentStreams: 1000 },
  });
  const sessions = new Set<http2.ServerHttp2Session>();
  const streamingCalls = new Set<() => void>();
  let closing = false;

  server.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
    if (closing) session.close();
  });
  // A malformed connection or stream is the peer's problem; node:http2 already answered it.
  server.on("sessionError", ignore);

  // node:http2 passes the raw headers as a fourth argument that @types/node does not declare.
  server.on("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, _flags: number, rawHeaders: readonly string[]) => {
    stream.on("error", ignore);
    const rejected = rejectHeaders(headers);
    if (rejected !== null) {
      respondHttpError(stream, rejected);
      return;
    }
    const path = headers[":path"] ?? "";
    const method = methods.get(path);
    if (method === undefined) {
      respondStatus(stream, GrpcStatus.UNIMPLEMENTED, `method ${path} is not served here`);
      return;
    }
    const encoding = headers["grpc-encoding"] ?? "identity";
    if (encoding !== "identity" && encoding !== "gzip" && encoding !== "deflate") {
      respondStatus(stream, GrpcStatus.UNIMPLEMENTED, `grpc-encoding ${encoding} is not supported`, { "grpc-accept-encoding": SUPPORTED_ENCODINGS });
      return;
    }
    const timeout = headers["grpc-timeout"];
    const deadline = deadlineOf(typeof timeout === "string" ? timeout : timeout?.[0]);
    if (deadline === INVALID) {
      respondStatus(stream, GrpcStatus.INTERNAL, `grpc-timeout ${String(timeout)} is malformed`);
      return;
    }
    readMessage(stream, encoding, maxMessageBytes, (error, request) => {
      if (error !== null) {
        respondStatus(stream, error.code, error.message);
        return;
      }
      const call = new StreamCall(stream, headers, rawHeaders);
      if (method.kind === "unary") runUnary(stream, path, method, request, call, deadline);
      else runStreaming(stream, method.handle, request, call);
    });
  });

  function runUnary(stream: http2.ServerHttp2Stream, path: string, method: UnaryMethod, request: Buffer, call: GrpcCall, deadline: number | null): void {
    let result: Uint8Array | Promise<Uint8Array>;
    try {
      result = method.handle(request, call);
    } catch (error) {
      respondError(stream, path, error);
      return;
    }
    const framed = method.framed === true;
    if (result instanceof Uint8Array) {
      respondMessage(stream, result, framed);
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    // Past setTimeout's range (about 24.8 days) the deadline cannot come first.
    if (deadline !== null && deadline - Date.now() <= MAX_TIMER_MS) {
      timer = setTimeout(() => respondStatus(stream, GrpcStatus.DEADLINE_EXCEEDED, "deadline exceeded"), Math.max(0, deadline - Date.now()));
    }
    result.then(
      (response) => {
        clearTimeout(timer);
        respondMessage(stream, response, framed);
      },
      (error: unknown) => {
        clearTimeout(timer);
        respondError(stream, path, error);
      },
    );
  }

  function runStreaming(stream: http2.ServerHttp2Stream, handle: ServerStreamingHandler, request: Buffer, call: GrpcCall): void {
    let stop: (() => void) | undefined;
    let ended = false;
    const end = (code: number, message: string) => {
      if (ended) return;
      ended = true;
      streamingCalls.delete(endOnClose);
      stop?.();
      if (code !== GrpcStatus.CANCELLED) sendTrailers(stream, code, message);
    };
    if (stream.destroyed) return;
    const endOnClose = () => end(GrpcStatus.UNAVAILABLE, "the server is shutting down");
    streamingCalls.add(endOnClose);
    stream.once("close", () => end(GrpcStatus.CANCELLED, ""));
    stream.respond(RESPONSE_HEADERS, { waitForTrailers: true });
    try {
      stop = handle(request, call, (message) => {
        if (!ended && !stream.destroyed) stream.write(frame(message));
      });
    } catch (error) {
      options.onError?.(error, call.headers[":path"] ?? "");
      end(GrpcStatus.INTERNAL, "the server failed to handle the call");
      return;
    }
    if (ended) stop();
  }

  function respondError(stream: http2.ServerHttp2Stream, path: string, error: unknown): void {
    if (error instanceof GrpcError) {
      respondStatus(stream, error.code, error.message);
      return;
    }
    options.onError?.(error, path);
    respondStatus(stream, GrpcStatus.INTERNAL, "the server failed to handle the call");
  }

  return {
    listen(host, port) {
      return new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, host, () => {
          server.off("error", reject);
          const address = server.address();
          resolve(typeof address === "object" && address !== null ? address.port : port);
        });
      });
    },
    close(graceMs) {
      closing = true;
      for (const endCall of [...streamingCalls]) endCall();
      return new Promise((resolve) => {
        const timer = setTimeout(() => {
          for (const session of sessions) session.destroy();
        }, graceMs);
        server.close(() => {
          clearTimeout(timer);
          resolve();
        });
        for (const session of sessions) session.close();
      });
    },
  };
}

/** Every value of header `name` (lower case) joined with ", ", as a repeat must reach the engine; undefined when absent. */
export function headerValue(call: GrpcCall, name: string): string | undefined {
  const raw = call.rawHeaders;
  let value: string | undefined;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (raw[i] === name) value = value === undefined ? raw[i + 1]! : `${value}, ${raw[i + 1]!}`;
  }
  return value;
}

const ignore = (): void => undefined;
const MAX_TIMER_MS = 2 ** 31 - 1;

const RESPONSE_HEADERS: http2.OutgoingHttpHeaders = { ":status": 200, "content-type": "application/grpc" };
const OK_TRAILERS: http2.OutgoingHttpHeaders = { "grpc-status": "0" };

/** An HTTP-level refusal (the request is not gRPC at all), or null. */
function rejectHeaders(headers: http2.IncomingHttpHeaders): { status: number; message: string } | null {
  if (headers[":method"] !== "POST") return { status: 405, message: "gRPC calls are POST requests" };
  const contentType = headers["content-type"];
  if (contentType === undefined || !(contentType === "application/grpc" || contentType.startsWith("application/grpc+") || contentType.startsWith("application/grpc;"))) {
    return { status: 415, message: "content-type must be application/grpc" };
  }
  return null;
}

function respondHttpError(stream: http2.ServerHttp2Stream, error: { status: number; message: string }): void {
  if (stream.destroyed || stream.headersSent) return;
  stream.respond({ ":status": error.status, "content-type": "text/plain; charset=utf-8" });
  stream.end(`${error.message}\n`);
}

/** One response message, then `grpc-status: 0` in the trailers. */
function respondMessage(stream: http2.ServerHttp2Stream, message: Uint8Array, framed: boolean): void {
  if (stream.destroyed || stream.headersSent) return;
  stream.respond(RESPONSE_HEADERS, { waitForTrailers: true });
  // node:http2 emits wantTrailers once per stream: `on` spares once's wrapper.
  stream.on("wantTrailers", sendOkTrailers);
  stream.end(framed ? message : frame(message));
}

function sendOkTrailers(this: http2.ServerHttp2Stream): void {
  this.sendTrailers(OK_TRAILERS);
}

/** A call's facts; the peer address is read only by the methods that want it (a look-up through the session's socket proxy). */
class StreamCall implements GrpcCall {
  constructor(
    private readonly stream: http2.ServerHttp2Stream,
    readonly headers: http2.IncomingHttpHeaders,
    readonly rawHeaders: readonly string[],
  ) {}

  get peerAddress(): string {
    return this.stream.session?.socket?.remoteAddress ?? "";
  }
}

/** A trailers-only response: status and message in the one HEADERS frame. */
function respondStatus(stream: http2.ServerHttp2Stream, code: number, message: string, extra: http2.OutgoingHttpHeaders = {}): void {
  if (stream.destroyed) return;
  if (stream.headersSent) {
    sendTrailers(stream, code, message);
    return;
  }
  stream.respond({ ...RESPONSE_HEADERS, ...extra, ...statusHeaders(code, message) }, { endStream: true });
}

/** Ends a stream whose headers were sent: the status goes in the trailers. */
function sendTrailers(stream: http2.ServerHttp2Stream, code: number, message: string): void {
  if (stream.destroyed || stream.writableEnded) return;
  stream.once("wantTrailers", () => stream.sendTrailers(statusHeaders(code, message)));
  stream.end();
}

function statusHeaders(code: number, message: string): http2.OutgoingHttpHeaders {
  return message === "" ? { "grpc-status": String(code) } : { "grpc-status": String(code), "grpc-message": percentEncode(message) };
}

/** `grpc-message` is percent-encoded UTF-8: everything outside printable ASCII, and `%` itself. */
export function percentEncode(message: string): string {
  return message.replace(/[^\x20-\x24\x26-\x7e]+/g, (run) => encodeURIComponent(run));
}

/** A message with its 5-byte prefix: not compressed, 4-byte big-endian length. */
export function frame(message: Uint8Array): Buffer {
  const framed = Buffer.allocUnsafe(HEADER_BYTES + message.length);
  framed[0] = 0;
  framed.writeUInt32BE(message.length, 1);
  framed.set(message, HEADER_BYTES);
  return framed;
}

const INVALID = -1;
const TIMEOUT_UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1_000, m: 1, u: 0.001, n: 0.000_001 };

/** The call's deadline in epoch ms from `grpc-timeout` (up to 8 digits and a unit), null without one, {@link INVALID} when malformed. */
export function deadlineOf(timeout: string | undefined, now = Date.now()): number | null {
  if (timeout === undefined) return null;
  const match = /^(\d{1,8})([HMSmun])$/.exec(timeout);
  if (match === null) return INVALID;
  return now + Number(match[1]) * TIMEOUT_UNIT_MS[match[2]!]!;
}

/**
 * Collects the request body and reads exactly one message from it. Answers
 * through `done` once: a {@link GrpcError} for a body that is not one whole
 * message within the limit (stopping to read as soon as the limit is passed),
 * else the message, decompressed.
 */
function readMessage(stream: http2.ServerHttp2Stream, encoding: string, maxMessageBytes: number, done: (error: GrpcError | null, message: Buffer) => void): void {
  const chunks: Buffer[] = [];
  let received = 0;
  let answered = false;
  const fail = (error: GrpcError) => {
    if (answered) return;
    answered = true;
    stream.removeAllListeners("data");
    stream.resume();
    done(error, EMPTY);
  };
  stream.on("data", (chunk: Buffer) => {
    received += chunk.length;
    // A compressed message may inflate past the limit; its compressed bytes may not pass it either.
    if (received > HEADER_BYTES + maxMessageBytes) {
      fail(new GrpcError(GrpcStatus.RESOURCE_EXHAUSTED, `the request message is larger than ${maxMessageBytes} bytes`));
      return;
    }
    chunks.push(chunk);
  });
  stream.once("end", () => {
    if (answered) return;
    answered = true;
    const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, received);
    try {
      done(null, messageOf(body, encoding, maxMessageBytes));
    } catch (error) {
      done(error instanceof GrpcError ? error : new GrpcError(GrpcStatus.INTERNAL, "the request message could not be read"), EMPTY);
    }
  });
}

const EMPTY = Buffer.alloc(0);

/** The one message in a unary request body. */
export function messageOf(body: Buffer, encoding: string, maxMessageBytes: number): Buffer {
  if (body.length === 0) throw new GrpcError(GrpcStatus.INTERNAL, "the request has no message; a unary call takes exactly one");
  if (body.length < HEADER_BYTES) throw new GrpcError(GrpcStatus.INTERNAL, "the request ends inside a message prefix");
  const compressed = body[0]!;
  const length = body.readUInt32BE(1);
  if (length > maxMessageBytes) throw new GrpcError(GrpcStatus.RESOURCE_EXHAUSTED, `the request message is larger than ${maxMessageBytes} bytes`);
  const end = HEADER_BYTES + length;
  if (body.length < end) throw new GrpcError(GrpcStatus.INTERNAL, "the request ends inside a message");
  if (body.length > end) throw new GrpcError(GrpcStatus.INTERNAL, "the request has more than one message; a unary call takes exactly one");
  const payload = body.subarray(HEADER_BYTES, end);
  if (compressed === 0) return payload;
  if (compressed !== 1) throw new GrpcError(GrpcStatus.INTERNAL, `the message prefix has an unknown compressed flag ${compressed}`);
  if (encoding === "identity") throw new GrpcError(GrpcStatus.INTERNAL, "the message is flagged compressed but grpc-encoding is identity");
  try {
    return (encoding === "gzip" ? gunzipSync : inflateSync)(payload, { maxOutputLength: maxMessageBytes });
  } catch (error) {
    if ((error as { code?: string }).code === "ERR_BUFFER_TOO_LARGE") {
      throw new GrpcError(GrpcStatus.RESOURCE_EXHAUSTED, `the request message is larger than ${maxMessageBytes} bytes`);
    }
    throw new GrpcError(GrpcStatus.INTERNAL, `the message does not decompress as ${encoding}`);
  }
}
