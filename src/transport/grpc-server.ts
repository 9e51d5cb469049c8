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
import * as tls from "node:tls";
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

/**
 * How much a peer may make the server hold while it has not finished sending.
 * Every request is buffered in full before its handler runs, so these bound
 * the memory a client that never finishes its messages can pin.
 */
export interface GrpcLimits {
  /** A call still receiving its message that gets no data for this long is cut with DEADLINE_EXCEEDED. Default 10 s. */
  readonly idleTimeoutMs: number;
  /** Bytes of unfinished requests one connection may have buffered; a call that would pass it answers RESOURCE_EXHAUSTED. Default 8 MiB. */
  readonly maxBufferedBytesPerSession: number;
  /** Bytes of unfinished requests the whole server may have buffered; past it new calls are refused with RESOURCE_EXHAUSTED. Default 32 MiB. */
  readonly maxBufferedBytes: number;
}

/** The defaults of {@link GrpcLimits}: a few Envoys' worth of 1 MiB messages in flight, far under the RSS bound the README states. */
export const DEFAULT_GRPC_LIMITS: GrpcLimits = { idleTimeoutMs: 10_000, maxBufferedBytesPerSession: 8 * 1024 * 1024, maxBufferedBytes: 32 * 1024 * 1024 };

export interface GrpcServerOptions {
  /** Methods by path, `/package.Service/Method`. */
  readonly methods: ReadonlyMap<string, GrpcMethod>;
  /** Largest request message accepted, after decompression; larger ones answer RESOURCE_EXHAUSTED. */
  readonly maxMessageBytes: number;
  /** Bounds on what unfinished requests may hold; each one left out takes its {@link DEFAULT_GRPC_LIMITS} value. */
  readonly limits?: Partial<GrpcLimits>;
  /**
   * Serve TLS (HTTP/2 over TLS, ALPN `h2`) instead of cleartext HTTP/2. The
   * context is read when the server is created; {@link GrpcServer.setSecureContext}
   * replaces it for new connections (certificate rotation).
   */
  readonly tls?: tls.SecureContextOptions & { readonly requestCert?: boolean };
  /** Told about an exception a handler threw that was not a {@link GrpcError} (answered INTERNAL without its text). */
  readonly onError?: (error: unknown, path: string) => void;
  /** Retire each connection at an age, so that a client reconnects and a load balancer can move it; never when absent. */
  readonly maxConnectionAge?: MaxConnectionAge;
}

/**
 * When a connection is retired, as grpc-go's and grpc-js's `MaxConnectionAge`
 * and `MaxConnectionAgeGrace` do. Envoy and grpc clients keep an HTTP/2
 * connection for as long as it lives, so without an age every replica added
 * behind a Service or a TCP balancer stays idle while the old ones keep the load.
 */
export interface MaxConnectionAge {
  /** Age at which the connection is sent GOAWAY (no new calls; calls in flight go on), varied by ±10% per connection so that a fleet's connections do not all reconnect at once. */
  readonly ageMs: number;
  /** After the GOAWAY, how long calls still open may run before the connection is cut (they end UNAVAILABLE). */
  readonly graceMs: number;
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
  /** Replaces the TLS certificate, key and CA bundle for connections made from now on; a no-op without TLS. */
  setSecureContext(options: tls.SecureContextOptions): void;
  /** Bytes of unfinished requests held right now, over every connection (for tests and metrics). */
  bufferedBytes(): number;
  /** Connections accepted since the server started (for tests and metrics). */
  connectionsAccepted(): number;
}

const SUPPORTED_ENCODINGS = "identity,gzip,deflate";
const HEADER_BYTES = 5;

