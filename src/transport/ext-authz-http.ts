/**
 * ext_authz over plain HTTP, on the HTTP/1.1 port under one prefix (default
 * `/ext-authz`), for enforcement points that ask with a request of their own:
 *
 * | path | caller | original method, target, host |
 * | --- | --- | --- |
 * | `<prefix>/envoy<original path>` | Envoy's HTTP ext_authz service (`path_prefix: <prefix>/envoy`) | this request's method, the path after the prefix, `Host` |
 * | `<prefix>/nginx` | nginx `auth_request` | `X-Original-Method`, `X-Original-URI`, `Host` |
 * | `<prefix>/traefik` | Traefik ForwardAuth | `X-Forwarded-Method`, `X-Forwarded-Uri`, `X-Forwarded-Host` |
 *
 * Each caller has its own path so that no caller can be answered with headers
 * meant for another: behind Envoy, a client could otherwise send
 * `X-Original-URI` itself and have a path judged that it did not request.
 * Everything else is as in Envoy `Check`: the source IP is the peer, or from
 * `X-Forwarded-For`/`X-Real-IP` when the peer is a trusted proxy; certificate
 * headers and `X-Forwarded-Host` count only from a trusted proxy.
 *
 * Answers: allow is 200 with the identity headers, the client headers (rate
 * limits) and `x-envoy-auth-headers-to-remove: authorization` when the
 * credential is to be stripped; deny is the decision's status, headers,
 * `x-portcullis-code` and body. nginx's `auth_request` turns any status but
 * 2xx, 401 and 403 into a 500, so `<prefix>/nginx` answers 423, 429, 503 (and
 * 400) as 403 with `x-portcullis-status: <real status>`, and every denial there
 * also carries its body in `x-portcullis-body`, since nginx drops a
 * subrequest's body; docs/envoy.md shows the configuration that gives the
 * client the real status, headers and body.
 */
import type * as http from "node:http";
import type { AuthzInput, HeaderField } from "../engine/types.js";
import type { AuthorizeResult, Authorizer } from "../service/authorize.js";
import { isPromise } from "../service/maybe-promise.js";
import { AuthzInputWithCertificate, CERTIFICATE_HEADER_NAMES } from "./client-certificate.js";
import { CODE_HEADER } from "./envoy.js";
import { unmapPeerAddress, type TrustedProxies } from "./trusted-proxies.js";

/** The default path prefix, `--ext-authz-prefix`. */
export const DEFAULT_EXT_AUTHZ_PREFIX = "/ext-authz";

/** nginx mode: the decision's real HTTP status, when the response status had to be 401 or 403. */
export const STATUS_HEADER = "x-portcullis-status";
/** nginx mode: the error body, JSON with every non-ASCII character escaped, so that it fits in a header. */
export const BODY_HEADER = "x-portcullis-body";
/** Envoy's HTTP ext_authz removes the headers named here before forwarding an allowed request upstream. */
export const HEADERS_TO_REMOVE_HEADER = "x-envoy-auth-headers-to-remove";

/** Which enforcement point is asking, by path. */
export type ExtAuthzMode = "envoy" | "nginx" | "traefik";

export interface ExtAuthzOptions {
  /** Path prefix, without a trailing slash; default {@link DEFAULT_EXT_AUTHZ_PREFIX}. */
  readonly prefix: string;
  readonly trustedProxies: TrustedProxies;
  /** Told about a transport failure, which has already been answered as `unavailable`. */
  readonly onError?: (error: unknown, requestId: string) => void;
}

/**
 * Builds the handler. It returns `false` for paths outside the prefix (the
 * caller serves those) and answers everything under it, unknown sub-paths with 404.
 *
 * @example
 * const extAuthz = createExtAuthzHandler(authorize, { prefix: "/ext-authz", trustedProxies });
 * http.createServer((req, res) => extAuthz(req, res) || other(req, res));
 */
export function createExtAuthzHandler(authorize: Authorizer, options: ExtAuthzOptions): (request: http.IncomingMessage, response: http.ServerResponse) => boolean {
  const { prefix, trustedProxies } = options;
  const envoyPrefix = `${prefix}/envoy`;
  const nginxPath = `${prefix}/nginx`;
  const traefikPath = `${prefix}/traefik`;

  return (request, response) => {
    const url = request.url ?? "/";
    if (!url.startsWith(prefix) || (url.length > prefix.length && url[prefix.length] !== "/" && url[prefix.length] !== "?")) return false;
    // The request body (if any) is never read: ext_authz is configured without it.
    request.resume();
    let mode: ExtAuthzMode;
    let originalPath = "";
    if (url.startsWith(envoyPrefix) && (url.length === envoyPrefix.length || url[envoyPrefix.length] === "/")) {
      mode = "envoy";
      originalPath = url.length === envoyPrefix.length ? "/" : url.slice(envoyPrefix.length);
    } else if (pathOf(url) === nginxPath) {
      mode = "nginx";
    } else if (pathOf(url) === traefikPath) {
      mode = "traefik";
    } else {
      response.writeHead(404, { "content-type": "text/plain; charset=utf-8" });
      response.end(`unknown ext-authz endpoint: use ${envoyPrefix}/…, ${nginxPath} or ${traefikPath}\n`);
      return true;
    }
    const failed = (error: unknown): void => {
      // The authorizer never throws; this guards the conversion around it.
      options.onError?.(error, "");
      if (!response.destroyed) answerFailure(response, mode);
    };
    try {
      const result = authorize(inputFromHttpRequest(request, mode, originalPath, trustedProxies));
      if (!isPromise(result)) answer(response, result, mode);
      // why: the caller may have gone while the store was asked; there is no one left to answer
      else result.then((settled) => response.destroyed || answer(response, settled, mode)).catch(failed);
    } catch (error) {
      failed(error);
    }
    return true;
  };
}

