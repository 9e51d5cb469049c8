/**
 * A CA, server certificates for 127.0.0.1/localhost and a client certificate,
 * made at test time with the `openssl` CLI in a temporary folder, so that no
 * key material is committed.
 */
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

export interface TlsTestFiles {
  readonly dir: string;
  readonly caFile: string;
  readonly caPem: string;
  readonly certFile: string;
  readonly keyFile: string;
  readonly clientCertPem: string;
  readonly clientKeyPem: string;
  /** A second server certificate and key from the same CA, to rotate to. */
  readonly nextCertPem: string;
  readonly nextKeyPem: string;
  remove(): void;
}

/** Whether the `openssl` CLI is on PATH (`.ci/install-system-packages` installs it). */
export function opensslAvailable(): boolean {
  return spawnSync("openssl", ["version"], { encoding: "utf8" }).status === 0;
}

/** Makes the files; `certFile`/`keyFile` hold the first server certificate. */
export function makeTlsTestFiles(): TlsTestFiles {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-tls-"));
  const run = (args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  run(["req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "30", "-subj", "/CN=Portcullis Test CA"]);
  fs.writeFileSync(path.join(dir, "server.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n");
  fs.writeFileSync(path.join(dir, "client.ext"), "extendedKeyUsage=clientAuth\n");
  const issue = (name: string, subject: string, ext: string) => {
    run(["req", ...ec, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", subject]);
    run(["x509", "-req", "-in", `${name}.csr`, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", `${name}.pem`, "-days", "30", "-extfile", ext]);
  };
  issue("server", "/CN=portcullis-one", "server.ext");
  issue("next", "/CN=portcullis-two", "server.ext");
  issue("client", "/CN=envoy.test", "client.ext");
  const read = (file: string) => fs.readFileSync(path.join(dir, file), "utf8");
  return {
    dir,
    caFile: path.join(dir, "ca.pem"),
    caPem: read("ca.pem"),
    certFile: path.join(dir, "server.pem"),
    keyFile: path.join(dir, "server.key"),
    clientCertPem: read("client.pem"),
    clientKeyPem: read("client.key"),
    nextCertPem: read("next.pem"),
    nextKeyPem: read("next.key"),
    remove: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}
