/**
 * `portcullis.v1` messages <-> the neutral input and result. Shared by the
 * Connect and the gRPC servers, which serve one implementation of the service.
 */
import { create, toBinary, type MessageInitShape, type UnknownField } from "@bufbuild/protobuf";
import { BinaryReader } from "@bufbuild/protobuf/wire";
import type { AuthzInput, ClientCertificateFacts, HeaderField, Identity } from "../engine/types.js";
import type { Explanation } from "../explain/explain.js";
import { AuthorizeResponseSchema, ExplanationSchema, type AuthorizeRequest, type AuthorizeResponse, type ClientCertificate } from "../gen/portcullis/v1/authorization_pb.js";
import type { AuthorizeResult, Authorizer } from "../service/authorize.js";
import { isPromise, type MaybePromise } from "../service/maybe-promise.js";
import { AuthzInputWithCertificate, certificateFromPem } from "./client-certificate.js";

/** Reads an `AuthorizeRequest`; repeated header names are combined as HTTP does (RFC 9110 §5.3). */
export function authzInputFromMessage(request: AuthorizeRequest): AuthzInput {
  const headers = new Map<string, string>();
  for (const { name, value } of request.headers) {
    const key = name.toLowerCase();
    const previous = headers.get(key);
    headers.set(key, previous === undefined ? value : `${previous}, ${value}`);
  }
  const cert = request.clientCertificate;
  if (cert !== undefined && cert.pem !== "") {
    // The PEM is parsed only if the mTLS stage reads it, as for Envoy's attribute.
    return new AuthzInputWithCertificate(request.method, request.path, request.host, headers, request.sourceIp, "", null, () => certificateFromMessagePem(cert));
  }
  let clientCertificate: ClientCertificateFacts | null = null;
  if (cert !== undefined && cert.sha256Fingerprint !== "") {
    clientCertificate = {
      sha256Fingerprint: normalizeFingerprint(cert.sha256Fingerprint),
      subject: cert.subject,
      issuerSha256Fingerprint: normalizeFingerprint(cert.issuerSha256Fingerprint),
      verified: cert.verified,
      notAfterMs: cert.notAfterUnixSeconds === 0n ? null : Number(cert.notAfterUnixSeconds) * 1000,
    };
  }
  return { method: request.method, path: request.path, host: request.host, headers, sourceIp: request.sourceIp, clientCertificate };
}

/**
 * Facts from a `ClientCertificate` that carries the certificate: read from the
 * PEM, verified as the caller says unless its stated fingerprint names another
 * certificate; a stated issuer fills in when the PEM carries no chain.
 */
function certificateFromMessagePem(cert: ClientCertificate): ClientCertificateFacts | null {
  const facts = certificateFromPem(cert.pem);
  if (facts === null) return null;
  const stated = normalizeFingerprint(cert.sha256Fingerprint);
  return {
    ...facts,
    issuerSha256Fingerprint: facts.issuerSha256Fingerprint || normalizeFingerprint(cert.issuerSha256Fingerprint),
    verified: cert.verified && (stated === "" || stated === facts.sha256Fingerprint),
  };
}

/** Lower-case hex without colons, the one form pins are compared in. */
export function normalizeFingerprint(value: string): string {
  return value.replace(/:/g, "").toLowerCase();
}

/**
 * The wire a response is written to. On a binary wire the token's part of an
 * answer (identity and upstream headers, most of its bytes) is copied from
 * bytes encoded once per token; JSON needs the fields themselves.
 */
export type ResponseWire = "binary" | "json";

/**
 * The wire named by a request's `content-type`: binary for Connect's
 * `application/proto` and for gRPC and gRPC-Web without `+json`; JSON for
 * anything else, which is always correct, only slower for a binary peer.
 */
export function responseWireOf(contentType: string | null): ResponseWire {
  if (contentType === null) return "json";
  const type = contentType.split(";", 1)[0]!.trim().toLowerCase();
  return BINARY_CONTENT_TYPES.has(type) ? "binary" : "json";
}

const BINARY_CONTENT_TYPES = new Set(["application/proto", "application/grpc", "application/grpc+proto", "application/grpc-web", "application/grpc-web+proto"]);

