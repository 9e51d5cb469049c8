/**
 * The HTTP/1.1 port: Connect and gRPC-Web for `Authorize` and `TokenService`,
 * the ext-authz prefix, the health probes and `/metrics`.
 */
import * as http from "node:http";
import * as https from "node:https";
import type { AddressInfo } from "node:net";
import type { TlsServerOptions } from "./tls-files.js";
import { createContextValues } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { Authorizer } from "../service/authorize.js";
import type { AuthorizeExplainer } from "../service/explain-decision.js";
import type { TokenServiceImpl } from "./token-service.js";
import type { TokenExchange } from "../jwt/token-exchange.js";
import { registerAuthorizationService } from "./connect.js";
import { peerAddressKey, registerTokenService } from "./token-service-connect.js";
import { createExtAuthzHandler, type ExtAuthzOptions } from "./ext-authz-http.js";

export interface HttpServerOptions {
  readonly authorize: Authorizer;
  /** Whether policies are loaded and the store is open: `/readyz` answers 200 only then. */
  readonly ready: () => boolean;
  /**
   * Lines `/readyz` adds to its body without changing its status, e.g. the
   * quota store's reachability: a dependency only some requests need. None when absent.
   */
  readonly readinessNotes?: () => readonly string[];
  /** The HTTP ext-authz endpoints (Envoy HTTP service, nginx `auth_request`, Traefik ForwardAuth); none when absent. */
  readonly extAuthz?: ExtAuthzOptions;
  /** `portcullis.v1.TokenService` (token management, guarded by Portcullis itself); not served when absent. */
  readonly tokenService?: TokenServiceImpl;
  /** Prometheus exposition at `/metrics`; not served when absent. */
  readonly metrics?: () => Promise<{ contentType: string; body: string }>;
  /** The read-only policy explorer under `/policy` (`createPolicyExplorerHandler`); not served when absent. */
  readonly policyExplorer?: (request: http.IncomingMessage, response: http.ServerResponse) => boolean;
  /** Answers `Authorize` requests that set `explain`, for callers it allows; absent, the flag is ignored. */
  readonly explain?: AuthorizeExplainer;
  /** Deadlines for a request to arrive; each one left out takes its {@link DEFAULT_HTTP_LIMITS} value. */
  readonly limits?: Partial<HttpLimits>;
  /** Serve HTTPS instead of HTTP; `setSecureContext` on the server replaces the certificate for new connections. */
  readonly tls?: TlsServerOptions;
  /** JWT exchange: `ExchangeToken` on Connect, and the plain HTTP exchange endpoint and JWKS (`createTokenExchangeHttpHandler`); neither when absent. */
  readonly tokenExchange?: { readonly exchange: TokenExchange; readonly http: (request: http.IncomingMessage, response: http.ServerResponse) => boolean };
}

/**
 * How long a client may take to send a request. Node's defaults (60 s for the
 * headers, 300 s for the whole request) let a slow client hold a connection and
 * its buffered body for minutes; an enforcement point sends a request in
 * microseconds.
 */
export interface HttpLimits {
  /** From the connection's first byte (or the previous response) to the end of the headers; past it 408 and close. Default 10 s. */
  readonly headersTimeoutMs: number;
  /** From the start of a request to the end of its body; past it 408 and close. Default 30 s. */
  readonly requestTimeoutMs: number;
  /** An idle keep-alive connection is closed after this. Default 65 s, longer than the 60 s nginx and Envoy keep theirs, so that they close first and never send on a connection being closed. */
  readonly keepAliveTimeoutMs: number;
  /**
   * Bytes all request bodies still being read may announce together (their
   * `Content-Length`, or the 1 MiB limit when chunked); a request that would
   * pass it is answered 503 at once instead of being buffered. Default 32 MiB.
   */
  readonly maxBufferedBodyBytes: number;
}

export const DEFAULT_HTTP_LIMITS: HttpLimits = { headersTimeoutMs: 10_000, requestTimeoutMs: 30_000, keepAliveTimeoutMs: 65_000, maxBufferedBodyBytes: 32 * 1024 * 1024 };

/** The largest request body read (Connect), also what a chunked body is assumed to reach. */
const READ_MAX_BYTES = 1024 * 1024;

/** The HTTP/1.1 port's server: cleartext, or TLS when configured. */
export type HttpPortServer = http.Server | https.Server;

