/**
 * Trusted proxies, client certificate facts and the hand-written Check codec,
 * one table each.
 */
import { fromBinary } from "@bufbuild/protobuf";
import { beforeAll, describe, expect, it } from "vitest";
import { CheckRequestSchema, CheckResponseSchema } from "../../src/gen/envoy/service/auth/v3/external_auth_pb.js";
import { certificateFromEnvoyAttribute, certificateFromForwardedHeaders, parseXfcc } from "../../src/transport/client-certificate.js";
import { decodeCheck, inputFromCheckAttributes } from "../../src/transport/envoy.js";
import { encodeCheckResponse, encodeFramedCheckResponse } from "../../src/transport/envoy-wire.js";
import { frame } from "../../src/transport/grpc-server.js";
import { buildTrustedProxyMatcher } from "../../src/transport/trusted-proxies.js";
import { makeTestCertificates, rfc9440, urlEncodedPem, type TestCertificates } from "./certs.js";
import { envoyCheckMethod } from "./envoy-client.js";

let certs: TestCertificates;
beforeAll(() => {
  certs = makeTestCertificates();
});

describe("trusted proxies", () => {
  const proxies = buildTrustedProxyMatcher(["10.0.0.0/8", "2001:db8:ffff::/48", "127.0.0.1"]);
  const rows: { name: string; peer: string; xff?: string; realIp?: string; expected: string }[] = [
    { name: "an untrusted peer's X-Forwarded-For is ignored", peer: "203.0.113.5", xff: "198.51.100.1", expected: "203.0.113.5" },
    { name: "a trusted peer's single hop is the client", peer: "10.1.2.3", xff: "198.51.100.1", expected: "198.51.100.1" },
    { name: "the rightmost untrusted hop wins over client-written ones", peer: "10.1.2.3", xff: "6.6.6.6, 198.51.100.1, 10.0.0.9", expected: "198.51.100.1" },
    { name: "an IPv4-mapped IPv6 peer matches its IPv4 range", peer: "::ffff:10.0.0.1", xff: "198.51.100.1", expected: "198.51.100.1" },
    { name: "IPv6 peers and hops", peer: "2001:db8:ffff::1", xff: "2001:db8::42", expected: "2001:db8::42" },
    { name: "ports and brackets are stripped from hops", peer: "127.0.0.1", xff: "[2001:db8::42]:4711, 198.51.100.1:80", expected: "198.51.100.1" },
    { name: "X-Real-IP when there is no X-Forwarded-For", peer: "127.0.0.1", realIp: "198.51.100.2", expected: "198.51.100.2" },
    { name: "an unparseable hop is returned for the engine to refuse", peer: "127.0.0.1", xff: "198.51.100.1, not-an-ip", expected: "not-an-ip" },
    { name: "every hop trusted: the leftmost", peer: "127.0.0.1", xff: "10.0.0.1, 10.0.0.2", expected: "10.0.0.1" },
    { name: "a trusted peer without forwarding headers is itself the client", peer: "10.0.0.1", expected: "10.0.0.1" },
  ];
  it.each(rows)("$name", ({ peer, xff, realIp, expected }) => {
    expect(proxies.clientAddress(peer, xff, realIp)).toBe(expected);
  });

  it("trusts nobody when none is configured", () => {
    const none = buildTrustedProxyMatcher([]);
    expect(none.none).toBe(true);
    expect(none.clientAddress("127.0.0.1", "198.51.100.1", "198.51.100.2")).toBe("127.0.0.1");
  });
});

