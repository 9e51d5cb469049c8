/**
 * A live nginx with `auth_request` in front of a recording upstream, configured
 * with docs/nginx.conf exactly as documented (only the three addresses are
 * replaced). Needs the `nginx` binary; `.ci/install-system-packages` installs it.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import * as http from "node:http";
import * as net from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createToken } from "../../src/service/tokens.js";
import { closeHttp, createHttpServer, listenHttp } from "../../src/transport/http.js";
import { buildTrustedProxyMatcher } from "../../src/transport/trusted-proxies.js";
import { REPO_ROOT } from "../support/fixtures.js";
import { noPolicyAuthorizer } from "../support/no-policy-authorizer.js";
import { freePort, send as get } from "../support/live-proxy.js";
import { startTestServer, type TestServer } from "../support/server.js";

const nginxInstalled = spawnSync("nginx", ["-v"], { encoding: "utf8" }).status === 0;
const TEMPLATE = path.join(REPO_ROOT, "docs", "nginx.conf");

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
}

interface Nginx {
  readonly port: number;
  stop(): Promise<void>;
}

function replaceOnce(text: string, from: string, to: string): string {
  expect(text.split(from).length - 1, `docs/nginx.conf must contain \`${from}\` exactly once`).toBe(1);
  return text.replace(from, to);
}

/** Starts nginx in the foreground, single process, every path in a temp folder; resolves once it accepts connections. */
async function startNginx(portcullisPort: number, upstreamPort: number): Promise<Nginx> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-nginx-"));
  const port = await freePort();
  let site = fs.readFileSync(TEMPLATE, "utf8");
  site = replaceOnce(site, "server 127.0.0.1:8181;", `server 127.0.0.1:${portcullisPort};`);
  site = replaceOnce(site, "server 127.0.0.1:3000;", `server 127.0.0.1:${upstreamPort};`);
  site = replaceOnce(site, "listen 8080;", `listen 127.0.0.1:${port};`);
  fs.writeFileSync(path.join(dir, "site.conf"), site);
  const temp = (name: string) => `${name}_temp_path ${path.join(dir, name)};`;
  fs.writeFileSync(
    path.join(dir, "nginx.conf"),
    [
      "daemon off;",
      "master_process off;",
      "worker_processes 1;",
      `pid ${path.join(dir, "nginx.pid")};`,
      `error_log ${path.join(dir, "error.log")} warn;`,
      "events { worker_connections 64; }",
      "http {",
      "  access_log off;",
      `  ${temp("client_body")} ${temp("proxy")} ${temp("fastcgi")} ${temp("uwsgi")} ${temp("scgi")}`,
      `  include ${path.join(dir, "site.conf")};`,
      "}",
    ].join("\n"),
  );
  const child: ChildProcess = spawn("nginx", ["-p", dir, "-c", path.join(dir, "nginx.conf"), "-e", path.join(dir, "error.log")], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (chunk) => (stderr += String(chunk)));
  let exited = false;
  child.once("exit", () => (exited = true));
  const errorLog = () => `${stderr}${fs.existsSync(path.join(dir, "error.log")) ? fs.readFileSync(path.join(dir, "error.log"), "utf8") : ""}`;
  const stop = async () => {
    if (!exited) {
      const gone = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      await Promise.race([gone, new Promise((resolve) => setTimeout(resolve, 3_000))]);
      if (!exited) child.kill("SIGKILL");
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  for (let attempt = 0; attempt < 100; attempt++) {
    if (exited) {
      const log = errorLog();
      await stop();
      throw new Error(`nginx exited at start:\n${log}`);
    }
    const up = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, "127.0.0.1", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (up) return { port, stop };
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  await stop();
  throw new Error(`nginx did not listen on ${port}:\n${errorLog()}`);
}

describe.runIf(nginxInstalled)("nginx auth_request (live, docs/nginx.conf)", () => {
  let portcullis: TestServer;
  let unavailableServer: http.Server;
  let upstream: http.Server;
  let nginx: Nginx;
  let nginxUnavailable: Nginx;
  const seen: Seen[] = [];
  let operator: string;
  let reader: string;
  let metered: string;

  beforeAll(async () => {
    portcullis = await startTestServer();
    const now = Date.now();
    const base = { tenant: "acme", workspace: "main", environment: "production", type: "service" as const, actor: "test", role: "tenant_operator" };
    operator = (await createToken(portcullis.server.store, portcullis.server.policy(), { ...base, name: "operator" }, now)).token;
    reader = (await createToken(portcullis.server.store, portcullis.server.policy(), { ...base, name: "reader", keyLevel: "read_only" }, now)).token;
    // per day, so that a minute boundary during the run cannot reset it
    metered = (await createToken(portcullis.server.store, portcullis.server.policy(), { ...base, name: "metered", controls: { quota: { limitPerDay: 1 } } }, now)).token;
    const authorize = noPolicyAuthorizer();
    unavailableServer = createHttpServer({ authorize, ready: () => true, extAuthz: { prefix: "/ext-authz", trustedProxies: buildTrustedProxyMatcher([]) } });
    const unavailablePort = await listenHttp(unavailableServer, "127.0.0.1", 0);
    upstream = http.createServer((request, response) => {
      seen.push({ method: request.method ?? "", url: request.url ?? "", headers: request.headers });
      response.writeHead(200, { "content-type": "text/plain" });
      response.end("from upstream");
    });
    const upstreamPort = await listenHttp(upstream, "127.0.0.1", 0);
    nginx = await startNginx(Number(new URL(portcullis.httpUrl).port), upstreamPort);
    nginxUnavailable = await startNginx(unavailablePort, upstreamPort);
  });

  afterAll(async () => {
    await Promise.all([nginx?.stop(), nginxUnavailable?.stop()]);
    await Promise.all([portcullis?.stop(), unavailableServer && closeHttp(unavailableServer, 1_000), upstream && closeHttp(upstream, 1_000)]);
  });

  it("forwards an allowed request with the identity headers and without Authorization", async () => {
    seen.length = 0;
    const response = await get(nginx.port, "/api/payouts?page=2", { authorization: `Bearer ${operator}`, "x-portcullis-tenant": "forged", "x-portcullis-scopes": "*" });
    expect(response.status).toBe(200);
    expect(response.body).toBe("from upstream");
    expect(seen).toHaveLength(1);
    const [request] = seen;
    expect(request!.url).toBe("/api/payouts?page=2");
    expect(request!.headers.authorization).toBeUndefined();
    expect(request!.headers["x-portcullis-tenant"]).toBe("acme");
    expect(request!.headers["x-portcullis-workspace"]).toBe("main");
    expect(request!.headers["x-portcullis-token-id"]).toMatch(/^tok_/);
    // the bundled policy set forwards no scope list; the config's empty `proxy_set_header` drops a forged one
    expect(request!.headers["x-portcullis-scopes"]).toBeUndefined();
  });

  const denials: { name: string; target: () => Nginx; method: string; path: string; headers: () => Record<string, string>; status: number; code: string; header?: [string, RegExp] }[] = [
    { name: "401 with the bearer challenge and body", target: () => nginx, method: "GET", path: "/api/payouts", headers: () => ({}), status: 401, code: "unauthenticated", header: ["www-authenticate", /^Bearer realm="example-payments"/] },
    { name: "403 scope_denied with its body", target: () => nginx, method: "POST", path: "/api/payouts", headers: () => ({ authorization: `Bearer ${reader}` }), status: 403, code: "scope_denied", header: ["www-authenticate", /insufficient_scope/] },
    { name: "400 invalid_request through the 403 mapping", target: () => nginx, method: "GET", path: "/api/payouts%2F..%2Fledger", headers: () => ({ authorization: `Bearer ${operator}` }), status: 400, code: "invalid_request" },
    { name: "503 unavailable through the 403 mapping, with its real status", target: () => nginxUnavailable, method: "GET", path: "/api/payouts", headers: () => ({ authorization: `Bearer ${operator}` }), status: 503, code: "unavailable" },
  ];

  it.each(denials)("$name; the upstream never sees it", async (row) => {
    seen.length = 0;
    const response = await get(row.target().port, row.path, row.headers(), row.method);
    expect(response.status).toBe(row.status);
    expect(response.headers["content-type"]).toBe("application/json");
    expect(response.headers["x-portcullis-code"]).toBe(row.code);
    expect(response.headers["x-request-id"]).toMatch(/^[0-9a-f]{32}$/);
    const body = JSON.parse(response.body);
    expect(body.code).toBe(row.code);
    expect(body.request_id).toBe(response.headers["x-request-id"]);
    if (row.header !== undefined) expect(response.headers[row.header[0]]).toMatch(row.header[1]);
    expect(seen).toHaveLength(0);
  });

  it("passes the rate-limit headers to the client on allow, then answers 429 with Retry-After and the body; the upstream never sees it", async () => {
    seen.length = 0;
    const allowed = await get(nginx.port, "/api/payouts", { authorization: `Bearer ${metered}` });
    expect(allowed.status).toBe(200);
    expect(allowed.body).toBe("from upstream");
    expect(allowed.headers).toMatchObject({ "ratelimit-limit": "1", "ratelimit-remaining": "0", "ratelimit-policy": "1;w=86400" });
    expect(Number(allowed.headers["ratelimit-reset"])).toBeGreaterThanOrEqual(1);
    expect(seen.map((request) => request.url)).toEqual(["/api/payouts"]);

    seen.length = 0;
    const spent = await get(nginx.port, "/api/payouts", { authorization: `Bearer ${metered}` });
    expect(spent.status).toBe(429);
    expect(spent.headers["content-type"]).toBe("application/json");
    expect(spent.headers["x-portcullis-code"]).toBe("quota_exceeded");
    const retryAfter = Number(spent.headers["retry-after"]);
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(86_400);
    expect(spent.headers).toMatchObject({ "ratelimit-limit": "1", "ratelimit-remaining": "0", "ratelimit-reset": String(retryAfter), "ratelimit-policy": "1;w=86400" });
    const body = JSON.parse(spent.body);
    expect(body).toMatchObject({ code: "quota_exceeded", quota: { window: "per_day", limit: 1, retry_after_seconds: retryAfter }, request_id: spent.headers["x-request-id"] });
    expect(body.message).toContain("per day is spent");
    expect(seen).toHaveLength(0);
  });

  it("sends no rate-limit headers when no quota applies", async () => {
    const response = await get(nginx.port, "/api/payouts", { authorization: `Bearer ${operator}` });
    expect(response.status).toBe(200);
    expect(Object.keys(response.headers).filter((name) => name.startsWith("ratelimit"))).toEqual([]);
  });
});

if (!nginxInstalled) {
  describe("nginx auth_request (live)", () => {
    it.skip("needs the `nginx` binary on PATH: run .ci/install-system-packages", () => undefined);
  });
}
