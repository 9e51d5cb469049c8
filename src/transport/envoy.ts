/**
 * Envoy's external authorization over gRPC: `envoy.service.auth.v3.Authorization/Check`,
 * served on the gRPC port beside `Authorize`. It converts a `CheckRequest` to an
 * {@link AuthzInput}, asks the authorizer, and converts the answer to a
 * `CheckResponse`; it decides nothing. It always answers a well-formed
 * `CheckResponse`, even for bytes it cannot decode, so that Envoy's
 * `failure_mode_allow` never decides for us.
 *
 * Messages come from a subset of Envoy's protos (`proto/envoy/…`): same package,
 * names and field numbers, only the fields read here, so decoding skips the rest.
 * See https://www.envoyproxy.io/docs/envoy/latest/api-v3/service/auth/v3/external_auth.proto.
 */
import { randomUUID } from "node:crypto";
import { unavailable } from "../engine/decide.js";
import type { AuthzInput } from "../engine/types.js";
import { renderDecision } from "../render/render.js";
import type { AuthorizeResult, Authorizer } from "../service/authorize.js";
import { isPromise } from "../service/maybe-promise.js";
import { AuthzInputWithCertificate, CERTIFICATE_HEADER_NAMES, type ForwardedCertificateHeaders } from "./client-certificate.js";
import type { GrpcMethod } from "./grpc-server.js";
import { decodeCheckRequest, encodeFramedCheckResponse, type CheckAnswer, type CheckAttributes, type MetadataValue } from "./envoy-wire.js";
import type { TrustedProxies } from "./trusted-proxies.js";

/** The gRPC path Envoy calls. */
export const ENVOY_CHECK_PATH = "/envoy.service.auth.v3.Authorization/Check";

/** Header naming the decision code on every Envoy and HTTP-mode denial, for clients, logs and Istio's `headersToDownstreamOnDeny`. */
export const CODE_HEADER = "x-portcullis-code";

/** google.rpc.Code values Envoy reads in `CheckResponse.status`: OK allows, anything else denies. */
const RPC_OK = 0;
const RPC_PERMISSION_DENIED = 7;
const RPC_UNAUTHENTICATED = 16;

/** Everything the Check service needs. */
export interface EnvoyCheckOptions {
  readonly authorize: Authorizer;
  /** Peers (Envoy's `source.address`) whose forwarding and certificate headers are believed. */
  readonly trustedProxies: TrustedProxies;
  /** Told about a transport failure, which has already been answered with a 503 deny. */
  readonly onError?: (error: unknown, requestId: string) => void;
}

const isCertificateHeader = (name: string): boolean => CERTIFICATE_HEADER_NAMES.has(name);

/** Decodes `CheckRequest` bytes; certificate headers are set aside for {@link inputFromCheckAttributes}. */
export function decodeCheck(bytes: Buffer): CheckAttributes {
  return decodeCheckRequest(bytes, isCertificateHeader);
}

/**
 * Reads a decoded `CheckRequest` (https://www.envoyproxy.io/docs/envoy/latest/api-v3/service/auth/v3/attribute_context.proto):
 * - source IP from `attributes.source.address.socket_address.address`, replaced
 *   by `X-Forwarded-For`/`X-Real-IP` only when that address is a trusted proxy;
 * - method, raw path with query, host from `attributes.request.http`;
 * - headers from `headers` (Envoy merges repeats with commas, so two
 *   `Authorization` headers arrive as one value holding both) and `header_map`
 *   (`encode_raw_headers`, where repeats are merged here the same way);
 * - the client certificate from `attributes.source.certificate` (URL-encoded PEM,
 *   `include_peer_certificate`), else from a trusted proxy's certificate headers.
 *   Certificate headers never reach `AuthzInput.headers`, whoever sent them.
 *
 * `source.principal` and `tls_session.sni` are decoded but read by no stage yet.
 */
export function inputFromCheckAttributes(attributes: CheckAttributes, trustedProxies: TrustedProxies): AuthzInput {
  const { headers, sourceAddress } = attributes;
  let sourceIp = sourceAddress;
  let forwarded: ForwardedCertificateHeaders | null = null;
  if (!trustedProxies.none && trustedProxies.isTrusted(sourceAddress)) {
    sourceIp = trustedProxies.clientAddress(sourceAddress, headers.get("x-forwarded-for"), headers.get("x-real-ip"));
    forwarded = attributes.setAside;
  }
  // The certificate is parsed only if the mTLS stage reads it.
  return new AuthzInputWithCertificate(attributes.method, attributes.path, attributes.host, headers, sourceIp, attributes.certificate, forwarded);
}

