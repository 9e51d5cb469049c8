/**
 * A CA and a client certificate made at test time with the `openssl` CLI, so
 * that no key material is committed. The expected fingerprints come from
 * `X509Certificate.fingerprint256`, independently of the code under test.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

export interface TestCertificates {
  readonly caPem: string;
  readonly clientPem: string;
  /** SHA-256 of the client certificate's DER, lower-case hex without colons. */
  readonly clientSha256: string;
  readonly caSha256: string;
  /** RFC 4514 subject of the client certificate. */
  readonly clientSubject: string;
  readonly clientNotAfterMs: number;
}

/** Whether the `openssl` CLI is on PATH. */
export function opensslAvailable(): boolean {
  return spawnSync("openssl", ["version"], { encoding: "utf8" }).status === 0;
}

function hex(fingerprint: string): string {
  return fingerprint.replace(/:/g, "").toLowerCase();
}

/** Makes a P-256 CA and a client certificate it signed; throws a clear error when openssl is missing. */
export function makeTestCertificates(): TestCertificates {
  if (!opensslAvailable()) throw new Error("the `openssl` CLI is needed to make test certificates: apt-get install openssl");
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-certs-"));
  try {
    const run = (args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
    const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    run(["req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "3650", "-subj", "/O=Portcullis Tests/CN=Test CA"]);
    run(["req", ...ec, "-keyout", "client.key", "-out", "client.csr", "-subj", "/O=Acme/CN=client.acme.test"]);
    run(["x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "client.pem", "-days", "825"]);
    const caPem = fs.readFileSync(path.join(dir, "ca.pem"), "utf8");
    const clientPem = fs.readFileSync(path.join(dir, "client.pem"), "utf8");
    const client = new X509Certificate(clientPem);
    return {
      caPem,
      clientPem,
      clientSha256: hex(client.fingerprint256),
      caSha256: hex(new X509Certificate(caPem).fingerprint256),
      clientSubject: "CN=client.acme.test,O=Acme",
      clientNotAfterMs: Date.parse(client.validTo),
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Envoy's encoding of `attributes.source.certificate` and XFCC `Cert=`: the PEM, URL-encoded. */
export function urlEncodedPem(pem: string): string {
  return encodeURIComponent(pem);
}

/** RFC 9440 `Client-Cert`: the DER as a structured-field byte sequence. */
export function rfc9440(pem: string): string {
  return `:${new X509Certificate(pem).raw.toString("base64")}:`;
}
