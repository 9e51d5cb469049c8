/**
 * TLS on both ports of the real server, with certificates made by openssl in
 * the test: grpc-js (Authorize, and Envoy's canonical `Check` protos) and
 * Node's HTTPS client; mutual TLS against a client CA bundle; and a rotated
 * certificate picked up by new connections without a restart.
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import * as https from "node:https";
import * as tls from "node:tls";
import { X509Certificate } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import { create } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuthorizeRequestSchema, AuthorizeResponseSchema } from "../../src/gen/portcullis/v1/authorization_pb.js";
import { createToken } from "../../src/service/tokens.js";
import { resolveServeConfig } from "../../src/config/config.js";
import { envoyCheckClient } from "../envoy/envoy-client.js";
import { unaryMethod } from "../support/grpc-client.js";
import { startTestServer, type TestServer } from "../support/server.js";
import { makeTlsTestFiles, opensslAvailable, type TlsTestFiles } from "../support/tls-certs.js";

const hasOpenssl = opensslAvailable();
if (!hasOpenssl) console.warn("skipping the TLS tests: the `openssl` CLI is missing (.ci/install-system-packages installs it)");

const authorizeMethod = unaryMethod("/portcullis.v1.AuthorizationService/Authorize", AuthorizeRequestSchema, AuthorizeResponseSchema);

/**
 * The server certificate names `localhost` too: TLS clients check that name
 * while connecting to 127.0.0.1, since Node 26 refuses an IP address as the
 * SNI server name grpc-js would otherwise send.
 */
const AS_LOCALHOST: grpc.ChannelOptions = { "grpc.ssl_target_name_override": "localhost", "grpc.default_authority": "localhost" };

function authorizeOverGrpc(address: string, credentials: grpc.ChannelCredentials, token: string): Promise<{ allowed: boolean; code: string }> {
  const client = new grpc.Client(address, credentials, AS_LOCALHOST);
  const request = create(AuthorizeRequestSchema, { method: "GET", path: "/api/payouts", host: "api.example.com", sourceIp: "203.0.113.10", headers: [{ name: "authorization", value: `Bearer ${token}` }] });
  return new Promise((resolve, reject) =>
    client.makeUnaryRequest(authorizeMethod.path, authorizeMethod.requestSerialize, authorizeMethod.responseDeserialize, request, { deadline: Date.now() + 5_000 }, (error, response) => {
      client.close();
      if (error) reject(error);
      else resolve({ allowed: response!.allowed === true, code: response!.code ?? "" });
    }),
  );
}

function httpsGet(port: number, path: string, options: https.RequestOptions): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const request = https.request({ host: "127.0.0.1", port, path, method: "GET", agent: false, ...options }, (response) => {
      let body = "";
      response.setEncoding("utf8");
      response.on("data", (chunk: string) => (body += chunk));
      response.on("end", () => resolve({ status: response.statusCode ?? 0, body }));
    });
    request.on("error", reject);
    request.end();
  });
}

/** The subject CN of the certificate a new TLS connection to `port` is shown. */
function servedCommonName(port: number, caPem: string, alpn: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: "127.0.0.1", port, ca: caPem, ALPNProtocols: alpn, servername: "localhost" }, () => {
      const raw = socket.getPeerX509Certificate();
      socket.destroy();
      resolve(raw === undefined ? "" : (raw as X509Certificate).subject.replace(/^CN=/, ""));
    });
    socket.on("error", reject);
  });
}

/** The real server over TLS with fresh certificates (and a client CA bundle when `mutual`), and a token it allows. */
async function startTlsServer(mutual: boolean): Promise<{ files: TlsTestFiles; t: TestServer; token: string }> {
  const files = makeTlsTestFiles();
  const t = await startTestServer(undefined, { tls: { certFile: files.certFile, keyFile: files.keyFile, ...(mutual ? { clientCaFile: files.caFile } : {}) } });
  const fields = { tenant: "acme", workspace: "main", environment: "production", type: "service" as const, actor: "test", name: "tls", role: "tenant_operator" };
  return { files, t, token: (await createToken(t.server.store, t.server.policy(), fields, Date.now())).token };
}

async function stopTlsServer(t: TestServer | undefined, files: TlsTestFiles | undefined): Promise<void> {
  await t?.stop();
  files?.remove();
}