describe("client certificate facts", () => {
  it("reads Envoy's URL-encoded PEM: fingerprint, subject, expiry, verified; issuer only from a chain", () => {
    const leafOnly = certificateFromEnvoyAttribute(urlEncodedPem(certs.clientPem));
    const { presented, ...facts } = leafOnly!;
    expect(facts).toEqual({ sha256Fingerprint: certs.clientSha256, subject: certs.clientSubject, issuerSha256Fingerprint: "", verified: true, notAfterMs: certs.clientNotAfterMs });
    // the leaf is kept for the policy set's CA search
    expect(presented?.key).toBe(certs.clientSha256);
    const withChain = certificateFromEnvoyAttribute(urlEncodedPem(certs.clientPem + certs.caPem));
    expect(withChain?.issuerSha256Fingerprint).toBe(certs.caSha256);
    expect(certificateFromEnvoyAttribute("garbage")).toBeNull();
  });

  it("parses XFCC elements with quoted values, taking the nearest proxy's", () => {
    const elements = parseXfcc('By=spiffe://a;Hash=aa;Subject="CN=x,O=y";URI=spiffe://c,By=spiffe://b;Hash=bb;DNS=x.test');
    expect(elements.map((element) => element.get("hash"))).toEqual(["aa", "bb"]);
    expect(elements[0]!.get("subject")).toBe("CN=x,O=y");
  });

  const rows: { name: string; headers: () => Record<string, string>; expected: () => Record<string, unknown> | null }[] = [
    {
      name: "XFCC Hash and Subject only",
      headers: () => ({ "x-forwarded-client-cert": `By=spiffe://proxy;Hash=${certs.clientSha256.toUpperCase()};Subject="${certs.clientSubject}"` }),
      expected: () => ({ sha256Fingerprint: certs.clientSha256, subject: certs.clientSubject, issuerSha256Fingerprint: "", verified: true, notAfterMs: null }),
    },
    {
      name: "XFCC Cert and Chain: issuer computed from the chain",
      headers: () => ({ "x-forwarded-client-cert": `Hash=${certs.clientSha256};Cert="${urlEncodedPem(certs.clientPem)}";Chain="${urlEncodedPem(certs.clientPem + certs.caPem)}"` }),
      expected: () => ({ sha256Fingerprint: certs.clientSha256, issuerSha256Fingerprint: certs.caSha256, verified: true, notAfterMs: certs.clientNotAfterMs }),
    },
    {
      name: "XFCC Hash that disagrees with its Cert: unverified",
      headers: () => ({ "x-forwarded-client-cert": `Hash=${"0".repeat(64)};Cert="${urlEncodedPem(certs.clientPem)}"` }),
      expected: () => ({ sha256Fingerprint: certs.clientSha256, verified: false }),
    },
    {
      name: "RFC 9440 Client-Cert and Client-Cert-Chain",
      headers: () => ({ "client-cert": rfc9440(certs.clientPem), "client-cert-chain": rfc9440(certs.caPem) }),
      expected: () => ({ sha256Fingerprint: certs.clientSha256, subject: certs.clientSubject, issuerSha256Fingerprint: certs.caSha256, verified: true }),
    },
    {
      name: "nginx's escaped PEM with X-SSL-Client-Verify SUCCESS, issuer from its header",
      headers: () => ({ "x-ssl-client-escaped-cert": urlEncodedPem(certs.clientPem), "x-ssl-client-verify": "SUCCESS", "x-client-cert-issuer-sha256": certs.caSha256 }),
      expected: () => ({ sha256Fingerprint: certs.clientSha256, issuerSha256Fingerprint: certs.caSha256, verified: true }),
    },
    {
      name: "nginx's escaped PEM without X-SSL-Client-Verify: unverified",
      headers: () => ({ "x-ssl-client-escaped-cert": urlEncodedPem(certs.clientPem) }),
      expected: () => ({ sha256Fingerprint: certs.clientSha256, verified: false }),
    },
    {
      name: "fingerprint headers with colons and X-SSL-Client-Verify SUCCESS",
      headers: () => ({ "x-client-cert-sha256": certs.clientSha256.match(/../g)!.join(":").toUpperCase(), "x-client-cert-subject": "CN=a", "x-ssl-client-verify": "SUCCESS" }),
      expected: () => ({ sha256Fingerprint: certs.clientSha256, subject: "CN=a", issuerSha256Fingerprint: "", verified: true, notAfterMs: null }),
    },
    {
      name: "X-SSL-Client-Verify FAILED marks even XFCC unverified",
      headers: () => ({ "x-forwarded-client-cert": `Hash=${certs.clientSha256}`, "x-ssl-client-verify": "FAILED:certificate has expired" }),
      expected: () => ({ verified: false }),
    },
    { name: "a malformed fingerprint is no certificate", headers: () => ({ "x-client-cert-sha256": "abc", "x-ssl-client-verify": "SUCCESS" }), expected: () => null },
  ];
  it.each(rows)("$name", ({ headers, expected }) => {
    const facts = certificateFromForwardedHeaders(new Map(Object.entries(headers())));
    const want = expected();
    if (want === null) expect(facts).toBeNull();
    else expect(facts).toMatchObject(want);
  });
});

