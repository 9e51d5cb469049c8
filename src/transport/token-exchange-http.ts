/**
 * The plain HTTP side of JWT exchange on the HTTP/1.1 port:
 *
 * - `POST <tokenExchange.path>` (default `/v1/auth/exchange`) with
 *   `Authorization: Bearer <api token>` and an optional JSON body
 *   `{"scopes": [...], "lifetimeSeconds": 300}` answers 200
 *   `{"accessToken": "...", "expiresIn": 900, "tokenType": "Bearer"}`, or the
 *   decision's status, headers and error body in the policy set's dialect.
 * - `GET /.well-known/jwks.json` answers the public keys JWTs verify with
 *   (RFC 7517), for upstreams that verify JWTs themselves.
 *
 * The source IP and client certificate are read as for the ext-authz
 * endpoints: the peer, or what a trusted proxy forwards.
 */
import type * as http from "node:http";
import type { KeyRing } from "../jwt/key-ring.js";
import type { ExchangeOutcome, ExchangeRequest, TokenExchange } from "../jwt/token-exchange.js";
import { inputFromHttpRequest } from "./ext-authz-http.js";
import type { TrustedProxies } from "./trusted-proxies.js";

/** Where the JWKS is served (RFC 8414 §3 names the folder; the file name is the usual one). */
export const JWKS_PATH = "/.well-known/jwks.json";

/** The largest exchange body read: a scope list. */
const MAX_BODY_BYTES = 16 * 1024;

export interface TokenExchangeHttpOptions {
  readonly exchange: TokenExchange;
  readonly ring: KeyRing;
  readonly trustedProxies: TrustedProxies;
  readonly now: () => number;
}

/**
 * Builds the handler: `true` when it answered the request, `false` for every
 * other path. Both paths answer 404 while the policy set has no `tokenExchange`.
 */
export function createTokenExchangeHttpHandler(options: TokenExchangeHttpOptions): (request: http.IncomingMessage, response: http.ServerResponse) => boolean {
  return (request, response) => {
    const exchangePath = options.exchange.path();
    if (exchangePath === null) return false;
    const url = request.url ?? "/";
    const query = url.indexOf("?");
    const path = query === -1 ? url : url.slice(0, query);
    if (path === JWKS_PATH) {
      if (request.method !== "GET" && request.method !== "HEAD") return methodNotAllowed(response, "GET, HEAD");
      // why: a short cache, so that a rotated key reaches upstreams within minutes; verifiers refetch on an unknown kid anyway
      send(response, 200, { "content-type": "application/jwk-set+json", "cache-control": "public, max-age=300" }, JSON.stringify(options.ring.jwks(options.now())));
      return true;
    }
    if (path !== exchangePath) return false;
    if (request.method !== "POST") return methodNotAllowed(response, "POST");
    void readBody(request).then(
      async (body) => {
        const asked = body === null ? null : parseExchangeBody(body);
        if (asked === null) return send(response, 400, { "content-type": "application/json" }, JSON.stringify({ message: "the body must be empty or a json object with `scopes` (strings) and `lifetimeSeconds` (an integer)", code: "invalid_request" }));
        const input = inputFromHttpRequest(request, "envoy", url, options.trustedProxies);
        answer(response, await options.exchange.exchange(input, asked));
      },
      () => response.destroy(),
    );
    return true;
  };
}

/** Reads the exchange body; `null` when it is too large. */
function readBody(request: http.IncomingMessage): Promise<string | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let bytes = 0;
    request.on("data", (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes <= MAX_BODY_BYTES) chunks.push(chunk);
    });
    request.on("end", () => resolve(bytes > MAX_BODY_BYTES ? null : Buffer.concat(chunks).toString("utf8")));
    request.on("error", reject);
  });
}

/** The scopes and lifetime an exchange body asks for; `null` when it is not an empty body or such an object. */
export function parseExchangeBody(body: string): ExchangeRequest | null {
  if (body.trim() === "") return {};
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    return null;
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) return null;
  const { scopes, lifetimeSeconds } = value as Record<string, unknown>;
  if (scopes !== undefined && !(Array.isArray(scopes) && scopes.every((scope) => typeof scope === "string"))) return null;
  if (lifetimeSeconds !== undefined && !(typeof lifetimeSeconds === "number" && Number.isSafeInteger(lifetimeSeconds))) return null;
  return { ...(scopes === undefined ? {} : { scopes: scopes as string[] }), ...(lifetimeSeconds === undefined ? {} : { lifetimeSeconds }) };
}

function answer(response: http.ServerResponse, outcome: ExchangeOutcome): void {
  if (response.destroyed) return;
  if (outcome.ok) {
    // RFC 6749 §5.1: a response carrying a credential is never cached.
    send(response, 200, { "content-type": "application/json", "cache-control": "no-store", "x-request-id": outcome.requestId }, JSON.stringify({ accessToken: outcome.accessToken, expiresIn: outcome.expiresIn, tokenType: outcome.tokenType }));
    return;
  }
  const headers: Record<string, string> = { "x-request-id": outcome.requestId, "x-portcullis-code": outcome.decision.code };
  for (const [name, value] of outcome.response.headers) headers[name] = value;
  send(response, outcome.response.httpStatus, headers, outcome.response.body);
}

function methodNotAllowed(response: http.ServerResponse, allow: string): true {
  send(response, 405, { allow, "content-type": "text/plain; charset=utf-8" }, "method not allowed\n");
  return true;
}

function send(response: http.ServerResponse, status: number, headers: Record<string, string>, body: string): void {
  response.writeHead(status, { ...headers, "content-length": String(Buffer.byteLength(body)) });
  response.end(body);
}