describe.skipIf(!hasOpenssl)("TLS on both ports", () => {
  let files: TlsTestFiles;
  let t: TestServer;
  let token: string;
  beforeAll(async () => void ({ files, t, token } = await startTlsServer(false)));
  afterAll(() => stopTlsServer(t, files));

  it("answers Authorize to grpc-js over TLS, and refuses cleartext", async () => {
    expect(await authorizeOverGrpc(t.grpcAddress, grpc.credentials.createSsl(Buffer.from(files.caPem)), token)).toEqual({ allowed: true, code: "ok" });
    await expect(authorizeOverGrpc(t.grpcAddress, grpc.credentials.createInsecure(), token)).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
  });

  it("answers Check built from Envoy's canonical protos over TLS", async () => {
    const client = envoyCheckClient(t.grpcAddress, grpc.credentials.createSsl(Buffer.from(files.caPem)), AS_LOCALHOST);
    try {
      const response = await client.check({
        attributes: {
          source: { address: { socket_address: { address: "203.0.113.10", port_value: 4242 } } },
          request: { http: { method: "GET", path: "/api/payouts", host: "api.example.com", headers: { authorization: `Bearer ${token}` } } },
        },
      });
      expect(response.status.code).toBe(0);
    } finally {
      client.close();
    }
  });

  it("answers Node's HTTPS client on the HTTP port", async () => {
    expect(await httpsGet(t.server.httpPort, "/healthz", { ca: files.caPem })).toEqual({ status: 200, body: "ok\n" });
  });

  it("serves a rewritten certificate to new connections on both ports, without a restart", async () => {
    expect(await servedCommonName(t.server.grpcPort, files.caPem, ["h2"])).toBe("portcullis-one");
    // Key first, as a careless rotation would: the half-written pair is refused and the old one stays.
    fs.writeFileSync(files.keyFile, files.nextKeyPem);
    fs.writeFileSync(files.certFile, files.nextCertPem);
    await expect.poll(() => servedCommonName(t.server.grpcPort, files.caPem, ["h2"]), { timeout: 8_000, interval: 200 }).toBe("portcullis-two");
    await expect.poll(() => servedCommonName(t.server.httpPort, files.caPem, ["http/1.1"]), { timeout: 8_000, interval: 200 }).toBe("portcullis-two");
    expect(await authorizeOverGrpc(t.grpcAddress, grpc.credentials.createSsl(Buffer.from(files.caPem)), token)).toEqual({ allowed: true, code: "ok" });
  });
});

describe.skipIf(!hasOpenssl)("mutual TLS with a client CA bundle", () => {
  let files: TlsTestFiles;
  let t: TestServer;
  let token: string;
  beforeAll(async () => void ({ files, t, token } = await startTlsServer(true)));
  afterAll(() => stopTlsServer(t, files));

  it("answers a gRPC client that presents a certificate from the bundle, and refuses one that presents none", async () => {
    const withCert = grpc.credentials.createSsl(Buffer.from(files.caPem), Buffer.from(files.clientKeyPem), Buffer.from(files.clientCertPem));
    expect(await authorizeOverGrpc(t.grpcAddress, withCert, token)).toEqual({ allowed: true, code: "ok" });
    await expect(authorizeOverGrpc(t.grpcAddress, grpc.credentials.createSsl(Buffer.from(files.caPem)), token)).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
  });

  it("answers an HTTPS client with a certificate from the bundle, and refuses one without", async () => {
    expect(await httpsGet(t.server.httpPort, "/healthz", { ca: files.caPem, cert: files.clientCertPem, key: files.clientKeyPem })).toEqual({ status: 200, body: "ok\n" });
    await expect(httpsGet(t.server.httpPort, "/healthz", { ca: files.caPem })).rejects.toThrow();
  });

  it("refuses a client certificate from another CA", async () => {
    const other = makeTlsTestFiles();
    try {
      const foreign = grpc.credentials.createSsl(Buffer.from(files.caPem), Buffer.from(other.clientKeyPem), Buffer.from(other.clientCertPem));
      await expect(authorizeOverGrpc(t.grpcAddress, foreign, token)).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
      await expect(httpsGet(t.server.httpPort, "/healthz", { ca: files.caPem, cert: other.clientCertPem, key: other.clientKeyPem })).rejects.toThrow();
    } finally {
      other.remove();
    }
  });
});

describe("TLS configuration", () => {
  it.each([
    [{ tlsCert: "a.pem", tlsKey: "a.key" }, {}, { certFile: "a.pem", keyFile: "a.key" }],
    [{}, { PORTCULLIS_TLS_CERT: "c.pem", PORTCULLIS_TLS_KEY: "c.key", PORTCULLIS_TLS_CLIENT_CA: "ca.pem" }, { certFile: "c.pem", keyFile: "c.key", clientCaFile: "ca.pem" }],
    [{}, {}, undefined],
  ])("reads %j and env %j", (flags, env, expected) => {
    expect(resolveServeConfig(flags, env).tls).toEqual(expected);
  });

  it.each([
    [{ tlsCert: "a.pem" }, /go together/],
    [{ tlsKey: "a.key" }, /go together/],
    [{ tlsClientCa: "ca.pem" }, /needs --tls-cert/],
  ])("refuses %j", (flags, message) => {
    expect(() => resolveServeConfig(flags, {})).toThrow(message);
  });

  it.skipIf(!hasOpenssl)("refuses to start with a key that does not match the certificate, naming the files", async () => {
    const files = makeTlsTestFiles();
    try {
      fs.writeFileSync(files.keyFile, files.nextKeyPem);
      await expect(startTestServer(undefined, { tls: { certFile: files.certFile, keyFile: files.keyFile } })).rejects.toThrow(/cannot be used/);
      await expect(startTestServer(undefined, { tls: { certFile: `${files.dir}/missing.pem`, keyFile: files.keyFile } })).rejects.toThrow(/cannot read the tls certificate/);
    } finally {
      files.remove();
    }
  });

  it.skipIf(!hasOpenssl)("refuses a FIFO named as the certificate at once instead of waiting for a writer", async () => {
    const files = makeTlsTestFiles();
    try {
      const fifo = `${files.dir}/fifo.pem`;
      execFileSync("mkfifo", [fifo]);
      const started = Date.now();
      await expect(startTestServer(undefined, { tls: { certFile: fifo, keyFile: files.keyFile } })).rejects.toThrow(/cannot read the tls certificate `.*fifo\.pem`: not a regular file/);
      expect(Date.now() - started).toBeLessThan(2_000);
    } finally {
      files.remove();
    }
  }, 10_000);
});
