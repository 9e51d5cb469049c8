/**
 * Client certificate facts from what a TLS terminator reports: Envoy's peer
 * certificate attribute, or the headers a trusted proxy adds (Envoy's
 * `x-forwarded-client-cert`, RFC 9440 `Client-Cert`, nginx's escaped PEM, or
 * plain fingerprint headers). Parsing a certificate costs tens of microseconds,
 * so every successful parse is cached by the exact text it came from: a
 * returning client costs one map look-up.
 *
 * The text comes from whoever calls the port, so nothing here may grow with it
 * (issue 13): transports parse only when a stage reads the certificate
 * ({@link AuthzInputWithCertificate}, after the token was found), text over
 * {@link MAX_CERTIFICATE_TEXT_CHARS} is not parsed at all, a failed parse is not
 * cached, and the caches are bounded by bytes, not entries.
 */
import { X509Certificate } from "node:crypto";
import { LRUCache } from "lru-cache";
import type { AuthzInput, ClientCertificateFacts, PresentedCertificates } from "../engine/types.js";
import { sha256Hex } from "../policy/ca-trust.js";

/**
 * Request headers through which a trusted proxy reports the client certificate.
 * Transports take them out of `AuthzInput.headers` for every peer and honour
 * them, through {@link certificateFromForwardedHeaders}, only from a trusted proxy.
 */
export const CERTIFICATE_HEADERS = {
  /** Envoy's XFCC: `Hash=<sha256 hex>;Cert="<url-encoded PEM>";Chain=…;Subject="…"`, one element per hop. */
  xfcc: "x-forwarded-client-cert",
  /** RFC 9440: the DER certificate as a structured-field byte sequence, `:<base64>:`. */
  clientCert: "client-cert",
  /** RFC 9440: the chain without the leaf, issuer first, as a list of byte sequences. */
  clientCertChain: "client-cert-chain",
  /** nginx's `$ssl_client_escaped_cert`: the URL-encoded PEM certificate. */
  escapedCert: "x-ssl-client-escaped-cert",
  /** SHA-256 of the DER certificate, hex, colons allowed. */
  sha256: "x-client-cert-sha256",
  /** Subject distinguished name, with {@link CERTIFICATE_HEADERS.sha256}. */
  subject: "x-client-cert-subject",
  /** SHA-256 of the issuing CA certificate, hex, colons allowed; fills the issuer when the other forms cannot. */
  issuerSha256: "x-client-cert-issuer-sha256",
  /** nginx's `$ssl_client_verify`: `SUCCESS`, `FAILED:<reason>` or `NONE`. Anything but `SUCCESS` marks the certificate unverified. */
  verify: "x-ssl-client-verify",
} as const;

/** The names of {@link CERTIFICATE_HEADERS}, for a transport's header loop. */
export const CERTIFICATE_HEADER_NAMES: ReadonlySet<string> = new Set(Object.values(CERTIFICATE_HEADERS));

/** What a certificate says about itself, before anyone vouches for it. */
interface CertificateSummary {
  readonly sha256Fingerprint: string;
  readonly subject: string;
  readonly issuerSha256Fingerprint: string;
  readonly notAfterMs: number | null;
  /** The certificates, when the form carried them (not only a fingerprint). */
  readonly presented?: PresentedCertificates;
}

/**
 * The longest certificate text read, in characters: a URL-encoded leaf is 1–3 KB
 * and a chain of a few certificates under 16 KB. Longer text counts as no
 * certificate, which an mTLS control denies.
 */
export const MAX_CERTIFICATE_TEXT_CHARS = 64 * 1024;
/** Bytes each cache may hold, keys (UTF-16) and kept DER included: about 600 typical certificates. */
const CACHE_BYTES = 4 * 1024 * 1024;
const SUMMARY_BYTES = 400;
const cacheOptions = {
  maxSize: CACHE_BYTES,
  // The DER kept for the policy set's CA search is counted too: it is shorter than the text it came from.
  sizeCalculation: (summary: CertificateSummary, key: string) => 2 * key.length + SUMMARY_BYTES + (summary.presented?.der.reduce((sum, der) => sum + der.length, 0) ?? 0),
};
// One cache per encoding, keyed by the text exactly as received, so that a hit skips decoding too.
const byUrlEncodedPem = new LRUCache<string, CertificateSummary>(cacheOptions);
const byDerBase64 = new LRUCache<string, CertificateSummary>(cacheOptions);

