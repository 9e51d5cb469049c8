/**
 * Reads the CA certificate files a policy set names (`policySet.trustedCas`)
 * when it loads. A file that is missing, unreadable, holds no certificate, a
 * certificate that does not parse or one that is not a CA is a policy error
 * placed on the path that named it, so that a reload keeps the last good set.
 */
import { X509Certificate } from "node:crypto";
import { join } from "node:path";
import { CaTrust } from "./ca-trust.js";
import type { Located, RevisionSource } from "./compile.js";
import { errorAt, type PolicyError, type PolicySource } from "./errors.js";
import { readRegularFile } from "./read-regular-file.js";
import type { PolicySetSettings } from "./types.js";

const PEM_BLOCK = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g;

/** Result of {@link loadTrustedCas}: the CAs, and the files' texts for the revision hash. */
export type LoadTrustedCasResult =
  | { readonly ok: true; readonly trust: CaTrust; readonly revisionSources: readonly RevisionSource[] }
  | { readonly ok: false; readonly errors: readonly PolicyError[] };

/** Reads every file `policySet.trustedCas` names, relative to `dir`; `sources` places errors. */
export function loadTrustedCas(dir: string, policySet: Located<PolicySetSettings>, sources: ReadonlyMap<string, PolicySource>): LoadTrustedCasResult {
  const paths = policySet.value.trustedCas ?? [];
  const errors: PolicyError[] = [];
  const certificates: X509Certificate[] = [];
  const revisionSources: RevisionSource[] = [];
  const source = sources.get(policySet.file);
  paths.forEach((relative, i) => {
    const pointer = `${policySet.pointer}/trustedCas/${i}`;
    const fail = (message: string, hint: string) => {
      errors.push(source === undefined ? { file: policySet.file, pointer, line: 0, column: 0, message, hint } : errorAt(source, pointer, message, hint));
    };
    const read = readRegularFile(join(dir, relative));
    if (!read.ok) return fail(`trusted CA file \`${relative}\`: ${read.message}`, "give a PEM file's path relative to the policy folder");
    const blocks = read.text.match(PEM_BLOCK) ?? [];
    if (blocks.length === 0) return fail(`trusted CA file \`${relative}\` holds no PEM certificate`, "the file needs `-----BEGIN CERTIFICATE-----` blocks");
    blocks.forEach((block, n) => {
      let certificate: X509Certificate;
      try {
        certificate = new X509Certificate(block);
      } catch (error) {
        return fail(`trusted CA file \`${relative}\`: certificate ${n + 1} does not parse (${error instanceof Error ? error.message : String(error)})`, "export it again with `openssl x509 -outform PEM`");
      }
      if (!certificate.ca) {
        return fail(`trusted CA file \`${relative}\`: certificate ${n + 1} (\`${certificate.subject.replace(/\n/g, ", ")}\`) is not a CA certificate`, "list CA certificates only (basicConstraints CA:TRUE), not client certificates");
      }
      certificates.push(certificate);
    });
    revisionSources.push({ name: `trustedCas/${relative}`, text: read.text });
  });
  if (errors.length > 0) return { ok: false, errors };
  return { ok: true, trust: new CaTrust(certificates), revisionSources };
}