/** Creates the HTTP/1.1 server; {@link listenHttp} binds it. */
export function createHttpServer(options: HttpServerOptions): HttpPortServer {
  const connect = connectNodeAdapter({
    routes: (router) => {
      registerAuthorizationService(router, options.authorize, options.explain);
      if (options.tokenService !== undefined) registerTokenService(router, options.tokenService, options.tokenExchange?.exchange);
    },
    // The token service's guard judges the caller's own address, as its token's IP allowlist asks.
    contextValues: (request) => createContextValues().set(peerAddressKey, request.socket.remoteAddress ?? ""),
    // Decisions are small; a larger body is not a request we need to read.
    readMaxBytes: READ_MAX_BYTES,
  });
  const extAuthz = options.extAuthz === undefined ? null : createExtAuthzHandler(options.authorize, options.extAuthz);
  const handle = (request: http.IncomingMessage, response: http.ServerResponse): void => {
    if (extAuthz !== null && extAuthz(request, response)) return;
    if (options.tokenExchange !== undefined && options.tokenExchange.http(request, response)) return;
    const path = request.url ?? "/";
    if (path === "/healthz") return plain(response, 200, "ok\n");
    if (path === "/readyz") {
      const notes = options.readinessNotes?.() ?? [];
      const lines = notes.length === 0 ? "" : `${notes.join("\n")}\n`;
      return options.ready() ? plain(response, 200, `ready\n${lines}`) : plain(response, 503, `not ready\n${lines}`);
    }
    if (path === "/metrics" && options.metrics !== undefined) return void serveMetrics(response, options.metrics);
    if (options.policyExplorer !== undefined && options.policyExplorer(request, response)) return;
    const announced = announcedBodyBytes(request);
    if (announced > 0) {
      if (bodyBytes + announced > limits.maxBufferedBodyBytes) return refuseBody(response);
      bodyBytes += announced;
      // Emitted once the request is done with, read to its end or cut off.
      request.once("close", () => (bodyBytes -= announced));
    }
    connect(request, response);
  };
  const limits: HttpLimits = { ...DEFAULT_HTTP_LIMITS, ...options.limits };
  let bodyBytes = 0;
  const serverOptions: http.ServerOptions = {
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    // Node checks both timeouts on this interval (default 30 s), so it bounds how late they fire.
    connectionsCheckingInterval: Math.max(50, Math.min(1_000, limits.headersTimeoutMs / 4)),
  };
  if (options.tls === undefined) return http.createServer(serverOptions, handle);
  const server = https.createServer({ ...serverOptions, ...options.tls }, handle);
  // A failed handshake is the client's problem; without a listener Node only destroys the socket, which is all it needs.
  server.on("tlsClientError", () => undefined);
  return server;
}

/** What a request's body may hold once read: its `Content-Length` (up to the read limit), the read limit when chunked, 0 without a body. */
function announcedBodyBytes(request: http.IncomingMessage): number {
  const length = request.headers["content-length"];
  if (length !== undefined) return Math.min(Number(length) || 0, READ_MAX_BYTES);
  return request.headers["transfer-encoding"] === undefined ? 0 : READ_MAX_BYTES;
}

function refuseBody(response: http.ServerResponse): void {
  const body = "the server holds too many unfinished request bodies; retry later\n";
  // The body is not read: close the connection rather than drain it.
  response.writeHead(503, { "content-type": "text/plain; charset=utf-8", "content-length": Buffer.byteLength(body), "retry-after": "1", connection: "close" });
  response.end(body);
}

async function serveMetrics(response: http.ServerResponse, metrics: NonNullable<HttpServerOptions["metrics"]>): Promise<void> {
  try {
    const { contentType, body } = await metrics();
    response.writeHead(200, { "content-type": contentType, "content-length": Buffer.byteLength(body) });
    response.end(body);
  } catch {
    plain(response, 500, "metrics unavailable\n");
  }
}

function plain(response: http.ServerResponse, status: number, body: string): void {
  response.writeHead(status, { "content-type": "text/plain; charset=utf-8", "content-length": Buffer.byteLength(body) });
  response.end(body);
}

/** Binds the server and resolves to the bound port (port 0 picks a free one). */
export function listenHttp(server: HttpPortServer, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

/** Stops accepting connections and closes idle ones; resolves when all are gone or after `graceMs`. */
export function closeHttp(server: HttpPortServer, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      server.closeAllConnections();
      resolve();
    }, graceMs);
    server.close(() => {
      clearTimeout(timer);
      resolve();
    });
    server.closeIdleConnections();
  });
}
