/**
 * `portcullis healthcheck`, the container's HEALTHCHECK: it asks the port the
 * configuration names, through the same flags and variables as `serve`.
 */
import { execFile } from "node:child_process";
import * as http from "node:http";
import net from "node:net";
import path from "node:path";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkHealth } from "../../src/cli/healthcheck.js";
import { REPO_ROOT } from "../support/fixtures.js";
import { startTestServer, type TestServer } from "../support/server.js";
import { makeTlsTestFiles, opensslAvailable } from "../support/tls-certs.js";

let t: TestServer;
let port: string;
let closedPort: string;
beforeAll(async () => {
  t = await startTestServer(undefined, { host: "0.0.0.0" });
  port = String(t.server.httpPort);
  // A port nothing listens on: bind one, note it, release it.
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  closedPort = String((probe.address() as AddressInfo).port);
  await new Promise((resolve) => probe.close(resolve));
});
afterAll(async () => {
  await t.stop();
});

describe("portcullis healthcheck", () => {
  it.each([
    { name: "the port from --http-port", flags: () => ({ httpPort: port }), env: () => ({}) },
    { name: "the port from PORTCULLIS_HTTP_PORT", flags: () => ({}), env: () => ({ PORTCULLIS_HTTP_PORT: port }) },
    { name: "a wildcard host, asked on loopback", flags: () => ({}), env: () => ({ PORTCULLIS_HOST: "0.0.0.0", PORTCULLIS_HTTP_PORT: port }) },
  ])("is healthy on $name", async ({ flags, env }) => {
    const result = await checkHealth(flags(), env());
    expect(result).toMatchObject({ exitCode: 0 });
    expect(result.message).toContain("/readyz: 200 ready");
  });

  it("is unhealthy when nothing answers on the configured port", async () => {
    const result = await checkHealth({}, { PORTCULLIS_HTTP_PORT: closedPort });
    expect(result.exitCode).toBe(1);
    expect(result.message).toContain("ECONNREFUSED");
  });

  it("is unhealthy when the server answers not ready", async () => {
    const notReady = http.createServer((_request, response) => response.writeHead(503).end());
    await new Promise<void>((resolve) => notReady.listen(0, "127.0.0.1", resolve));
    try {
      const result = await checkHealth({ httpPort: String((notReady.address() as AddressInfo).port) }, {});
      expect(result).toMatchObject({ exitCode: 1 });
      expect(result.message).toContain("503 not ready");
    } finally {
      notReady.closeAllConnections();
      await new Promise((resolve) => notReady.close(resolve));
    }
  });

  it("runs as the container runs it: `node bin/portcullis.js healthcheck`, exit 0 then 1", async () => {
    // Asynchronously: the server under test shares this process's event loop.
    const run = (env: Record<string, string>) =>
      new Promise<{ status: number; stderr: string }>((resolve) => {
        execFile(process.execPath, [path.join(REPO_ROOT, "bin/portcullis.js"), "healthcheck"], { env: { ...process.env, ...env }, timeout: 10_000 }, (error, _stdout, stderr) =>
          resolve({ status: error === null ? 0 : Number(error.code), stderr }),
        );
      });
    const healthy = await run({ PORTCULLIS_HOST: "0.0.0.0", PORTCULLIS_HTTP_PORT: port });
    expect(healthy.stderr).toBe("");
    expect(healthy.status).toBe(0);
    expect((await run({ PORTCULLIS_HTTP_PORT: closedPort })).status).toBe(1);
    const invalid = await run({ PORTCULLIS_HTTP_PORT: "eighty" });
    expect(invalid.status).toBe(2);
    expect(invalid.stderr).toContain("--http-port (PORTCULLIS_HTTP_PORT)");
  });
});

describe.skipIf(!opensslAvailable())("portcullis healthcheck on a TLS port", () => {
  it("asks over HTTPS when the configuration turns TLS on, and fails over plain HTTP", async () => {
    const files = makeTlsTestFiles();
    const secure = await startTestServer(undefined, { tls: { certFile: files.certFile, keyFile: files.keyFile } });
    try {
      const env = { PORTCULLIS_HTTP_PORT: String(secure.server.httpPort), PORTCULLIS_TLS_CERT: files.certFile, PORTCULLIS_TLS_KEY: files.keyFile };
      const result = await checkHealth({}, env);
      expect(result).toMatchObject({ exitCode: 0 });
      expect(result.message).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/readyz: 200 ready$/);
      // The same port asked in cleartext: not healthy, which is what the TLS branch prevents.
      expect(await checkHealth({}, { PORTCULLIS_HTTP_PORT: String(secure.server.httpPort) })).toMatchObject({ exitCode: 1 });
    } finally {
      await secure.stop();
      files.remove();
    }
  });
});
