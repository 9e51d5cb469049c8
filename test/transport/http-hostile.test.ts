/**
 * The HTTP/1.1 port against clients that never finish (issue 13, finding 2):
 * headers and bodies have deadlines of our own rather than Node's 60 s / 300 s.
 */
import * as net from "node:net";
import * as http from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { closeHttp, createHttpServer, listenHttp } from "../../src/transport/http.js";
import { noPolicyAuthorizer } from "../support/no-policy-authorizer.js";

let server: http.Server;
let port: number;

beforeAll(async () => {
  server = createHttpServer({ authorize: noPolicyAuthorizer(), ready: () => true, limits: { headersTimeoutMs: 300, requestTimeoutMs: 600 } });
  port = await listenHttp(server, "127.0.0.1", 0);
});
afterAll(() => closeHttp(server, 500));

/** Writes `text` and resolves with what came back and how long the server kept the connection. */
function hold(text: string): Promise<{ response: string; closedAfterMs: number }> {
  const started = Date.now();
  const socket = net.connect(port, "127.0.0.1");
  socket.on("error", () => undefined);
  let response = "";
  socket.on("data", (chunk: Buffer) => (response += chunk.toString("latin1")));
  socket.write(text);
  const guard = setTimeout(() => socket.destroy(), 10_000);
  return new Promise((resolve) =>
    socket.on("close", () => {
      clearTimeout(guard);
      resolve({ response, closedAfterMs: Date.now() - started });
    }),
  );
}

describe("the HTTP/1.1 port's own deadlines", () => {
  it("closes a connection whose headers never end (slowloris) after its headers timeout", async () => {
    const { response, closedAfterMs } = await hold("GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: 1\r\n");
    expect(closedAfterMs).toBeLessThan(2_000);
    expect(response).toMatch(/^HTTP\/1\.1 408/);
  });

  it("closes a request whose body never ends after its request timeout", async () => {
    const head = "POST /portcullis.v1.AuthorizationService/Authorize HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{";
    const { closedAfterMs } = await hold(head);
    expect(closedAfterMs).toBeLessThan(2_500);
  });

  it("still answers a prompt request", async () => {
    const response = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect(await response.text()).toBe("ok\n");
  });
});

describe("the HTTP/1.1 port's bound on unfinished bodies", () => {
  let small: http.Server;
  let smallPort: number;
  beforeAll(async () => {
    small = createHttpServer({ authorize: noPolicyAuthorizer(), ready: () => true, limits: { maxBufferedBodyBytes: 2 * 1024 * 1024 } }) as http.Server;
    smallPort = await listenHttp(small, "127.0.0.1", 0);
  });
  afterAll(() => closeHttp(small, 500));

  it("answers 503 at once to a body that would pass the bound while others are unfinished, and serves again once they are gone", async () => {
    const head = (length: number) => `POST /portcullis.v1.AuthorizationService/Authorize HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${length}\r\n\r\n{`;
    const sockets: net.Socket[] = [];
    for (let i = 0; i < 2; i++) {
      const socket = net.connect(smallPort, "127.0.0.1");
      socket.on("error", () => undefined);
      socket.write(head(1024 * 1024));
      sockets.push(socket);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
    const started = Date.now();
    const socket = net.connect(smallPort, "127.0.0.1");
    socket.on("error", () => undefined);
    const response = await new Promise<string>((resolve) => {
      let text = "";
      socket.on("data", (chunk: Buffer) => {
        text += chunk.toString("latin1");
        if (text.includes("\r\n\r\n")) resolve(text);
      });
      setTimeout(() => resolve(text), 5_000);
      socket.write(head(1024));
    });
    socket.destroy();
    expect(response).toMatch(/^HTTP\/1\.1 503/);
    expect(Date.now() - started).toBeLessThan(2_000);
    for (const held of sockets) held.destroy();
    await new Promise((resolve) => setTimeout(resolve, 100));
    const ok = await fetch(`http://127.0.0.1:${smallPort}/portcullis.v1.AuthorizationService/Authorize`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ method: "GET", path: "/", host: "x", sourceIp: "127.0.0.1", headers: [] }) });
    expect(ok.status).toBe(200);
  });

  it("gives the bytes back when a request is done, over keep-alive too", async () => {
    const padding = "x".repeat(200 * 1024);
    for (let i = 0; i < 30; i++) {
      const response = await fetch(`http://127.0.0.1:${smallPort}/portcullis.v1.AuthorizationService/Authorize`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ method: "GET", path: "/", host: padding, sourceIp: "127.0.0.1", headers: [] }),
      });
      expect(response.status).toBe(200);
      await response.arrayBuffer();
    }
  });
});
