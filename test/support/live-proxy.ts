/**
 * Helpers for tests that drive a real reverse proxy (nginx, Caddy) on loopback:
 * a free port, a started process that is waited for and always stopped, and a
 * plain HTTP request that reports status, headers and body.
 */
import { spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import * as http from "node:http";
import * as net from "node:net";

/** A port nothing listens on right now (bound and released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** A started process and how to stop it (SIGTERM, SIGKILL after 3 s). */
export interface LiveProcess {
  stop(): Promise<void>;
}

/**
 * Spawns `command` and resolves once `port` on loopback accepts connections
 * (5 s at most); rejects with its output when it exits or never listens.
 */
export async function startListening(command: string, args: readonly string[], port: number, options: SpawnOptions = {}, logs: () => string = () => ""): Promise<LiveProcess> {
  const child: ChildProcess = spawn(command, [...args], { stdio: ["ignore", "pipe", "pipe"], ...options });
  let output = "";
  child.stdout?.on("data", (chunk) => (output += String(chunk)));
  child.stderr?.on("data", (chunk) => (output += String(chunk)));
  let exited = false;
  child.once("exit", () => (exited = true));
  const stop = async () => {
    if (exited) return;
    const gone = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGTERM");
    await Promise.race([gone, new Promise((resolve) => setTimeout(resolve, 3_000))]);
    if (!exited) child.kill("SIGKILL");
  };
  for (let attempt = 0; attempt < 100; attempt++) {
    if (exited) throw new Error(`${command} exited at start:\n${output}${logs()}`);
    if (await accepts(port)) return { stop };
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  await stop();
  throw new Error(`${command} did not listen on ${port}:\n${output}${logs()}`);
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

/** A response as read whole. */
export interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One request to `127.0.0.1:port` with `Host: api.example.com` unless given, on a connection of its own. */
export function send(port: number, urlPath: string, headers: Record<string, string> = {}, method = "GET"): Promise<Answer> {
  return request({ host: "127.0.0.1", port, path: urlPath, method, headers: { host: "api.example.com", ...headers }, agent: false });
}

/** One request as `options` say; resolves with status, headers and the body as text. */
export function request(options: http.RequestOptions): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const request = http.request(options, (response) => {
      let body = "";
      response.setEncoding("utf8");
      response.on("data", (chunk: string) => (body += chunk));
      response.on("end", () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body }));
    });
    request.on("error", reject);
    request.end();
  });
}
