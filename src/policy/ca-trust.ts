/**
 * The CA certificates a policy set names (`policySet.trustedCas`), used to find
 * which CAs stand above a client certificate when the TLS terminator reports
 * the certificate but not its issuer (Envoy's `ext_authz` sends only the leaf).
 *
 * An issuer is a CA certificate whose name matches the certificate's issuer
 * name and whose public key verifies the certificate's signature: a name alone
 * is what a forger copies. The search runs once per distinct set of presented
 * certificates and policy revision; its answers are cached by the presented
 * certificates' fingerprints, bounded by bytes, and only for certificates that
 * parsed. Pure: no I/O, no clock (validity is the terminator's check).
 */
import { X509Certificate, createHash } from "node:crypto";
import { LRUCache } from "lru-cache";
import type { PresentedCertificates } from "../engine/types.js";

/** Longest path searched above a leaf: real chains have one to three CAs. */
const MAX_DEPTH = 8;
/** Bytes the path cache may hold: keys (UTF-16) plus 128 per fingerprint in a path. */
const PATH_CACHE_BYTES = 1024 * 1024;

interface Ca {
  readonly certificate: X509Certificate;
  readonly sha256: string;
}

export class CaTrust {
  private readonly cas: readonly Ca[];
  private readonly bySha256: ReadonlyMap<string, Ca>;
  private readonly paths = new LRUCache<string, readonly string[]>({
    maxSize: PATH_CACHE_BYTES,
    sizeCalculation: (path, key) => 2 * key.length + 128 * (path.length + 1),
  });

  /** `certificates` must be CA certificates (`loadTrustedCas` checks it). */
  constructor(certificates: readonly X509Certificate[]) {
    this.cas = Object.freeze(certificates.map((certificate) => ({ certificate, sha256: sha256Hex(certificate.raw) })));
    this.bySha256 = new Map(this.cas.map((ca) => [ca.sha256, ca]));
  }

  /** How many CA certificates the policy set gave. */
  get size(): number {
    return this.cas.length;
  }

  /**
   * SHA-256 fingerprints (lower-case hex) of the CAs above the presented leaf,
   * its issuer first, each found by signature among the certificates sent
   * after the leaf and this policy set's CAs. Empty when no issuer is found or
   * the certificates do not parse.
   */
  caPathOf(presented: PresentedCertificates): readonly string[] {
    const cached = this.paths.get(presented.key);
    if (cached !== undefined) return cached;
    let path: readonly string[];
    try {
      const [leaf, ...sent] = presented.der.map((der) => new X509Certificate(der));
      if (leaf === undefined) return EMPTY;
      const candidates: Ca[] = sent.filter((c) => c.ca).map((certificate) => ({ certificate, sha256: sha256Hex(certificate.raw) }));
      path = Object.freeze(walkUp(leaf, [...candidates, ...this.cas]));
    } catch {
      // A certificate that does not parse is not remembered: it costs its sender, not the cache.
      return [];
    }
    this.paths.set(presented.key, path);
    return path;
  }

  /**
   * The CAs above an issuer known only by fingerprint (a Connect caller's
   * `issuer_sha256_fingerprint`, a proxy's `X-Client-Cert-Issuer-SHA256`):
   * the issuer itself, then what stands above it among this policy set's CAs.
   * Just the fingerprint when it is not one of them.
   */
  caPathAbove(issuerSha256: string): readonly string[] {
    const ca = this.bySha256.get(issuerSha256);
    if (ca === undefined) return issuerSha256 === "" ? EMPTY : [issuerSha256];
    // Its own key space: a presented certificate's key is its own fingerprint, and its path leaves it out.
    const key = `above:${issuerSha256}`;
    const cached = this.paths.get(key);
    if (cached !== undefined) return cached;
    const path = Object.freeze([issuerSha256, ...walkUp(ca.certificate, this.cas)]);
    this.paths.set(key, path);
    return path;
  }
}

const EMPTY: readonly string[] = Object.freeze([]);

/** Follows issuers by name and signature until a self-signed CA, an unknown issuer, a loop or {@link MAX_DEPTH}. */
function walkUp(start: X509Certificate, candidates: readonly Ca[]): string[] {
  const path: string[] = [];
  const seen = new Set<string>();
  let current = start;
  while (path.length < MAX_DEPTH) {
    const issuer = candidates.find((ca) => !seen.has(ca.sha256) && current.checkIssued(ca.certificate) && current.verify(ca.certificate.publicKey));
    if (issuer === undefined) break;
    path.push(issuer.sha256);
    seen.add(issuer.sha256);
    // A self-signed root ends the path; it would otherwise find itself again.
    if (issuer.certificate.checkIssued(issuer.certificate)) break;
    current = issuer.certificate;
  }
  return path;
}

/** SHA-256 of a DER certificate, lower-case hex: the form pins are compared in. */
export function sha256Hex(der: Buffer): string {
  return createHash("sha256").update(der).digest("hex");
}