/**
 * The `CheckResponse` for a result (https://www.envoyproxy.io/docs/envoy/latest/api-v3/service/auth/v3/external_auth.proto).
 *
 * Allow: `status` OK; `ok_response.headers` the identity headers for the
 * upstream, each overwriting any the client sent (`OVERWRITE_IF_EXISTS_OR_ADD`;
 * the deprecated `append` is left unset, which ext_authz reads as `false`);
 * `headers_to_remove: ["authorization"]` when the policy set strips the
 * credential; `response_headers_to_add` with the decision's client headers
 * (rate-limit headers).
 *
 * Deny: `status` UNAUTHENTICATED for 401, PERMISSION_DENIED otherwise, always
 * set, since an unset status reads as OK; `denied_response` with the HTTP status
 * (Envoy's `StatusCode` numbers are the HTTP ones), the rendered headers,
 * `x-portcullis-code`, `x-request-id`, and the body in the policy set's dialect.
 *
 * Both: `dynamic_metadata` with code, reason, rule_id, request_id and
 * policy_revision (of the policy set that decided), plus the identity fields
 * the policy set's `upstream.metadata` names when the token is known (by
 * default token_id, tenant, workspace, environment and role; scopes, a list,
 * only when named), under `envoy.filters.http.ext_authz` for access logs and RBAC.
 */
export function checkAnswerFromResult(result: AuthorizeResult): CheckAnswer {
  const { decision, response, requestId } = result;
  const metadata = new Map<string, MetadataValue>([
    ["code", decision.code],
    ["reason", decision.reason],
    ["rule_id", decision.ruleId],
    ["request_id", requestId],
    ["policy_revision", result.policyRevision],
  ]);
  const identityMetadata = decision.upstreamMetadata;
  if (decision.allowed) {
    return {
      rpcCode: RPC_OK,
      rpcMessage: "",
      denied: null,
      upstreamHeaders: decision.upstreamHeaders,
      headersToRemove: result.stripCredential ? STRIP_CREDENTIAL : [],
      responseHeadersToAdd: response.headers,
      metadata,
      identityMetadata,
    };
  }
  return {
    rpcCode: response.httpStatus === 401 ? RPC_UNAUTHENTICATED : RPC_PERMISSION_DENIED,
    rpcMessage: decision.message,
    denied: { httpStatus: response.httpStatus, headers: [...response.headers, [CODE_HEADER, decision.code], ["x-request-id", requestId]], body: response.body },
    upstreamHeaders: [],
    headersToRemove: [],
    responseHeadersToAdd: [],
    metadata,
    identityMetadata,
  };
}

const STRIP_CREDENTIAL: readonly string[] = ["authorization"];

/**
 * The whole Check: request message bytes to the response message, gRPC-framed
 * (its 5-byte prefix included). Never throws: bytes that do not decode, and
 * any exception here, answer a 503 deny.
 */
export function createEnvoyCheck(options: EnvoyCheckOptions): (requestBytes: Buffer) => Buffer | Promise<Buffer> {
  const { authorize, trustedProxies } = options;
  const failed = (error: unknown): Buffer => {
    const requestId = randomUUID();
    options.onError?.(error, requestId);
    return encodeFramedCheckResponse(failClosedAnswer(requestId));
  };
  const encode = (result: AuthorizeResult): Buffer => encodeFramedCheckResponse(checkAnswerFromResult(result));
  return (requestBytes) => {
    try {
      const result = authorize(inputFromCheckAttributes(decodeCheck(requestBytes), trustedProxies));
      return isPromise(result) ? result.then(encode).catch(failed) : encode(result);
    } catch (error) {
      return failed(error);
    }
  };
}

/** The answer when the transport itself fails: a deny with 503 in the canonical dialect, never an allow. */
export function failClosedAnswer(requestId: string): CheckAnswer {
  const decision = unavailable("authorization could not be decided");
  const response = renderDecision(decision, "canonical", requestId);
  return checkAnswerFromResult({ decision, response, requestId, stripCredential: true, policyRevision: "" });
}

/** `envoy.service.auth.v3.Authorization/Check` for the gRPC port: bytes in and out, so that decoding happens where its failure can still be answered. */
export function envoyAuthorizationMethods(options: EnvoyCheckOptions): Map<string, GrpcMethod> {
  const check = createEnvoyCheck(options);
  return new Map<string, GrpcMethod>([[ENVOY_CHECK_PATH, { kind: "unary", framed: true, handle: check }]]);
}
