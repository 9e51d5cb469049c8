/**
 * CA pins through Envoy: the policy set's CA bundle lets Portcullis find a
 * leaf's issuer by its signature when Envoy sends only the leaf, and a trusted
 * proxy's XFCC `Chain=` adds intermediates. Real chains made by openssl; the
 * same rows through Envoy `Check` (Envoy's own protos) and Connect `Authorize`.
 */
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuthorizationService } from "../../src/gen/portcullis/v1/authorization_pb.js";
import { createToken } from "../../src/service/tokens.js";
import { removePolicyFolders, writePolicyFolder } from "../controls/support.js";
import { startTestServer, type TestServer } from "../support/server.js";
import { opensslAvailable } from "../support/tls-certs.js";
import { makeCaChains, type CaChains, type MadeCertificate } from "./ca-chain-certs.js";
import { envoyCheckClient, structToJson, type EnvoyCheckClient } from "./envoy-client.js";

const hasOpenssl = opensslAvailable();
if (!hasOpenssl) console.warn("skipping CA pin tests: the `openssl` CLI is missing (.ci/install-system-packages installs it)");

const PROXY = "10.9.9.9";
let chains: CaChains;
let policyDir: string;
let t: TestServer;
let envoy: EnvoyCheckClient;
const tokens: Record<string, string> = {};

beforeAll(async () => {
  if (!hasOpenssl) return;
  chains = makeCaChains();
  const policySet = {
    policySet: { name: "ca-pins", defaultEnvironment: "production", trustedCas: ["partner-cas.pem", "other-ca.pem"] },
    environments: [{ name: "production", tokenPrefix: "sk_live_", hosts: ["api.example.com"] }],
  };
  const dir = (policyDir = writePolicyFolder({
    "policy-set.json": policySet,
    "partner-cas.pem": chains.root.pem + chains.intermediate.pem,
    "other-ca.pem": chains.otherRoot.pem,
  }));
  t = await startTestServer(dir, { trustedProxies: [PROXY, "127.0.0.1"] });
  envoy = envoyCheckClient(t.grpcAddress);
  const base = { tenant: "acme", workspace: "main", type: "service" as const, actor: "test", role: "tenant_operator", environment: "production" };
  const make = async (key: string, caFingerprints: string[]) => {
    tokens[key] = (await createToken(t.server.store, t.server.policy(), { ...base, name: key, controls: { mtls: { caFingerprints } } }, Date.now())).token;
  };
  make("rootPinned", [chains.root.sha256]);
  make("intermediatePinned", [chains.intermediate.sha256.toUpperCase()]);
});

afterAll(async () => {
  envoy?.close();
  await t?.stop();
  removePolicyFolders();
});

interface Row {
  name: string;
  token: string;
  leaf: (c: CaChains) => MadeCertificate;
  /** Certificates a trusted proxy's XFCC `Chain=` carries after the leaf. */
  chain?: (c: CaChains) => MadeCertificate[];
  reason: string;
}

const rows: Row[] = [
  { name: "a leaf from the pinned CA", token: "rootPinned", leaf: (c) => c.leafOfRoot, reason: "ok" },
  { name: "a leaf from an unpinned CA of the bundle", token: "rootPinned", leaf: (c) => c.leafOfOtherRoot, reason: "ca_not_pinned" },
  { name: "leaf -> bundled intermediate -> pinned root", token: "rootPinned", leaf: (c) => c.leafOfIntermediate, reason: "ok" },
  { name: "leaf -> pinned bundled intermediate", token: "intermediatePinned", leaf: (c) => c.leafOfIntermediate, reason: "ok" },
  { name: "a pin on the intermediate does not admit the root's own leaves", token: "intermediatePinned", leaf: (c) => c.leafOfRoot, reason: "ca_not_pinned" },
  { name: "a forged root (the pinned name, another key) is not the issuer", token: "rootPinned", leaf: (c) => c.leafOfForgedRoot, reason: "ca_not_pinned" },
  { name: "a forged root sent in the chain is still another CA", token: "rootPinned", leaf: (c) => c.leafOfForgedRoot, chain: (c) => [c.forgedRoot], reason: "ca_not_pinned" },
  { name: "an intermediate only the proxy's chain carries, up to the pinned root", token: "rootPinned", leaf: (c) => c.leafOfSentIntermediate, chain: (c) => [c.sentIntermediate], reason: "ok" },
  { name: "without that chain the intermediate is unknown", token: "rootPinned", leaf: (c) => c.leafOfSentIntermediate, reason: "ca_not_pinned" },
];

function checkRequest(row: Row): object {
  const leaf = row.leaf(chains);
  const headers: [string, string][] = [
    [":authority", "api.example.com"],
    [":method", "GET"],
    [":path", "/api/payouts"],
    ["authorization", `Bearer ${tokens[row.token]}`],
  ];
  if (row.chain !== undefined) {
    const chain = encodeURIComponent([leaf, ...row.chain(chains)].map((c) => c.pem).join(""));
    headers.push(["x-forwarded-client-cert", `Hash=${leaf.sha256};Cert="${encodeURIComponent(leaf.pem)}";Chain="${chain}"`]);
  }
  return {
    attributes: {
      source: {
        address: { socket_address: { address: row.chain === undefined ? "203.0.113.10" : PROXY, port_value: 50_123 } },
        certificate: encodeURIComponent(leaf.pem),
      },
      request: { http: { method: "GET", path: "/api/payouts", host: "api.example.com", scheme: "https", protocol: "HTTP/1.1", header_map: { headers: headers.map(([key, value]) => ({ key, raw_value: Buffer.from(value) })) } } },
    },
  };
}