/** Writes an `AuthorizeResponse` carrying everything the decision says; see {@link ResponseWire}. */
export function messageFromResult(result: AuthorizeResult, wire: ResponseWire = "json"): AuthorizeResponse {
  const { decision, response } = result;
  const tokenPartAsBytes = wire === "binary" && Object.isFrozen(decision.upstreamHeaders) && (decision.identity === null || Object.isFrozen(decision.identity));
  const message = create(AuthorizeResponseSchema, {
    allowed: decision.allowed,
    httpStatus: response.httpStatus,
    code: decision.code,
    reason: decision.reason,
    message: decision.message,
    responseHeaders: response.headers.map(([name, value]) => ({ name, value })),
    body: response.body,
    upstreamHeaders: tokenPartAsBytes ? [] : upstreamHeaderMessages(decision.upstreamHeaders),
    identity: tokenPartAsBytes || decision.identity === null ? undefined : identityMessage(decision.identity),
    ruleId: decision.ruleId,
    auditEvent: decision.auditEvent ?? "",
    warnings: decision.warnings.map((warning) => ({ ...warning })),
    requestId: result.requestId,
    details: { ...decision.details },
    policyRevision: result.policyRevision,
  });
  if (tokenPartAsBytes) {
    // toBinary writes unknown fields verbatim after the known ones; field order does not matter on the wire.
    const headers = encodedOnce(encodedUpstreamHeaders, decision.upstreamHeaders, () => ({ upstreamHeaders: upstreamHeaderMessages(decision.upstreamHeaders) }));
    const identity = decision.identity === null ? [] : encodedOnce(encodedIdentities, decision.identity, () => ({ identity: identityMessage(decision.identity!) }));
    if (headers.length + identity.length > 0) message.$unknown = [...headers, ...identity];
  }
  return message;
}

function upstreamHeaderMessages(headers: readonly HeaderField[]): { name: string; value: string }[] {
  return headers.map(([name, value]) => ({ name, value }));
}

function identityMessage(identity: Identity) {
  return { ...identity, role: identity.role ?? "", scopes: [...identity.scopes] };
}

// The engine hands out one frozen identity and header list per token and policy revision.
const encodedIdentities = new WeakMap<Identity, readonly UnknownField[]>();
const encodedUpstreamHeaders = new WeakMap<readonly HeaderField[], readonly UnknownField[]>();

/** The fields `init` sets, encoded by protobuf-es once per `key` and kept as unknown fields. */
function encodedOnce<K extends object>(cache: WeakMap<K, readonly UnknownField[]>, key: K, init: () => MessageInitShape<typeof AuthorizeResponseSchema>): readonly UnknownField[] {
  let fields = cache.get(key);
  if (fields === undefined) {
    const reader = new BinaryReader(toBinary(AuthorizeResponseSchema, create(AuthorizeResponseSchema, init())));
    const read: UnknownField[] = [];
    while (reader.pos < reader.len) {
      const [no, wireType] = reader.tag();
      read.push({ no, wireType, data: reader.skip(wireType, no) });
    }
    fields = read;
    cache.set(key, fields);
  }
  return fields;
}

/**
 * Answers one `Authorize` request: decides, writes the answer and, when the
 * request asked for it and `explain` gives one (the caller may manage
 * tokens), adds the explanation. Both servers serve `Authorize` through this.
 */
export function answerAuthorize(
  request: AuthorizeRequest,
  authorize: Authorizer,
  wire: ResponseWire,
  explain?: (input: AuthzInput, result: AuthorizeResult) => MaybePromise<Explanation | null>,
): MaybePromise<AuthorizeResponse> {
  const input = authzInputFromMessage(request);
  const answer = (result: AuthorizeResult): MaybePromise<AuthorizeResponse> => {
    const message = messageFromResult(result, wire);
    if (!request.explain || explain === undefined) return message;
    const explanation = explain(input, result);
    return isPromise(explanation) ? explanation.then((e) => withExplanation(message, e)) : withExplanation(message, explanation);
  };
  const result = authorize(input);
  return isPromise(result) ? result.then(answer) : answer(result);
}

function withExplanation(message: AuthorizeResponse, explanation: Explanation | null): AuthorizeResponse {
  if (explanation !== null) {
    message.explanation = create(ExplanationSchema, {
      at: explanation.at,
      stages: explanation.stages.map((s) => ({ stage: s.stage, verdict: s.verdict, code: s.code ?? "", why: [...s.why] })),
    });
  }
  return message;
}
