/** Starts the real server on ephemeral ports with a temporary store, as `portcullis serve` does. */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import * as grpc from "@grpc/grpc-js";
import { pino } from "pino";
import type { ServeConfig } from "../../src/config/config.js";
import { AuthorizeRequestSchema, AuthorizeResponseSchema, type AuthorizeRequest, type AuthorizeResponse } from "../../src/gen/portcullis/v1/authorization_pb.js";
import { startServer, type RunningServer } from "../../src/main.js";
import { unaryMethod } from "./grpc-client.js";
import { EXAMPLE_POLICY_DIR } from "./fixtures.js";

export interface TestServer {
  readonly server: RunningServer;
  readonly dataDir: string;
  readonly httpUrl: string;
  readonly grpcAddress: string;
  stop(): Promise<void>;
}

/** Starts the server; `config` overrides the defaults (e.g. `trustedProxies`). */
export async function startTestServer(policyDir = EXAMPLE_POLICY_DIR, config: Partial<Omit<ServeConfig, "policyDir" | "dataDir">> = {}): Promise<TestServer> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-it-"));
  const server = await startServer(
    { host: "127.0.0.1", grpcPort: 0, httpPort: 0, policyDir, dataDir, logLevel: "silent", ...config },
    pino({ level: "silent" }),
  );
  return {
    server,
    dataDir,
    httpUrl: `http://127.0.0.1:${server.httpPort}`,
    grpcAddress: `127.0.0.1:${server.grpcPort}`,
    async stop() {
      await server.close(1_000);
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

const authorizeMethod = unaryMethod("/portcullis.v1.AuthorizationService/Authorize", AuthorizeRequestSchema, AuthorizeResponseSchema);

/** A plain grpc-js client for `Authorize`. */
export function grpcAuthorizeClient(address: string): { authorize(request: AuthorizeRequest): Promise<AuthorizeResponse>; close(): void } {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  return {
    authorize: (request) =>
      new Promise((resolve, reject) => {
        client.makeUnaryRequest(authorizeMethod.path, authorizeMethod.requestSerialize, authorizeMethod.responseDeserialize, request, (error, response) =>
          error ? reject(error) : resolve(response!),
        );
      }),
    close: () => client.close(),
  };
}
