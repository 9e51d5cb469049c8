/**
 * Certificate chains for CA pins, made at test time with the `openssl` CLI:
 * a pinned root with an intermediate in the bundle and one only the client
 * sends, an unpinned root, and a forged root (the pinned root's subject name on
 * another key). Fingerprints come from `X509Certificate.fingerprint256`,
 * independently of the code under test.
 */
import { execFileSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

/** One certificate: its PEM and SHA-256, lower-case hex without colons. */
export interface MadeCertificate {
  readonly pem: string;
  readonly sha256: string;
}

export interface CaChains {
  /** The pinned root, in the bundle. */
  readonly root: MadeCertificate;
  /** An intermediate under `root`, in the bundle. */
  readonly intermediate: MadeCertificate;
  /** An intermediate under `root` that only the client's chain carries. */
  readonly sentIntermediate: MadeCertificate;
  /** An unpinned root, in the bundle. */
  readonly otherRoot: MadeCertificate;
  /** `root`'s subject name on another key; not in the bundle. */
  readonly forgedRoot: MadeCertificate;
  /** Leaves: signed by `root`, by `intermediate`, by `sentIntermediate`, by `otherRoot`, by `forgedRoot`. */
  readonly leafOfRoot: MadeCertificate;
  readonly leafOfIntermediate: MadeCertificate;
  readonly leafOfSentIntermediate: MadeCertificate;
  readonly leafOfOtherRoot: MadeCertificate;
  readonly leafOfForgedRoot: MadeCertificate;
}

export function makeCaChains(): CaChains {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-ca-chains-"));
  try {
    const run = (args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
    const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    fs.writeFileSync(path.join(dir, "ca.ext"), "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n");
    fs.writeFileSync(path.join(dir, "leaf.ext"), "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n");
    // no key identifiers: the forged leaf then matches the pinned root by name alone, and only its signature tells them apart
    fs.writeFileSync(path.join(dir, "forged.ext"), "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\nsubjectKeyIdentifier=none\nauthorityKeyIdentifier=none\n");
    const root = (name: string, subject: string) => run(["req", "-x509", ...ec, "-keyout", `${name}.key`, "-out", `${name}.pem`, "-days", "3650", "-subj", subject, "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
    const issue = (name: string, subject: string, issuer: string, ext: string) => {
      run(["req", ...ec, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", subject]);
      run(["x509", "-req", "-in", `${name}.csr`, "-CA", `${issuer}.pem`, "-CAkey", `${issuer}.key`, "-set_serial", String(Math.floor(Math.random() * 1e9)), "-out", `${name}.pem`, "-days", "825", "-extfile", ext]);
    };
    root("root", "/O=Portcullis Tests/CN=Pinned Root");
    root("other", "/O=Portcullis Tests/CN=Other Root");
    root("forged", "/O=Portcullis Tests/CN=Pinned Root");
    issue("inter", "/O=Portcullis Tests/CN=Bundled Intermediate", "root", "ca.ext");
    issue("sent", "/O=Portcullis Tests/CN=Sent Intermediate", "root", "ca.ext");
    issue("leaf-root", "/O=Acme/CN=leaf-of-root", "root", "leaf.ext");
    issue("leaf-inter", "/O=Acme/CN=leaf-of-intermediate", "inter", "leaf.ext");
    issue("leaf-sent", "/O=Acme/CN=leaf-of-sent-intermediate", "sent", "leaf.ext");
    issue("leaf-other", "/O=Acme/CN=leaf-of-other-root", "other", "leaf.ext");
    issue("leaf-forged", "/O=Acme/CN=leaf-of-forged-root", "forged", "forged.ext");
    const made = (name: string): MadeCertificate => {
      const pem = fs.readFileSync(path.join(dir, `${name}.pem`), "utf8");
      return { pem, sha256: new X509Certificate(pem).fingerprint256.replace(/:/g, "").toLowerCase() };
    };
    return {
      root: made("root"),
      intermediate: made("inter"),
      sentIntermediate: made("sent"),
      otherRoot: made("other"),
      forgedRoot: made("forged"),
      leafOfRoot: made("leaf-root"),
      leafOfIntermediate: made("leaf-inter"),
      leafOfSentIntermediate: made("leaf-sent"),
      leafOfOtherRoot: made("leaf-other"),
      leafOfForgedRoot: made("leaf-forged"),
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