/** Bytes the certificate caches hold now, by the measure their bound uses. */
export function certificateCacheBytes(): number {
  return byUrlEncodedPem.calculatedSize + byDerBase64.calculatedSize;
}

/**
 * An {@link AuthzInput} whose client certificate is parsed the first time a
 * stage reads it, and never when no stage does: most tokens carry no mTLS
 * control, and a request with a bad token is denied before the mTLS stage.
 * `envoyCertificate` is Envoy's `source.certificate` (`""` when absent);
 * `forwarded` the certificate headers of a trusted proxy (null when the peer is
 * not one), read when Envoy's attribute gives no certificate, and for the
 * chain when the proxy reports the same leaf with its chain (Envoy's attribute
 * carries the leaf alone).
 */
export class AuthzInputWithCertificate implements AuthzInput {
  private certificate: ClientCertificateFacts | null | undefined = undefined;

  constructor(
    readonly method: string,
    readonly path: string,
    readonly host: string,
    readonly headers: ReadonlyMap<string, string>,
    readonly sourceIp: string,
    private readonly envoyCertificate: string,
    private readonly forwarded: ForwardedCertificateHeaders | null,
    /** Reads the certificate from another source (a Connect caller's PEM) instead of the two above. */
    private readonly read?: () => ClientCertificateFacts | null,
  ) {}

  get clientCertificate(): ClientCertificateFacts | null {
    if (this.certificate === undefined && this.read !== undefined) this.certificate = this.read();
    if (this.certificate === undefined) {
      const facts = this.envoyCertificate === "" ? null : certificateFromEnvoyAttribute(this.envoyCertificate);
      const forwarded = this.forwarded === null ? null : certificateFromForwardedHeaders(this.forwarded);
      this.certificate = facts === null ? forwarded : withForwardedChain(facts, forwarded);
    }
    return this.certificate;
  }
}

/**
 * Facts from Envoy's `attributes.source.certificate`: the URL-encoded PEM of the
 * peer certificate, sent only with `include_peer_certificate: true`. Envoy sends
 * it for a completed mutual-TLS handshake, so it counts as verified (configure a
 * `validation_context`, or Envoy accepts any certificate). Further PEM blocks,
 * when present, are searched for the issuer; otherwise the issuer fingerprint is
 * empty. `null` when the text holds no parseable certificate.
 */
export function certificateFromEnvoyAttribute(urlEncodedPem: string): ClientCertificateFacts | null {
  const summary = summaryFromUrlEncodedPem(urlEncodedPem);
  return summary === null ? null : { ...summary, verified: true };
}

/**
 * Facts from a PEM certificate, plain or URL-encoded, with any chain after it,
 * not yet verified (the caller decides whom to believe). `null` when the text
 * holds no parseable certificate.
 */
export function certificateFromPem(pem: string): ClientCertificateFacts | null {
  const summary = summaryFromUrlEncodedPem(pem);
  return summary === null ? null : { ...summary, verified: false };
}

/** `facts` with the chain a trusted proxy reported for the same leaf, when it reported more certificates. */
function withForwardedChain(facts: ClientCertificateFacts, forwarded: ClientCertificateFacts | null): ClientCertificateFacts {
  if (forwarded?.presented === undefined || forwarded.sha256Fingerprint !== facts.sha256Fingerprint) return facts;
  if (forwarded.presented.der.length <= (facts.presented?.der.length ?? 0)) return facts;
  return { ...facts, presented: forwarded.presented, issuerSha256Fingerprint: facts.issuerSha256Fingerprint || forwarded.issuerSha256Fingerprint };
}

/** The headers of {@link CERTIFICATE_HEADERS} a request carried, by lower-case name. */
export type ForwardedCertificateHeaders = ReadonlyMap<string, string>;

/**
 * Facts from a trusted proxy's headers; call it only when the peer is one. The
 * first form present wins: XFCC, RFC 9440 `Client-Cert`, nginx's escaped PEM,
 * then `X-Client-Cert-SHA256` with `X-Client-Cert-Subject`.
 *
 * Verification: XFCC and `Client-Cert` are only added for a certificate the
 * proxy accepted, so they count as verified; the escaped PEM and the plain
 * fingerprint count only with `X-SSL-Client-Verify: SUCCESS`. Whatever the form,
 * an `X-SSL-Client-Verify` other than `SUCCESS` marks it unverified, and so does
 * an XFCC `Hash` that disagrees with its own `Cert`. `X-Client-Cert-Issuer-SHA256`
 * fills the issuer when the form carries no chain to compute it from.
 */
