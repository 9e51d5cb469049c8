/**
 * Issue 13, finding 3: callers cannot fill the certificate cache with
 * megabytes. `Check` with a new ~900 KB certificate each time, is
 * what an unauthenticated attacker can send; the heap retained afterwards is
 * measured after a forced collection.
 */
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { create, toBinary } from "@bufbuild/protobuf";
import { beforeAll, describe, expect, it } from "vitest";
import { CheckRequestSchema } from "../../src/gen/envoy/service/auth/v3/external_auth_pb.js";
import { createAuthorizer } from "../../src/service/authorize.js";
import { createEnvoyCheck } from "../../src/transport/envoy.js";
import { buildTrustedProxyMatcher } from "../../src/transport/trusted-proxies.js";
import { certificateFromEnvoyAttribute } from "../../src/transport/client-certificate.js";
import { loadExamplePolicy, makeToken } from "../support/fixtures.js";
import { makeTestCertificates, urlEncodedPem, type TestCertificates } from "../envoy/certs.js";
import { settledNow } from "../../src/service/maybe-promise.js";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

function retainedHeapBytes(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

let certs: TestCertificates;

beforeAll(() => {
  certs = makeTestCertificates();
});

function checkWith(token: string, certificate: string): Buffer {
  const request = create(CheckRequestSchema, {
    attributes: {
      source: { address: { address: { case: "socketAddress", value: { address: "203.0.113.10" } } }, certificate },
      request: { http: { method: "GET", path: "/api/payouts", host: "api.example.com", headers: { authorization: `Bearer ${token}` } } },
    },
  });
  return Buffer.from(toBinary(CheckRequestSchema, request));
}

/** Check over the bundled policy set with an empty token store. */
function envoyCheck(): (bytes: Buffer) => Buffer {
  const authorize = createAuthorizer({
    policy: () => loadExamplePolicy(),
    tokens: { find: () => undefined },
    tenantState: { tenantSuspended: () => false, workspaceRestricted: () => false },
    now: Date.now,
    onError: () => undefined,
  } as unknown as Parameters<typeof createAuthorizer>[0]);
  const check = createEnvoyCheck({ authorize, trustedProxies: buildTrustedProxyMatcher([]) });
  return (bytes) => settledNow(check(bytes));
}

/** A distinct ~900 KB text shaped like a PEM certificate that is not one. */
function hugeBogusCertificate(i: number, tag = ""): string {
  return urlEncodedPem(`-----BEGIN CERTIFICATE-----\n${tag}${`${i}`.padStart(12, "0")}${"A".repeat(900_000)}\n-----END CERTIFICATE-----\n`);
}

describe("finding 3: certificate parsing and caching", () => {
  it.each([
    ["a malformed token", () => "sk_live_not-a-token"],
    ["an unknown well-formed token", () => makeToken().token],
  ])("keeps no trace of 24 distinct 900 KB certificates sent with %s", (name, token) => {
    const check = envoyCheck();
    check(checkWith(token(), hugeBogusCertificate(-1, name)));
    const before = retainedHeapBytes();
    for (let i = 0; i < 24; i++) check(checkWith(token(), hugeBogusCertificate(i, name)));
    const grownBytes = retainedHeapBytes() - before;
    // 24 × 900 KB is 21 MB: anything cached per request would show.
    expect(grownBytes).toBeLessThan(6 * 1024 * 1024);
  });

  it("keeps no trace of certificates that fail to parse or are oversized, when a stage does read them", () => {
    const before = retainedHeapBytes();
    for (let i = 0; i < 24; i++) certificateFromEnvoyAttribute(hugeBogusCertificate(i, "parsed"));
    const oversizedValid = urlEncodedPem(certs.clientPem + `${"\n".repeat(70_000)}`);
    for (let i = 0; i < 20; i++) expect(certificateFromEnvoyAttribute(`${oversizedValid}${"%0A".repeat(i)}`)).toBeNull();
    expect(retainedHeapBytes() - before).toBeLessThan(6 * 1024 * 1024);
  });

  it("still reads an ordinary certificate, from the attribute and again from its cache", () => {
    for (let i = 0; i < 2; i++) {
      expect(certificateFromEnvoyAttribute(urlEncodedPem(certs.clientPem))).toMatchObject({ sha256Fingerprint: certs.clientSha256, verified: true });
    }
  });
});
