/**
 * `policySet.trustedCas`: CA files read and checked at load, each problem a
 * placed policy error; and the issuer search over them, by signature and
 * cached per distinct certificate.
 */
import { X509Certificate } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { PresentedCertificates } from "../../src/engine/types.js";
import { loadPolicySet, type CompiledPolicySet } from "../../src/policy/index.js";
import { CaTrust, sha256Hex } from "../../src/policy/ca-trust.js";
import { opensslAvailable } from "../support/tls-certs.js";
import { makeCaChains, type CaChains } from "../envoy/ca-chain-certs.js";

const hasOpenssl = opensslAvailable();
if (!hasOpenssl) console.warn("skipping trusted CA tests: the `openssl` CLI is missing (.ci/install-system-packages installs it)");

const MINIMAL = path.join(import.meta.dirname, "../fixtures/policies/minimal");
const made: string[] = [];
let chains: CaChains;

beforeAll(() => {
  if (hasOpenssl) chains = makeCaChains();
});

afterAll(() => {
  for (const dir of made) fs.rmSync(dir, { recursive: true, force: true });
});

/** The minimal set with `trustedCas` and the given extra files. */
function folder(trustedCas: string[], files: Record<string, string>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-cas-"));
  made.push(dir);
  for (const name of fs.readdirSync(MINIMAL)) fs.copyFileSync(path.join(MINIMAL, name), path.join(dir, name));
  const settings = JSON.parse(fs.readFileSync(path.join(dir, "settings.json"), "utf8"));
  settings.policySet.trustedCas = trustedCas;
  fs.writeFileSync(path.join(dir, "settings.json"), JSON.stringify(settings, null, 2));
  for (const [name, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), text);
  }
  return dir;
}

function loaded(dir: string): CompiledPolicySet {
  const result = loadPolicySet(dir);
  if (!result.ok) throw new Error(result.errors.map((e) => e.message).join("; "));
  return result.policy;
}

function presented(...pems: string[]): PresentedCertificates {
  const der = pems.map((pem) => new X509Certificate(pem).raw);
  return { der, key: der.map(sha256Hex).join(",") };
}

describe.skipIf(!hasOpenssl)("loading trustedCas", () => {
  it("reads every certificate of every file, relative to the policy folder", () => {
    const policy = loaded(folder(["cas/partner.pem", "other.crt"], { "cas/partner.pem": chains.root.pem + chains.intermediate.pem, "other.crt": chains.otherRoot.pem }));
    expect(policy.trustedCas.size).toBe(3);
  });

  it("a CA file's content is part of the revision", () => {
    const a = loaded(folder(["ca.pem"], { "ca.pem": chains.root.pem }));
    const b = loaded(folder(["ca.pem"], { "ca.pem": chains.otherRoot.pem }));
    expect(a.revision).not.toBe(b.revision);
  });

  const bad: { name: string; files: () => Record<string, string>; path: string; message: RegExp }[] = [
    { name: "a missing file", files: () => ({}), path: "missing.pem", message: /trusted CA file `missing.pem`: cannot read file: ENOENT/ },
    { name: "a file without certificates", files: () => ({ "empty.pem": "not a certificate\n" }), path: "empty.pem", message: /holds no PEM certificate/ },
    {
      name: "a certificate that does not parse",
      files: () => ({ "broken.pem": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n" }),
      path: "broken.pem",
      message: /certificate 1 does not parse/,
    },
    { name: "a leaf instead of a CA", files: () => ({ "leaf.pem": chains.root.pem + chains.leafOfRoot.pem }), path: "leaf.pem", message: /certificate 2 .*leaf-of-root.* is not a CA certificate/ },
  ];
  it.each(bad)("$name is a policy error placed on its path", ({ files, path: file, message }) => {
    const result = loadPolicySet(folder([file], files()));
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.errors).toHaveLength(1);
    expect(result.errors[0]).toMatchObject({ file: expect.stringMatching(/settings\.json$/), pointer: "/policySet/trustedCas/0", line: expect.any(Number) });
    expect(result.errors[0]!.line).toBeGreaterThan(1);
    expect(result.errors[0]!.message).toMatch(message);
  });

  it.each(["../outside.pem", "/etc/ssl/ca.pem", "ca.txt"])("the schema refuses `%s`", (file) => {
    const result = loadPolicySet(folder([file], {}));
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.errors[0]!.pointer).toBe("/policySet/trustedCas/0");
  });
});

describe.skipIf(!hasOpenssl)("finding the CAs above a certificate", () => {
  let trust: CaTrust;
  beforeAll(() => {
    trust = new CaTrust([chains.root, chains.intermediate, chains.otherRoot].map((c) => new X509Certificate(c.pem)));
  });

  it("walks leaf -> intermediate -> root by signature", () => {
    expect(trust.caPathOf(presented(chains.leafOfIntermediate.pem))).toEqual([chains.intermediate.sha256, chains.root.sha256]);
    expect(trust.caPathOf(presented(chains.leafOfOtherRoot.pem))).toEqual([chains.otherRoot.sha256]);
  });

  it("uses an intermediate the client sent, but only a CA that signed the certificate", () => {
    expect(trust.caPathOf(presented(chains.leafOfSentIntermediate.pem))).toEqual([]);
    expect(trust.caPathOf(presented(chains.leafOfSentIntermediate.pem, chains.sentIntermediate.pem))).toEqual([chains.sentIntermediate.sha256, chains.root.sha256]);
    // the forged root carries the pinned root's name: the name matches, the signature does not
    expect(new X509Certificate(chains.leafOfForgedRoot.pem).checkIssued(new X509Certificate(chains.root.pem))).toBe(true);
    expect(trust.caPathOf(presented(chains.leafOfForgedRoot.pem))).toEqual([]);
    expect(trust.caPathOf(presented(chains.leafOfForgedRoot.pem, chains.forgedRoot.pem))).toEqual([chains.forgedRoot.sha256]);
  });

  it("searches once per distinct set of certificates", () => {
    const first = trust.caPathOf(presented(chains.leafOfRoot.pem));
    expect(first).toEqual([chains.root.sha256]);
    // the same frozen answer: a cache hit, no second verification
    expect(trust.caPathOf(presented(chains.leafOfRoot.pem))).toBe(first);
  });

  it("does not remember certificates that do not parse", () => {
    const garbage: PresentedCertificates = { der: [Buffer.from("not der")], key: "garbage" };
    expect(trust.caPathOf(garbage)).toEqual([]);
    expect(trust.caPathOf(garbage)).not.toBe(trust.caPathOf(garbage));
  });

  it("goes up from an issuer stated by fingerprint", () => {
    expect(trust.caPathAbove(chains.intermediate.sha256)).toEqual([chains.intermediate.sha256, chains.root.sha256]);
    expect(trust.caPathAbove("ab".repeat(32))).toEqual(["ab".repeat(32)]);
    expect(trust.caPathAbove("")).toEqual([]);
  });

  it("keeps a CA presented as the certificate apart from the same CA stated as an issuer", () => {
    expect(trust.caPathAbove(chains.intermediate.sha256)).toEqual([chains.intermediate.sha256, chains.root.sha256]);
    expect(trust.caPathOf(presented(chains.intermediate.pem))).toEqual([chains.root.sha256]);
    expect(trust.caPathAbove(chains.intermediate.sha256)).toEqual([chains.intermediate.sha256, chains.root.sha256]);
  });
});