describe.skipIf(!hasOpenssl)("CA pins through Envoy Check", () => {
  it.each(rows)("$name", async (row) => {
    const response = await envoy.check(checkRequest(row));
    const metadata = structToJson(response.dynamic_metadata);
    expect({ code: metadata.code, reason: metadata.reason }).toEqual(row.reason === "ok" ? { code: "ok", reason: "ok" } : { code: "mtls_required", reason: row.reason });
    if (row.reason === "ok") expect(response.status.code).toBe(0);
    else expect(response.denied_response.status.code).toBe(403);
  });
});

describe.skipIf(!hasOpenssl)("CA pins through Connect Authorize", () => {
  it.each(rows)("$name", async (row) => {
    const leaf = row.leaf(chains);
    const client = createClient(AuthorizationService, createConnectTransport({ baseUrl: t.httpUrl, httpVersion: "1.1" }));
    const answer = await client.authorize({
      method: "GET",
      path: "/api/payouts",
      host: "api.example.com",
      sourceIp: "203.0.113.10",
      headers: [{ name: "authorization", value: `Bearer ${tokens[row.token]}` }],
      clientCertificate: { verified: true, pem: [leaf, ...(row.chain?.(chains) ?? [])].map((c) => c.pem).join("") },
    });
    const expected =
      row.reason === "ok"
        ? { code: "ok", reason: "ok", auditEvent: "" }
        : { code: "mtls_required", reason: row.reason, auditEvent: "auth.api_token_mtls_ca_required" };
    expect({ code: answer.code, reason: answer.reason, auditEvent: answer.auditEvent }).toEqual(expected);
  });
});

describe.skipIf(!hasOpenssl)("a stated issuer over Connect Authorize", () => {
  const authorize = (clientCertificate: { pem?: string; sha256Fingerprint?: string; issuerSha256Fingerprint: string }) =>
    createClient(AuthorizationService, createConnectTransport({ baseUrl: t.httpUrl, httpVersion: "1.1" })).authorize({
      method: "GET",
      path: "/api/payouts",
      host: "api.example.com",
      headers: [{ name: "authorization", value: `Bearer ${tokens.rootPinned}` }],
      clientCertificate: { verified: true, ...clientCertificate },
    });

  it("goes up from a stated bundled intermediate to the pinned root", async () => {
    const leaf = chains.leafOfIntermediate;
    const answer = await authorize({ sha256Fingerprint: leaf.sha256, issuerSha256Fingerprint: chains.intermediate.sha256 });
    expect(answer.code).toBe("ok");
  });

  it("a signature outranks a stated issuer: the PEM's real CA is not pinned", async () => {
    const answer = await authorize({ pem: chains.leafOfOtherRoot.pem, issuerSha256Fingerprint: chains.root.sha256 });
    expect({ code: answer.code, reason: answer.reason, issuer: answer.details.issuer_sha256 }).toEqual({ code: "mtls_required", reason: "ca_not_pinned", issuer: chains.otherRoot.sha256 });
  });

  it("a PEM whose stated fingerprint names another certificate is unverified", async () => {
    const answer = await authorize({ pem: chains.leafOfRoot.pem, sha256Fingerprint: chains.leafOfOtherRoot.sha256, issuerSha256Fingerprint: "" });
    expect({ code: answer.code, reason: answer.reason }).toEqual({ code: "mtls_required", reason: "unverified" });
  });
});

describe.skipIf(!hasOpenssl)("CA pins behind nginx auth_request (escaped PEM from a trusted proxy)", () => {
  const nginxRows = rows.filter((row) => row.chain === undefined);
  it.each(nginxRows)("$name", async (row) => {
    const response = await fetch(`${t.httpUrl}/ext-authz/nginx`, {
      headers: {
        "x-original-method": "GET",
        "x-original-uri": "/api/payouts",
        authorization: `Bearer ${tokens[row.token]}`,
        "x-ssl-client-escaped-cert": encodeURIComponent(row.leaf(chains).pem),
        "x-ssl-client-verify": "SUCCESS",
      },
    });
    expect({ status: response.status, code: response.headers.get("x-portcullis-code") ?? "ok" }).toEqual(
      row.reason === "ok" ? { status: 200, code: "ok" } : { status: 403, code: "mtls_required" },
    );
  });
});

describe.skipIf(!hasOpenssl)("a broken CA file on reload", () => {
  it("is refused, placed, and the last good set keeps answering", async () => {
    const revision = t.server.policy().revision;
    fs.writeFileSync(path.join(policyDir, "partner-cas.pem"), chains.leafOfRoot.pem);
    try {
      const reload = t.server.reloadPolicy();
      expect(reload.ok).toBe(false);
      if (!reload.ok) expect(reload.error.message).toMatch(/policy-set\.json:\d+:\d+ \/policySet\/trustedCas\/0: trusted CA file `partner-cas.pem`: certificate 1 .* is not a CA certificate/);
      expect(t.server.policy().revision).toBe(revision);
      const response = await envoy.check(checkRequest(rows[0]!));
      expect(structToJson(response.dynamic_metadata).code).toBe("ok");
    } finally {
      fs.writeFileSync(path.join(policyDir, "partner-cas.pem"), chains.root.pem + chains.intermediate.pem);
    }
  });
});