export function certificateFromForwardedHeaders(headers: ForwardedCertificateHeaders): ClientCertificateFacts | null {
  if (headers.size === 0) return null;
  const verify = headers.get(CERTIFICATE_HEADERS.verify);
  const verifySays = verify === undefined ? undefined : verify.trim() === "SUCCESS";
  let summary: CertificateSummary | null = null;
  let vouched = false;

  const xfcc = headers.get(CERTIFICATE_HEADERS.xfcc);
  const clientCert = headers.get(CERTIFICATE_HEADERS.clientCert);
  const escaped = headers.get(CERTIFICATE_HEADERS.escapedCert);
  const sha256 = headers.get(CERTIFICATE_HEADERS.sha256);
  if (xfcc !== undefined && xfcc !== "") {
    const fromXfcc = summaryFromXfcc(xfcc);
    if (fromXfcc !== null) [summary, vouched] = [fromXfcc.summary, fromXfcc.consistent];
  } else if (clientCert !== undefined && clientCert !== "") {
    summary = summaryFromRfc9440(clientCert, headers.get(CERTIFICATE_HEADERS.clientCertChain));
    vouched = true;
  } else if (escaped !== undefined && escaped !== "") {
    summary = summaryFromUrlEncodedPem(escaped);
    vouched = verifySays === true;
  } else if (sha256 !== undefined && sha256 !== "") {
    const fingerprint = normalizeHex(sha256);
    if (fingerprint !== null) {
      summary = { sha256Fingerprint: fingerprint, subject: headers.get(CERTIFICATE_HEADERS.subject) ?? "", issuerSha256Fingerprint: "", notAfterMs: null };
      vouched = verifySays === true;
    }
  }
  if (summary === null) return null;

  let issuer = summary.issuerSha256Fingerprint;
  if (issuer === "") issuer = normalizeHex(headers.get(CERTIFICATE_HEADERS.issuerSha256) ?? "") ?? "";
  return { ...summary, issuerSha256Fingerprint: issuer, verified: vouched && verifySays !== false };
}

function summaryFromUrlEncodedPem(urlEncodedPem: string): CertificateSummary | null {
  if (urlEncodedPem.length > MAX_CERTIFICATE_TEXT_CHARS) return null;
  const cached = byUrlEncodedPem.get(urlEncodedPem);
  if (cached !== undefined) return cached;
  let summary: CertificateSummary | null = null;
  try {
    summary = summaryFromCertificates(parsePemBlocks(decodeURIComponent(urlEncodedPem)));
  } catch {
    summary = null;
  }
  // A failure is not cached: text that fails costs its sender a parse each time, and nobody any memory.
  if (summary !== null) byUrlEncodedPem.set(urlEncodedPem, summary);
  return summary;
}

function summaryFromRfc9440(clientCert: string, chain: string | undefined): CertificateSummary | null {
  const key = chain === undefined ? clientCert : `${clientCert}\n${chain}`;
  if (key.length > MAX_CERTIFICATE_TEXT_CHARS) return null;
  const cached = byDerBase64.get(key);
  if (cached !== undefined) return cached;
  let summary: CertificateSummary | null = null;
  try {
    const leaf = byteSequence(clientCert);
    if (leaf !== null) {
      const certificates = [new X509Certificate(leaf)];
      for (const item of chain === undefined ? [] : splitOutsideQuotes(chain, ",")) {
        const der = byteSequence(item);
        if (der !== null) certificates.push(new X509Certificate(der));
      }
      summary = summaryFromCertificates(certificates);
    }
  } catch {
    summary = null;
  }
  if (summary !== null) byDerBase64.set(key, summary);
  return summary;
}

/** The last XFCC element (the one the nearest proxy added) as a summary, and whether its `Hash` agrees with its `Cert`. */
function summaryFromXfcc(value: string): { summary: CertificateSummary; consistent: boolean } | null {
  const element = parseXfcc(value).at(-1);
  if (element === undefined) return null;
  const hash = element.get("hash");
  const cert = element.get("cert");
  if (cert !== undefined && cert !== "") {
    const chain = element.get("chain");
    const summary = summaryFromUrlEncodedPem(chain !== undefined && chain !== "" ? `${cert}\n${chain}` : cert);
    if (summary === null) return null;
    const consistent = hash === undefined || normalizeHex(hash) === summary.sha256Fingerprint;
    return { summary, consistent };
  }
  const fingerprint = hash === undefined ? null : normalizeHex(hash);
  if (fingerprint === null) return null;
  return { summary: { sha256Fingerprint: fingerprint, subject: element.get("subject") ?? "", issuerSha256Fingerprint: "", notAfterMs: null }, consistent: true };
}

