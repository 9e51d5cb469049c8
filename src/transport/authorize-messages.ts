/**
 * `portcullis.v1` messages <-> the neutral input and result. Shared by the
 * Connect and the gRPC servers, which serve one implementation of the service.
 */
import { create } from "@bufbuild/protobuf";
import type { AuthzInput, ClientCertificateFacts } from "../engine/types.js";
import { AuthorizeResponseSchema, type AuthorizeRequest, type AuthorizeResponse } from "../gen/portcullis/v1/authorization_pb.js";
import type { AuthorizeResult } from "../service/authorize.js";

/** Reads an `AuthorizeRequest`; repeated header names are combined as HTTP does (RFC 9110 §5.3). */
export function authzInputFromMessage(request: AuthorizeRequest): AuthzInput {
  const headers = new Map<string, string>();
  for (const { name, value } of request.headers) {
    const key = name.toLowerCase();
    const previous = headers.get(key);
    headers.set(key, previous === undefined ? value : `${previous}, ${value}`);
  }
  const cert = request.clientCertificate;
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

/** Lower-case hex without colons, the one form pins are compared in. */
export function normalizeFingerprint(value: string): string {
  return value.replace(/:/g, "").toLowerCase();
}

/** Writes an `AuthorizeResponse` carrying everything the decision says. */
export function messageFromResult(result: AuthorizeResult): AuthorizeResponse {
  const { decision, response } = result;
  return create(AuthorizeResponseSchema, {
    allowed: decision.allowed,
    httpStatus: response.httpStatus,
    code: decision.code,
    reason: decision.reason,
    message: decision.message,
    responseHeaders: response.headers.map(([name, value]) => ({ name, value })),
    body: response.body,
    upstreamHeaders: decision.upstreamHeaders.map(([name, value]) => ({ name, value })),
    identity: decision.identity === null ? undefined : { ...decision.identity, role: decision.identity.role ?? "", scopes: [...decision.identity.scopes] },
    ruleId: decision.ruleId,
    auditEvent: decision.auditEvent ?? "",
    warnings: decision.warnings.map((warning) => ({ ...warning })),
    requestId: result.requestId,
    details: { ...decision.details },
  });
}
