/**
 * `portcullis healthcheck`: asks the HTTP port this configuration serves on
 * whether it is ready (`/readyz`), for container health checks. Reads the same
 * flags and variables as `serve`, so a changed `PORTCULLIS_HTTP_PORT` is
 * followed. Kept free of the rest of the CLI: a container runs it every few
 * seconds, and loading the whole server costs about five times the CPU.
 */
import * as http from "node:http";
import * as https from "node:https";
import { parseArgs } from "node:util";
import { ConfigError, resolveServeConfig } from "../config/config.js";

/** What `healthcheck` found: exit code 0 when ready, 1 otherwise, and one line for a person. */
export interface HealthcheckResult {
  readonly exitCode: 0 | 1;
  readonly message: string;
}

/**
 * Asks `http://<host>:<port>/readyz` with the host and port `serve` would bind
 * (a wildcard bind address is asked on loopback); ready only on 200 within `timeoutMs`.
 * When the configuration turns TLS on (`PORTCULLIS_TLS_CERT`), it asks over
 * HTTPS without checking the server's certificate: it asks its own server,
 * sends nothing secret, and the certificate rarely names the loopback address.
 * A server that requires client certificates (`PORTCULLIS_TLS_CLIENT_CA`)
 * refuses it: probe such a server as docs/tls.md says.
 */
export function checkHealth(flags: { host?: string; httpPort?: string }, env: NodeJS.ProcessEnv = process.env, timeoutMs = 2_000): Promise<HealthcheckResult> {
  const { host, httpPort, tls } = resolveServeConfig({ host: flags.host, httpPort: flags.httpPort, grpcPort: "0", logLevel: "info" }, env);
  if (httpPort === 0) throw new ConfigError("--http-port (PORTCULLIS_HTTP_PORT) is 0: healthcheck needs the port the server bound");
  const target = loopbackFor(host);
  const url = `${tls === undefined ? "http" : "https"}://${target.includes(":") ? `[${target}]` : target}:${httpPort}/readyz`;
  const get = tls === undefined ? http.get : https.get;
  return new Promise((resolve) => {
    const request = get(url, { timeout: timeoutMs, agent: false, rejectUnauthorized: false }, (response) => {
      response.resume();
      const ok = response.statusCode === 200;
      resolve({ exitCode: ok ? 0 : 1, message: `${url}: ${response.statusCode}${ok ? " ready" : " not ready"}` });
    });
    request.on("timeout", () => request.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    request.on("error", (error) => resolve({ exitCode: 1, message: `${url}: ${error.message}` }));
  });
}

/** A wildcard bind address is not an address to connect to: ask loopback of the same family. */
function loopbackFor(host: string): string {
  if (host === "0.0.0.0") return "127.0.0.1";
  if (host === "::" || host === "[::]") return "::1";
  return host.replace(/^\[(.*)\]$/, "$1");
}

/**
 * Runs `healthcheck` from its arguments (after the command name), printing one
 * line to stdout when ready and to stderr when not; resolves to the exit code
 * (2 for bad arguments or configuration).
 */
export async function healthcheckMain(args: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  try {
    const { values } = parseArgs({ args: [...args], options: { host: { type: "string" }, "http-port": { type: "string" } }, strict: true });
    const result = await checkHealth({ host: values.host, httpPort: values["http-port"] }, env);
    (result.exitCode === 0 ? process.stdout : process.stderr).write(`${result.message}\n`);
    return result.exitCode;
  } catch (error) {
    process.stderr.write(`error: ${error instanceof Error ? error.message : String(error)}\n`);
    return 2;
  }
}