/**
 * Parses `x-forwarded-client-cert` into its elements, each a map of lower-case
 * keys to unquoted values. Elements are separated by `,`, pairs by `;`, and a
 * value may be double-quoted to hold either (with `\"` for a quote), as in
 * https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_conn_man/headers#x-forwarded-client-cert.
 */
export function parseXfcc(value: string): Map<string, string>[] {
  const elements: Map<string, string>[] = [];
  for (const rawElement of splitOutsideQuotes(value, ",")) {
    const element = new Map<string, string>();
    for (const pair of splitOutsideQuotes(rawElement, ";")) {
      const equals = pair.indexOf("=");
      if (equals <= 0) continue;
      const key = pair.slice(0, equals).trim().toLowerCase();
      let item = pair.slice(equals + 1).trim();
      if (item.length >= 2 && item.startsWith('"') && item.endsWith('"')) item = item.slice(1, -1).replace(/\\(.)/g, "$1");
      // URI and DNS may repeat; the first is kept, as nothing here reads them.
      if (!element.has(key)) element.set(key, item);
    }
    if (element.size > 0) elements.push(element);
  }
  return elements;
}

function splitOutsideQuotes(text: string, separator: string): string[] {
  const parts: string[] = [];
  let quoted = false;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const char = text[i];
    if (char === "\\" && quoted) i++;
    else if (char === '"') quoted = !quoted;
    else if (char === separator && !quoted) {
      parts.push(text.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(text.slice(start));
  return parts.map((part) => part.trim()).filter((part) => part !== "");
}

/** An RFC 8941 byte sequence, `:<base64>:`, as bytes; `null` when it is not one. */
function byteSequence(item: string): Buffer | null {
  const text = item.trim();
  if (text.length < 2 || !text.startsWith(":") || !text.endsWith(":")) return null;
  const base64 = text.slice(1, -1);
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(base64)) return null;
  return Buffer.from(base64, "base64");
}

const PEM_BLOCK = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g;

function parsePemBlocks(pem: string): X509Certificate[] {
  return (pem.match(PEM_BLOCK) ?? []).map((block) => new X509Certificate(block));
}

/**
 * Leaf first; the issuer is whichever later certificate issued and signed the
 * leaf. The certificates are kept (each once: XFCC's `Chain` repeats the leaf)
 * for the policy set's CA search.
 */
function summaryFromCertificates(certificates: readonly X509Certificate[]): CertificateSummary | null {
  const leaf = certificates[0];
  if (leaf === undefined) return null;
  const issuer = certificates.slice(1).find((candidate) => leaf.checkIssued(candidate) && leaf.verify(candidate.publicKey));
  const notAfterMs = Date.parse(leaf.validTo);
  const der = new Map<string, Buffer>();
  for (const certificate of certificates) {
    const raw = certificate.raw;
    const fingerprint = sha256Hex(raw);
    if (!der.has(fingerprint)) der.set(fingerprint, raw);
  }
  const fingerprints = [...der.keys()];
  return {
    sha256Fingerprint: fingerprints[0]!,
    subject: distinguishedName(leaf.subject),
    issuerSha256Fingerprint: issuer === undefined ? "" : sha256Hex(issuer.raw),
    notAfterMs: Number.isFinite(notAfterMs) ? notAfterMs : null,
    presented: Object.freeze({ der: Object.freeze([...der.values()]), key: fingerprints.join(",") }),
  };
}

/**
 * Node prints a name one attribute per line, most general first; Envoy's XFCC
 * `Subject` and nginx's `$ssl_client_s_dn` use the RFC 4514 string, most
 * specific first. Node already escapes values as RFC 2253 asks.
 */
function distinguishedName(multiline: string): string {
  return multiline.split("\n").filter((line) => line !== "").reverse().join(",");
}

/** Lower-case hex without colons, or `null` when the text is not a SHA-256 fingerprint. */
function normalizeHex(text: string): string | null {
  const hex = text.trim().replace(/:/g, "").toLowerCase();
  return /^[0-9a-f]{64}$/.test(hex) ? hex : null;
}
