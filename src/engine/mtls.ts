/** The `mtls_required` stage: a verified, pinned, unexpired client certificate. */
import type { CaTrust } from "../policy/ca-trust.js";
import { normalizePin } from "../policy/controls.js";
import type { CompiledMtls } from "../policy/types.js";
import type { PreparedRequest } from "./request.js";
import type { ClientCertificateFacts, Denial, Warning } from "./types.js";

/** Certificates closer than this to their expiry pass with a `certificate_expiring` warning. */
export const CERTIFICATE_EXPIRY_WARNING_MS = 30 * 86_400_000;

/**
 * Checks the client certificate the transport reported, in this order: one
 * was presented, the terminator verified it, it has not expired
 * (`nowMs >= notAfterMs` is expired; an unknown expiry is left to the
 * terminator's verification), its fingerprint is pinned (when fingerprint
 * pins are set), and its issuer is pinned (when CA pins are set; both pin
 * kinds must hold when both are set). The CA case raises
 * `auth.api_token_mtls_ca_required`. A CA pin holds for any CA above the
 * certificate: its issuer, or a CA above that one, as `trust` (the policy
 * set's CA certificates) finds them by signature. Which headers count as
 * certificate facts is the transport's decision; this stage only reads them.
 */
export function checkMtls(
  request: PreparedRequest,
  mtls: CompiledMtls | null,
  nowMs: number,
  trust: CaTrust,
): { readonly ok: true; readonly warnings: readonly Warning[] } | { readonly ok: false; readonly denial: Denial } {
  if (mtls === null || !mtls.required) return PASS;
  const cert = request.input.clientCertificate;
  const deny = (reason: string, message: string, details: Record<string, string> = {}, ca = false) => ({
    ok: false as const,
    denial: { reason, message, ruleId: mtls.ruleId, details, ...(ca ? { auditEvent: "auth.api_token_mtls_ca_required" as const } : {}) },
  });
  if (cert === null) return deny("no_certificate", "this token requires a client certificate and none was presented");
  if (!cert.verified) return deny("unverified", "the client certificate was not verified by the tls terminator");
  if (cert.notAfterMs !== null && nowMs >= cert.notAfterMs) {
    return deny("certificate_expired", `the client certificate expired at \`${new Date(cert.notAfterMs).toISOString()}\``, {
      not_after: new Date(cert.notAfterMs).toISOString(),
    });
  }
  const fingerprint = normalizePin(cert.sha256Fingerprint);
  if (mtls.fingerprints.size > 0 && !mtls.fingerprints.has(fingerprint)) {
    return deny("certificate_not_pinned", "the client certificate is not one this token is pinned to", { certificate_sha256: fingerprint });
  }
  if (mtls.caFingerprints.size > 0) {
    const cas = casAbove(cert, trust);
    if (!cas.some((ca) => mtls.caFingerprints.has(ca))) {
      return deny("ca_not_pinned", "the client certificate was not issued by a ca this token trusts", { issuer_sha256: cas[0] ?? "" }, true);
    }
  }
  if (cert.notAfterMs !== null && cert.notAfterMs - nowMs < CERTIFICATE_EXPIRY_WARNING_MS) {
    const days = Math.floor((cert.notAfterMs - nowMs) / 86_400_000);
    return {
      ok: true,
      warnings: [
        {
          code: "certificate_expiring",
          message: `the client certificate expires ${days === 0 ? "within a day" : `in ${days} day${days === 1 ? "" : "s"}`}, at \`${new Date(cert.notAfterMs).toISOString()}\``,
        },
      ],
    };
  }
  return PASS;
}

/**
 * The CAs above a certificate, issuer first: found by signature from the
 * certificates themselves when the terminator sent them (a signature outranks
 * any stated issuer), else from the issuer fingerprint it stated. Read only
 * once a CA pin asks.
 */
function casAbove(cert: ClientCertificateFacts, trust: CaTrust): readonly string[] {
  const found = cert.presented === undefined ? [] : trust.caPathOf(cert.presented);
  return found.length > 0 ? found : trust.caPathAbove(normalizePin(cert.issuerSha256Fingerprint));
}

const PASS = { ok: true as const, warnings: [] as readonly Warning[] };