describe("Check codec", () => {
  const envoy = () => envoyCheckMethod();
  const request = (sourceIp: string, headers: Record<string, string>) =>
    envoy().requestSerialize({
      attributes: {
        source: { address: { socket_address: { address: sourceIp, port_value: 1 } } },
        request: { time: { seconds: "1" }, http: { method: "GET", path: "/api/payouts?x=%41", host: "api.example.com", headers: { ":path": "/api/payouts", ...headers } } },
      },
    });

  it("decodes what Envoy's protos encode, as the generated subset does", () => {
    const bytes = request("2001:db8::1", { authorization: "Bearer x", "x-custom": "é ü" });
    const attributes = decodeCheck(bytes);
    const generated = fromBinary(CheckRequestSchema, bytes);
    const http = generated.attributes!.request!.http!;
    expect(attributes).toMatchObject({ method: http.method, path: http.path, host: http.host, sourceAddress: "2001:db8::1" });
    expect(Object.fromEntries(attributes.headers)).toEqual({ authorization: "Bearer x", "x-custom": "é ü" });
  });

  it("honours forwarding and certificate headers only from a trusted proxy, and never passes them on as headers", () => {
    const headers = { authorization: "Bearer x", "x-forwarded-for": "198.51.100.9", "x-client-cert-sha256": certs.clientSha256, "x-ssl-client-verify": "SUCCESS" };
    const proxies = buildTrustedProxyMatcher(["10.0.0.0/8"]);
    const fromProxy = inputFromCheckAttributes(decodeCheck(request("10.0.0.1", headers)), proxies);
    expect(fromProxy.sourceIp).toBe("198.51.100.9");
    expect(fromProxy.clientCertificate?.sha256Fingerprint).toBe(certs.clientSha256);
    const fromClient = inputFromCheckAttributes(decodeCheck(request("203.0.113.1", headers)), proxies);
    expect(fromClient.sourceIp).toBe("203.0.113.1");
    expect(fromClient.clientCertificate).toBeNull();
    for (const input of [fromProxy, fromClient]) expect([...input.headers.keys()].sort()).toEqual(["authorization", "x-forwarded-for"]);
  });

  it("reads a header entry whatever the order of its fields, and leaves pseudo-headers out", () => {
    const field = (number: number, payload: Buffer) => Buffer.concat([Buffer.from([(number << 3) | 2, payload.length]), payload]);
    const entry = (...fields: Buffer[]) => field(3, Buffer.concat(fields));
    const http = field(2, Buffer.concat([entry(field(2, Buffer.from("v")), field(1, Buffer.from("X-A"))), entry(field(1, Buffer.from(":path")), field(2, Buffer.from("/x")))]));
    const attributes = decodeCheck(field(1, field(4, http)));
    expect([...attributes.headers]).toEqual([["x-a", "v"]]);
  });

  it("rejects bytes that are not protobuf", () => {
    for (const bytes of [[0x0a, 0x05, 0x01], [0x0f], [0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]]) {
      expect(() => decodeCheck(Buffer.from(bytes))).toThrow();
    }
  });

  it("encodes what both Envoy's protos and the generated subset read back, long values included", () => {
    const long = "x".repeat(300);
    const bytes = encodeCheckResponse({
      rpcCode: 7,
      rpcMessage: "denied ✓",
      denied: { httpStatus: 429, headers: [["retry-after", "30"], ["x-long", long]], body: `{"message":"${long}"}` },
      upstreamHeaders: [],
      headersToRemove: [],
      responseHeadersToAdd: [],
      metadata: new Map<string, string | readonly string[]>([["code", "quota_exceeded"], ["scopes", ["a", "b"]]]),
      identityMetadata: [],
    });
    const generated = fromBinary(CheckResponseSchema, bytes);
    expect(generated.status).toMatchObject({ code: 7, message: "denied ✓" });
    expect(generated.httpResponse.case).toBe("deniedResponse");
    expect(generated.dynamicMetadata).toEqual({ code: "quota_exceeded", scopes: ["a", "b"] });
    const envoyView = envoy().responseDeserialize(bytes) as any;
    expect(envoyView.denied_response.status.code).toBe(429);
    expect(envoyView.denied_response.headers.map((h: any) => [h.header.key, h.header.value])).toEqual([["retry-after", "30"], ["x-long", long]]);
    expect(envoyView.denied_response.body).toBe(`{"message":"${long}"}`);
  });
});

