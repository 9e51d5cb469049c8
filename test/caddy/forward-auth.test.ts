/**
 * A live Caddy with `forward_auth` in front of a recording upstream, configured
 * with docs/Caddyfile exactly as documented (only the three addresses are
 * replaced). Needs the `caddy` binary (Debian's package);
 * `.ci/install-system-packages` installs it.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import * as http from "node:http";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createToken } from "../../src/service/tokens.js";
import { closeHttp, listenHttp } from "../../src/transport/http.js";
import { REPO_ROOT } from "../support/fixtures.js";
import { freePort, send, startListening, type LiveProcess } from "../support/live-proxy.js";
import { startTestServer, type TestServer } from "../support/server.js";

const caddyInstalled = spawnSync("caddy", ["version"], { encoding: "utf8" }).status === 0;
const TEMPLATE = path.join(REPO_ROOT, "docs", "Caddyfile");

function replaceOnce(text: string, from: string, to: string): string {
  expect(text.split(from).length - 1, `docs/Caddyfile must contain \`${from}\` exactly once`).toBe(1);
  return text.replace(from, to);
}

/** Runs Caddy on the documented Caddyfile in a temp folder: no admin endpoint, no automatic HTTPS, no state outside the folder. */
async function startCaddy(dir: string, portcullisPort: number, upstreamPort: number): Promise<{ port: number; process: LiveProcess }> {
  const port = await freePort();
  let site = fs.readFileSync(TEMPLATE, "utf8");
  site = replaceOnce(site, "forward_auth 127.0.0.1:8181 {", `forward_auth 127.0.0.1:${portcullisPort} {`);
  site = replaceOnce(site, "reverse_proxy 127.0.0.1:3000", `reverse_proxy 127.0.0.1:${upstreamPort}`);
  site = replaceOnce(site, ":8080 {", `:${port} {`);
  const config = path.join(dir, "Caddyfile");
  fs.writeFileSync(config, `{\n\tadmin off\n\tauto_https off\n\tdefault_bind 127.0.0.1\n}\n\n${site}`);
  const env = { ...process.env, HOME: dir, XDG_DATA_HOME: path.join(dir, "data"), XDG_CONFIG_HOME: path.join(dir, "config") };
  const caddy = await startListening("caddy", ["run", "--config", config, "--adapter", "caddyfile"], port, { env, cwd: dir });
  return { port, process: caddy };
}

describe.runIf(caddyInstalled)("Caddy forward_auth (live, docs/Caddyfile)", () => {
  let dir: string;
  let portcullis: TestServer;
  let upstream: http.Server;
  let caddy: { port: number; process: LiveProcess };
  const seen: http.IncomingHttpHeaders[] = [];
  const tokens: Record<"operator" | "reader" | "metered", string> = { operator: "", reader: "", metered: "" };

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-caddy-"));
    portcullis = await startTestServer();
    const base = { tenant: "acme", workspace: "main", environment: "production", type: "service" as const, actor: "test", role: "tenant_operator" };
    const make = async (name: string, extra: object) => (await createToken(portcullis.server.store, portcullis.server.policy(), { ...base, name, ...extra }, Date.now())).token;
    tokens.operator = await make("operator", {});
    tokens.reader = await make("reader", { keyLevel: "read_only" });
    // per day, so that a minute boundary during the run cannot reset it
    tokens.metered = await make("metered", { controls: { quota: { limitPerDay: 1 } } });
    upstream = http.createServer((request, response) => {
      seen.push(request.headers);
      response.writeHead(200, { "content-type": "text/plain" });
      response.end(`from upstream ${request.url}`);
    });
    const upstreamPort = await listenHttp(upstream, "127.0.0.1", 0);
    caddy = await startCaddy(dir, Number(new URL(portcullis.httpUrl).port), upstreamPort);
  });

  afterAll(async () => {
    await caddy?.process.stop();
    await Promise.all([portcullis?.stop(), upstream && closeHttp(upstream, 1_000)]);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("forwards an allowed request with the identity headers copied, and neither Authorization nor forged identity", async () => {
    seen.length = 0;
    const response = await send(caddy.port, "/api/payouts?page=2", { authorization: `Bearer ${tokens.operator}`, "x-portcullis-tenant": "forged", "x-portcullis-role": "tenant_admin", "x-portcullis-scopes": "*" });
    expect(response.status).toBe(200);
    expect(response.body).toBe("from upstream /api/payouts?page=2");
    expect(seen).toHaveLength(1);
    const headers = seen[0]!;
    expect(headers.authorization).toBeUndefined();
    expect(headers["x-portcullis-tenant"]).toBe("acme");
    expect(headers["x-portcullis-role"]).toBe("tenant_operator");
    expect(headers["x-portcullis-token-id"]).toMatch(/^tok_/);
    // the bundled policy set forwards no scope list, and a forged one does not get through
    expect(headers["x-portcullis-scopes"]).toBeUndefined();
  });

  it("drops identity headers a client sends even when Portcullis sets none of that name", async () => {
    seen.length = 0;
    const response = await send(caddy.port, "/api/payouts", { authorization: `Bearer ${tokens.operator}`, "x-portcullis-impersonate": "tenant_admin" });
    expect(response.status).toBe(200);
    expect(seen[0]!["x-portcullis-impersonate"]).toBeUndefined();
  });

  it.each([
    { name: "401 with the bearer challenge and body", method: "GET", token: () => "", status: 401, code: "unauthenticated", header: ["www-authenticate", /^Bearer realm="example-payments"/] as const },
    { name: "403 scope_denied with its challenge and body", method: "POST", token: () => tokens.reader, status: 403, code: "scope_denied", header: ["www-authenticate", /insufficient_scope/] as const },
  ])("answers $name; the upstream never sees it", async (row) => {
    seen.length = 0;
    const response = await send(caddy.port, "/api/payouts", row.token() === "" ? {} : { authorization: `Bearer ${row.token()}` }, row.method);
    expect(response.status).toBe(row.status);
    expect(response.headers["content-type"]).toBe("application/json");
    expect(response.headers[row.header[0]]).toMatch(row.header[1]);
    expect(JSON.parse(response.body).code).toBe(row.code);
    expect(seen).toHaveLength(0);
  });

  it("answers a spent quota with 429, Retry-After and the body; the upstream never sees it", async () => {
    expect((await send(caddy.port, "/api/payouts", { authorization: `Bearer ${tokens.metered}` })).status).toBe(200);
    seen.length = 0;
    const spent = await send(caddy.port, "/api/payouts", { authorization: `Bearer ${tokens.metered}` });
    expect(spent.status).toBe(429);
    expect(Number(spent.headers["retry-after"])).toBeGreaterThanOrEqual(1);
    expect(JSON.parse(spent.body)).toMatchObject({ code: "quota_exceeded" });
    expect(seen).toHaveLength(0);
  });
});

if (!caddyInstalled) {
  describe("Caddy forward_auth (live)", () => {
    it.skip("needs the `caddy` binary on PATH: run .ci/install-system-packages", () => undefined);
  });
}

describe("docs/caddy.md", () => {
  it("shows docs/Caddyfile verbatim, the file this test runs", () => {
    const doc = fs.readFileSync(path.join(REPO_ROOT, "docs", "caddy.md"), "utf8");
    expect(/```caddyfile\n([\s\S]*?)```/.exec(doc)?.[1]).toBe(fs.readFileSync(TEMPLATE, "utf8"));
  });
});