/** Creates the server; {@link GrpcServer.listen} binds it. */
export function createGrpcServer(options: GrpcServerOptions): GrpcServer {
  const { methods, maxMessageBytes } = options;
  const limits: GrpcLimits = { ...DEFAULT_GRPC_LIMITS, ...options.limits };
  const serverOptions: http2.ServerOptions = {
    // Node's default (10 MB) would refuse streams while a few 1 MB messages are buffered.
    maxSessionMemory: 64,
    settings: { maxConcurrentStreams: 1000 },
  };
  const server: http2.Http2Server | http2.Http2SecureServer =
    options.tls === undefined ? http2.createServer(serverOptions) : http2.createSecureServer({ ...serverOptions, ...options.tls, ALPNProtocols: ["h2"] });
  const sessions = new Set<http2.ServerHttp2Session>();
  const streamingCalls = new Set<() => void>();
  const reads = new MessageReads(limits);
  let closing = false;
  let accepted = 0;

  server.on("session", (session) => {
    accepted += 1;
    sessions.add(session);
    const stopAging = options.maxConnectionAge === undefined ? ignore : retireAtAge(session, options.maxConnectionAge);
    session.once("close", () => {
      sessions.delete(session);
      stopAging();
    });
    if (closing) session.close();
  });
  // A malformed connection or stream, or a failed TLS handshake, is the peer's problem; node:http2 already answered it.
  server.on("sessionError", ignore);
  server.on("tlsClientError", ignore);

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
    // The deadline runs from the call's first frame, so a message that never finishes still meets it.
    const deadline = deadlineOf(typeof timeout === "string" ? timeout : timeout?.[0]);
    if (deadline === INVALID) {
      respondStatus(stream, GrpcStatus.INTERNAL, `grpc-timeout ${String(timeout)} is malformed`);
      return;
    }
    reads.read(stream, encoding, maxMessageBytes, deadline, (error, request) => {
      if (error !== null) {
        refuse(stream, error.code, error.message);
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
    if (!isOpen(stream)) return;
    const endOnClose = () => end(GrpcStatus.UNAVAILABLE, "the server is shutting down");
    streamingCalls.add(endOnClose);
    stream.once("close", () => end(GrpcStatus.CANCELLED, ""));
    if (!attempt(() => stream.respond(RESPONSE_HEADERS, { waitForTrailers: true }))) {
      end(GrpcStatus.CANCELLED, "");
      return;
    }
    try {
      stop = handle(request, call, (message) => {
        if (!ended && isOpen(stream)) attempt(() => stream.write(frame(message)));
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
          reads.start();
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
          reads.stop();
          resolve();
        });
        for (const session of sessions) session.close();
      });
    },
    setSecureContext(context) {
      if (server instanceof tls.Server) server.setSecureContext(context);
    },
    bufferedBytes: () => reads.bufferedBytes,
    connectionsAccepted: () => accepted,
  };
}

/**
 * Retires a connection at its age: a graceful close, which sends GOAWAY naming
 * the last call received (the client opens no new call here, and those after it
 * are refused unprocessed, so safe to retry: grpc-js retries them by itself) and
 * ends the connection when its last call ends; then the cut once the grace has
 * passed. Not grpc-go's first GOAWAY naming every stream id: nghttp2 ignores any
 * stream that arrives after a GOAWAY it sent, so a call in that race would hang
 * until the cut instead of being refused at once (seen in the test). Returns what
 * cancels the timers.
 */
