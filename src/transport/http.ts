/**
 * The HTTP/1.1 port: Connect and gRPC-Web for `Authorize` and `TokenService`,
 * the ext-authz prefix, the health probes and `/metrics`.
 */
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { createContextValues } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { Authorizer } from "../service/authorize.js";
import type { AuthorizeExplainer } from "../service/explain-decision.js";
import type { TokenServiceImpl } from "../service/token-service.js";
import { registerAuthorizationService } from "./connect.js";
import { peerAddressKey, registerTokenService } from "./token-service-connect.js";
import { createExtAuthzHandler, type ExtAuthzOptions } from "./ext-authz-http.js";

export interface HttpServerOptions {
  readonly authorize: Authorizer;
  /** Whether policies are loaded and the store is open: `/readyz` answers 200 only then. */
  readonly ready: () => boolean;
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
}

/** Creates the HTTP/1.1 server; {@link listenHttp} binds it. */
export function createHttpServer(options: HttpServerOptions): http.Server {
  const connect = connectNodeAdapter({
    routes: (router) => {
      registerAuthorizationService(router, options.authorize, options.explain);
      if (options.tokenService !== undefined) registerTokenService(router, options.tokenService);
    },
    // The token service's guard judges the caller's own address, as its token's IP allowlist asks.
    contextValues: (request) => createContextValues().set(peerAddressKey, request.socket.remoteAddress ?? ""),
    // Decisions are small; a larger body is not a request we need to read.
    readMaxBytes: 1024 * 1024,
  });
  const extAuthz = options.extAuthz === undefined ? null : createExtAuthzHandler(options.authorize, options.extAuthz);
  return http.createServer((request, response) => {
    if (extAuthz !== null && extAuthz(request, response)) return;
    const path = request.url ?? "/";
    if (path === "/healthz") return plain(response, 200, "ok\n");
    if (path === "/readyz") return options.ready() ? plain(response, 200, "ready\n") : plain(response, 503, "not ready\n");
    if (path === "/metrics" && options.metrics !== undefined) return void serveMetrics(response, options.metrics);
    if (options.policyExplorer !== undefined && options.policyExplorer(request, response)) return;
    connect(request, response);
  });
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
export function listenHttp(server: http.Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

/** Stops accepting connections and closes idle ones; resolves when all are gone or after `graceMs`. */
export function closeHttp(server: http.Server, graceMs: number): Promise<void> {
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