/**
 * The neutral input for one ext-authz request. Exported for tests; the handler
 * is the only production caller.
 */
export function inputFromHttpRequest(request: http.IncomingMessage, mode: ExtAuthzMode, originalPath: string, trustedProxies: TrustedProxies): AuthzInput {
  // rawHeaders, not headers: Node keeps only the first of repeated `Authorization`
  // fields there, and a repeat must reach the engine as `duplicate_header`.
  const headers = new Map<string, string>();
  let setAside: Map<string, string> | null = null;
  const raw = request.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    const value = raw[i + 1]!;
    const target = CERTIFICATE_HEADER_NAMES.has(name) ? (setAside ??= new Map()) : headers;
    const previous = target.get(name);
    target.set(name, previous === undefined ? value : `${previous}, ${value}`);
  }

  const peer = unmapPeerAddress(request.socket.remoteAddress ?? "");
  const trusted = !trustedProxies.none && trustedProxies.isTrusted(peer);
  const sourceIp = trusted ? trustedProxies.clientAddress(peer, headers.get("x-forwarded-for"), headers.get("x-real-ip")) : peer;
  // The certificate is parsed only if the mTLS stage reads it.
  const forwarded = trusted ? setAside : null;
  const forwardedHost = trusted ? headers.get("x-forwarded-host") : undefined;
  const host = forwardedHost !== undefined && forwardedHost !== "" ? firstValue(forwardedHost) : (headers.get("host") ?? "");

  switch (mode) {
    case "envoy":
      return new AuthzInputWithCertificate(request.method ?? "", originalPath, host, headers, sourceIp, "", forwarded);
    case "nginx":
      return new AuthzInputWithCertificate(headers.get("x-original-method") ?? "", headers.get("x-original-uri") ?? "", host, headers, sourceIp, "", forwarded);
    case "traefik":
      return new AuthzInputWithCertificate(headers.get("x-forwarded-method") ?? "", headers.get("x-forwarded-uri") ?? "", host, headers, sourceIp, "", forwarded);
    default: {
      const unhandled: never = mode;
      throw new Error(`unhandled ext-authz mode ${String(unhandled)}`);
    }
  }
}

function answer(response: http.ServerResponse, result: AuthorizeResult, mode: ExtAuthzMode): void {
  const { decision, requestId } = result;
  const rendered = result.response;
  const headers: HeaderField[] = [...rendered.headers, [CODE_HEADER, decision.code], ["x-request-id", requestId]];
  if (decision.allowed) {
    headers.push(...decision.upstreamHeaders);
    if (result.stripCredential) headers.push([HEADERS_TO_REMOVE_HEADER, "authorization"]);
    write(response, 200, headers, "");
    return;
  }
  let status = rendered.httpStatus;
  if (mode === "nginx") {
    headers.push([STATUS_HEADER, String(status)], [BODY_HEADER, asciiOnly(rendered.body)]);
    if (status !== 401 && status !== 403) status = 403;
  }
  write(response, status, headers, rendered.body);
}

function answerFailure(response: http.ServerResponse, mode: ExtAuthzMode): void {
  const body = JSON.stringify({ message: "authorization could not be decided", code: "unavailable" });
  const headers: HeaderField[] = [["content-type", "application/json"], [CODE_HEADER, "unavailable"]];
  if (mode === "nginx") headers.push([STATUS_HEADER, "503"], [BODY_HEADER, body]);
  write(response, mode === "nginx" ? 403 : 503, headers, body);
}

function write(response: http.ServerResponse, status: number, headers: readonly HeaderField[], body: string): void {
  const flat: string[] = [];
  for (const [name, value] of headers) flat.push(name, value);
  flat.push("content-length", String(Buffer.byteLength(body)));
  response.writeHead(status, flat);
  response.end(body);
}

function pathOf(url: string): string {
  const query = url.indexOf("?");
  return query === -1 ? url : url.slice(0, query);
}

function firstValue(value: string): string {
  const comma = value.indexOf(",");
  return (comma === -1 ? value : value.slice(0, comma)).trim();
}

/** JSON with every character outside printable ASCII written as `\uXXXX`: still the same JSON, and a valid header value. */
function asciiOnly(json: string): string {
  return json.replace(/[^\x20-\x7e]/g, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`);
}