function retireAtAge(session: http2.ServerHttp2Session, { ageMs, graceMs }: MaxConnectionAge): () => void {
  let grace: NodeJS.Timeout | undefined;
  const jitter = ageMs * 0.1 * (2 * Math.random() - 1);
  const age = setTimeout(() => {
    if (session.closed || session.destroyed) return;
    grace = setTimeout(() => session.destroy(), graceMs);
    grace.unref();
    attempt(() => session.close());
  }, Math.min(MAX_TIMER_MS, Math.max(0, ageMs + jitter)));
  age.unref();
  return () => {
    clearTimeout(age);
    clearTimeout(grace);
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
  if (contentType === undefined || !isProtobufGrpc(contentType)) {
    return { status: 415, message: "content-type must be application/grpc or application/grpc+proto: this server speaks protobuf only" };
  }
  return null;
}

/**
 * `application/grpc`, optionally `+proto`, optionally with parameters. Other
 * codecs (`+json`, `+thrift`) would be decoded as protobuf and misread, so they
 * are refused (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md, Content-Type).
 */
function isProtobufGrpc(contentType: string): boolean {
  if (contentType === "application/grpc") return true;
  const semicolon = contentType.indexOf(";");
  const type = (semicolon === -1 ? contentType : contentType.slice(0, semicolon)).trim().toLowerCase();
  return type === "application/grpc" || type === "application/grpc+proto";
}

// Every function that answers a stream checks it is open and catches the write: a
// peer may reset the stream or destroy its session between any two events, and a
// throw here would reach no caller but the process (issue 13, finding 1).

function respondHttpError(stream: http2.ServerHttp2Stream, error: { status: number; message: string }): void {
  if (!isOpen(stream) || stream.headersSent) return;
  attempt(() => {
    stream.respond({ ":status": error.status, "content-type": "text/plain; charset=utf-8" });
    stream.end(`${error.message}\n`);
  });
}

/** One response message, then `grpc-status: 0` in the trailers. */
function respondMessage(stream: http2.ServerHttp2Stream, message: Uint8Array, framed: boolean): void {
  if (!isOpen(stream) || stream.headersSent) return;
  try {
    stream.respond(RESPONSE_HEADERS, { waitForTrailers: true });
    // node:http2 emits wantTrailers once per stream: `on` spares once's wrapper.
    stream.on("wantTrailers", sendOkTrailers);
    stream.end(framed ? message : frame(message));
  } catch {
    // Reset in between: nobody is left to answer.
  }
}

function sendOkTrailers(this: http2.ServerHttp2Stream): void {
  if (!isOpen(this)) return;
  try {
    this.sendTrailers(OK_TRAILERS);
  } catch {
    // Reset in between.
  }
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
  if (!isOpen(stream)) return;
  if (stream.headersSent) {
    sendTrailers(stream, code, message);
    return;
  }
  attempt(() => stream.respond({ ...RESPONSE_HEADERS, ...extra, ...statusHeaders(code, message) }, { endStream: true }));
}

/** Ends a stream whose headers were sent: the status goes in the trailers. */
function sendTrailers(stream: http2.ServerHttp2Stream, code: number, message: string): void {
  if (!isOpen(stream) || stream.writableEnded) return;
  stream.once("wantTrailers", () => {
    if (isOpen(stream)) attempt(() => stream.sendTrailers(statusHeaders(code, message)));
  });
  attempt(() => stream.end());
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
 * Collects request bodies and reads exactly one message from each, holding
 * every unfinished one to account: its bytes count against its connection and
 * the whole server, its deadline and idle time are swept on a timer (one for
 * every call, so the hot path arms none), and a reset stream is let go.
 */
class MessageReads {
  /**
   * Calls still receiving their message, as a list linked through the reads
   * themselves: on every call's path, a Set and a WeakMap keyed by session
   * measured several percent of a Check's CPU in the A/B against the server
   * without these guards.
   */
  private head: PendingRead | null = null;
  private sweeper: NodeJS.Timeout | undefined;
  bufferedBytes = 0;

  constructor(private readonly limits: GrpcLimits) {}

  start(): void {
    if (this.sweeper !== undefined) return;
    // A tenth of the idle timeout, at most 50 ms apart, so that a deadline is met within 50 ms while the message is still arriving.
    this.sweeper = setInterval(() => this.sweep(Date.now()), Math.max(5, Math.min(50, this.limits.idleTimeoutMs / 10)));
    this.sweeper.unref();
  }

  stop(): void {
    clearInterval(this.sweeper);
    this.sweeper = undefined;
    while (this.head !== null) this.finish(this.head);
  }

  /**
   * Answers through `done` once: a {@link GrpcError} for a body that is not one
   * whole message within the limits (as soon as that is known: a declared
   * length over the limit is refused when its prefix arrives), else the
   * message, decompressed. Never answers for a stream that was reset first.
   */
  read(stream: http2.ServerHttp2Stream, encoding: string, maxMessageBytes: number, deadline: number | null, done: (error: GrpcError | null, message: Buffer) => void): void {
    const session = stream.session;
    if (session === undefined || !isOpen(stream)) return;
    const accounted = session as AccountedSession;
    const account = accounted[ACCOUNT] ?? (accounted[ACCOUNT] = { bytes: 0 });
    if (this.bufferedBytes >= this.limits.maxBufferedBytes || account.bytes >= this.limits.maxBufferedBytesPerSession) {
      done(BUSY, EMPTY);
      return;
    }
    const read = new PendingRead(stream, account, encoding, deadline, done);
    read.next = this.head;
    if (this.head !== null) this.head.previous = read;
    this.head = read;
    stream.on("data", (chunk: Buffer) => {
      if (read.answered) return;
      read.lastDataMs = -1;
      read.received += chunk.length;
      // A compressed message may inflate past the limit; its compressed bytes may not pass it either.
      if (read.received > HEADER_BYTES + maxMessageBytes) return this.fail(read, tooLarge(maxMessageBytes));
      if (read.declared === -1 && read.received >= HEADER_BYTES) {
        const head = read.chunks.length === 0 ? chunk : Buffer.concat([...read.chunks, chunk]);
        read.declared = head.readUInt32BE(1);
        if (read.declared > maxMessageBytes) return this.fail(read, tooLarge(maxMessageBytes));
      }
      if (read.declared !== -1 && read.received > HEADER_BYTES + read.declared) return this.fail(read, MORE_THAN_ONE);
      if (this.bufferedBytes + chunk.length > this.limits.maxBufferedBytes || account.bytes + chunk.length > this.limits.maxBufferedBytesPerSession) {
        return this.fail(read, BUSY);
      }
      this.bufferedBytes += chunk.length;
      account.bytes += chunk.length;
      read.held += chunk.length;
      read.chunks.push(chunk);
    });
    stream.once("end", () => {
      if (read.answered) return;
      const body = read.chunks.length === 1 ? read.chunks[0]! : Buffer.concat(read.chunks, read.held);
      this.finish(read);
      // Node ends the readable side of a reset stream too: its caller is gone, and so is the need to answer.
      if (!isOpen(stream)) return;
      if (deadline !== null && Date.now() >= deadline) return done(DEADLINE, EMPTY);
      let message: Buffer;
      try {
        message = messageOf(body, encoding, maxMessageBytes);
      } catch (error) {
        return done(error instanceof GrpcError ? error : new GrpcError(GrpcStatus.INTERNAL, "the request message could not be read"), EMPTY);
      }
      done(null, message);
    });
  }

  private fail(read: PendingRead, error: GrpcError): void {
    this.finish(read);
    if (isOpen(read.stream)) read.done(error, EMPTY);
  }

  /** Stops counting a call's bytes; it answers at most once after this. */
  private finish(read: PendingRead): void {
    if (read.answered) return;
    read.answered = true;
    if (read.previous === null) this.head = read.next;
    else read.previous.next = read.next;
    if (read.next !== null) read.next.previous = read.previous;
    read.previous = read.next = null;
    this.bufferedBytes -= read.held;
    read.account.bytes -= read.held;
    read.held = 0;
    // INVARIANT: nothing is pushed once `answered` is set, so every finished read can share one empty list.
    read.chunks = NO_CHUNKS;
  }

  private sweep(nowMs: number): void {
    for (let read = this.head, next = read?.next ?? null; read !== null; read = next, next = read?.next ?? null) {
      if (!isOpen(read.stream)) this.finish(read);
      else if (read.deadline !== null && nowMs >= read.deadline) this.fail(read, DEADLINE);
      // The first sweep after data arrived starts the idle clock, which spares a clock read per chunk.
      else if (read.lastDataMs === -1) read.lastDataMs = nowMs;
      else if (nowMs - read.lastDataMs >= this.limits.idleTimeoutMs) this.fail(read, idle(this.limits.idleTimeoutMs));
    }
  }
}

/** One call whose message is still arriving. */
class PendingRead {
  chunks: Buffer[] = [];
  /** Bytes received, including those refused. */
  received = 0;
  /** Bytes in `chunks`, counted against the connection and the server. */
  held = 0;
  /** The length the prefix announced; -1 until the prefix has arrived. */
  declared = -1;
  /** When the sweep first saw this call idle; -1 when data arrived since the last sweep. */
  lastDataMs = -1;
  answered = false;
  previous: PendingRead | null = null;
  next: PendingRead | null = null;

  constructor(
    readonly stream: http2.ServerHttp2Stream,
    readonly account: { bytes: number },
    readonly encoding: string,
    readonly deadline: number | null,
    readonly done: (error: GrpcError | null, message: Buffer) => void,
  ) {}
}

/** Where a session keeps the bytes its unfinished requests hold. */
const ACCOUNT = Symbol("portcullis.bufferedBytes");
type AccountedSession = http2.Http2Session & { [ACCOUNT]?: { bytes: number } };

const EMPTY = Buffer.alloc(0);
const NO_CHUNKS: Buffer[] = [];
const BUSY = new GrpcError(GrpcStatus.RESOURCE_EXHAUSTED, "the server holds too many unfinished requests; retry later");
const DEADLINE = new GrpcError(GrpcStatus.DEADLINE_EXCEEDED, "deadline exceeded");
const MORE_THAN_ONE = new GrpcError(GrpcStatus.INTERNAL, "the request has more than one message; a unary call takes exactly one");
const tooLarge = (maxMessageBytes: number) => new GrpcError(GrpcStatus.RESOURCE_EXHAUSTED, `the request message is larger than ${maxMessageBytes} bytes`);
const idle = (idleTimeoutMs: number) => new GrpcError(GrpcStatus.DEADLINE_EXCEEDED, `the request message stalled: no data for ${idleTimeoutMs} ms`);

/** Whether a stream can still be answered: neither reset, closed nor destroyed. */
function isOpen(stream: http2.ServerHttp2Stream): boolean {
  return !stream.destroyed && !stream.closed;
}

/** Runs a write to a stream that may have died since it was checked; whether it went through. */
function attempt(write: () => void): boolean {
  try {
    write();
    return true;
  } catch {
    // The peer reset the stream or the session between the check and the write: nobody is left to answer.
    return false;
  }
}

/** Answers an error for a request that was not read to its end, then resets the stream so the peer stops sending. */
function refuse(stream: http2.ServerHttp2Stream, code: number, message: string): void {
  respondStatus(stream, code, message);
  if (stream.readableEnded) return;
  // On the next turn: Node 22 submits the response's HEADERS later in this one, and a
  // RST_STREAM sent first would reach the peer without the status (seen with grpc-js).
  setImmediate(resetAfterAnswer, stream);
}

function resetAfterAnswer(stream: http2.ServerHttp2Stream): void {
  if (!stream.destroyed && !stream.readableEnded) attempt(() => stream.close(http2.constants.NGHTTP2_NO_ERROR));
}

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