describe("encoding an allow", () => {
  const identityMetadata = Object.freeze([
    ["token_id", "tok_1"],
    ["tenant", "acme"],
    ["workspace", "main"],
    ["environment", "production"],
    ["scopes", Object.freeze(["ledger:read", "payouts:read"])],
  ] as const);
  const upstream = Object.freeze([["x-portcullis-tenant", "acme"], ["x-portcullis-scopes", "ledger:read payouts:read"]] as const);
  const answer = {
    rpcCode: 0,
    rpcMessage: "",
    denied: null,
    upstreamHeaders: upstream,
    headersToRemove: ["authorization"],
    responseHeadersToAdd: [["ratelimit-remaining", "59"]] as const,
    metadata: new Map([["code", "ok"], ["request_id", "r1"]]),
    identityMetadata,
  };

  it("writes the identity's metadata and headers, identically when they come from the per-token cache", () => {
    const first = encodeCheckResponse(answer);
    const second = encodeCheckResponse({ ...answer, metadata: new Map([["code", "ok"], ["request_id", "r1"]]) });
    expect(second.equals(first)).toBe(true);
    const generated = fromBinary(CheckResponseSchema, first);
    expect(generated.dynamicMetadata).toEqual({ code: "ok", request_id: "r1", tenant: "acme", workspace: "main", token_id: "tok_1", environment: "production", scopes: ["ledger:read", "payouts:read"] });
    const envoyView = envoyCheckMethod().responseDeserialize(first) as any;
    expect(envoyView.ok_response.headers.map((h: any) => [h.header.key, h.header.value])).toEqual([["x-portcullis-tenant", "acme"], ["x-portcullis-scopes", "ledger:read payouts:read"]]);
    expect(envoyView.ok_response.headers_to_remove).toEqual(["authorization"]);
    expect(envoyView.ok_response.response_headers_to_add.map((h: any) => [h.header.key, h.header.value])).toEqual([["ratelimit-remaining", "59"]]);
  });

  it("frames the same bytes for the gRPC port: a 5-byte uncompressed prefix, then the message", () => {
    const message = encodeCheckResponse(answer);
    const framed = encodeFramedCheckResponse(answer);
    expect(framed.equals(frame(message))).toBe(true);
    expect(framed.readUInt32BE(1)).toBe(message.length);
    // The working buffer is shared: an answer encoded later leaves earlier results alone.
    encodeFramedCheckResponse({ ...answer, metadata: new Map([["code", "ok"], ["request_id", "another"]]) });
    expect(framed.equals(frame(message))).toBe(true);
  });

  it("encodes unfrozen identity metadata the same way, without caching it", () => {
    const thawed = identityMetadata.map(([key, value]) => [key, typeof value === "string" ? value : [...value]] as const);
    const bytes = encodeCheckResponse({ ...answer, identityMetadata: thawed, upstreamHeaders: [...upstream] });
    expect(bytes.equals(encodeCheckResponse(answer))).toBe(true);
  });
});

describe("serve config: trusted proxies and the ext-authz prefix", () => {
  it.each([
    { name: "none by default", flags: {}, env: {}, proxies: [], prefix: "/ext-authz" },
    { name: "a comma list from the environment", flags: {}, env: { PORTCULLIS_TRUSTED_PROXIES: "10.0.0.0/8, ::1" }, proxies: ["10.0.0.0/8", "::1"], prefix: "/ext-authz" },
    { name: "repeated flags win over the environment", flags: { trustedProxy: ["192.0.2.1", "2001:db8::/32"], extAuthzPrefix: "/authz/" }, env: { PORTCULLIS_TRUSTED_PROXIES: "10.0.0.0/8" }, proxies: ["192.0.2.1", "2001:db8::/32"], prefix: "/authz" },
  ])("$name", async ({ flags, env, proxies, prefix }) => {
    const { resolveServeConfig } = await import("../../src/config/config.js");
    expect(resolveServeConfig(flags, env)).toMatchObject({ trustedProxies: proxies, extAuthzPrefix: prefix });
  });

  it.each([{ trustedProxy: ["10.0.0.0/33"] }, { trustedProxy: ["127.1"] }, { trustedProxy: ["proxy.local"] }, { extAuthzPrefix: "ext authz" }])("refuses %o", async (flags) => {
    const { ConfigError, resolveServeConfig } = await import("../../src/config/config.js");
    expect(() => resolveServeConfig(flags, {})).toThrow(ConfigError);
  });
});
