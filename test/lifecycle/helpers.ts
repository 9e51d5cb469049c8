/** Shared helpers of the lifecycle tests: a real server whose logs are captured, and API clients. */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { pino } from "pino";
import { TokenService } from "../../src/gen/portcullis/v1/token_service_pb.js";
import { startServer, type RunningServer } from "../../src/main.js";
import { createToken, type CreateTokenRequest } from "../../src/service/tokens.js";
import { EXAMPLE_POLICY_DIR } from "../support/fixtures.js";

export interface LoggedServer {
  readonly server: RunningServer;
  readonly dataDir: string;
  readonly httpUrl: string;
  readonly grpcAddress: string;
  /** Every log line the server wrote so far, at level trace and up. */
  logs(): string;
  stop(): Promise<void>;
}

/** Starts the real server on port 0 with a temporary store and a logger that writes into a buffer. */
export async function startLoggedServer(policyDir = EXAMPLE_POLICY_DIR): Promise<LoggedServer> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-lifecycle-"));
  const chunks: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      chunks.push(chunk.toString("utf8"));
      done();
    },
  });
  const server = await startServer({ host: "127.0.0.1", grpcPort: 0, httpPort: 0, policyDir, dataDir, logLevel: "trace" }, pino({ level: "trace" }, sink));
  return {
    server,
    dataDir,
    httpUrl: `http://127.0.0.1:${server.httpPort}`,
    grpcAddress: `127.0.0.1:${server.grpcPort}`,
    logs: () => chunks.join(""),
    async stop() {
      await server.close(1_000);
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** A Connect (HTTP/1.1, JSON) client of `TokenService` that sends `token` as its bearer credential. */
export function tokenServiceClient(httpUrl: string, token: string | null): Client<typeof TokenService> {
  const transport = createConnectTransport({
    baseUrl: httpUrl,
    httpVersion: "1.1",
    useBinaryFormat: false,
    interceptors: [
      (next) => async (request) => {
        if (token !== null) request.header.set("authorization", `Bearer ${token}`);
        return next(request);
      },
    ],
  });
  return createClient(TokenService, transport);
}

/** Issues a token straight through the store, as an operator bootstrapping the first admin would. */
export async function seedToken(server: RunningServer, fields: Partial<CreateTokenRequest> & { name: string }): Promise<{ token: string; id: string }> {
  const request: CreateTokenRequest = {
    tenant: "acme",
    workspace: "main",
    environment: "production",
    type: "service",
    role: "tenant_admin",
    keyLevel: "admin",
    actor: "test",
    ...fields,
  };
  const { token, record } = await createToken(server.store, server.policy(), request, Date.now());
  return { token, id: record.id };
}

/** Calls `authorize` until `predicate` holds or `deadlineMs` passes; resolves to the time it held, or `null`. */
export async function pollUntil(check: () => Promise<boolean>, deadlineMs: number, intervalMs = 10): Promise<number | null> {
  while (Date.now() < deadlineMs) {
    if (await check()) return Date.now();
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  return (await check()) ? Date.now() : null;
}
