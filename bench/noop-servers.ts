/**
 * No-op servers: the same libraries the real server uses, answering at once,
 * so each loopback row has a floor measured in the same run.
 *
 * Usage: node dist/bench/noop-servers.js grpc-js|node-http2|connect-http1|node-http
 * prints `listening <port>` once bound on 127.0.0.1.
 */
import * as http from "node:http";
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { create } from "@bufbuild/protobuf";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { AuthorizationService, AuthorizeResponseSchema } from "../src/gen/portcullis/v1/authorization_pb.js";

export const NOOP_KINDS = ["grpc-js", "node-http2", "connect-http1", "node-http"] as const;
export type NoopKind = (typeof NOOP_KINDS)[number];

/** gRPC paths the gRPC no-ops answer: the real server's Authorize and Envoy's Check. */
export const GRPC_PATHS = ["/portcullis.v1.AuthorizationService/Authorize", "/envoy.service.auth.v3.Authorization/Check"] as const;

/**
 * grpc-js with raw-bytes codecs: the library's own cost (HTTP/2, framing,
 * metadata, call objects) without any protobuf work, answering an empty message.
 */
function grpcJs(): Promise<number> {
  const server = new grpc.Server({ "grpc.max_receive_message_length": 1024 * 1024 });
  const identity = (bytes: Buffer) => bytes;
  const definition: Record<string, grpc.MethodDefinition<Buffer, Buffer>> = {};
  const handlers: grpc.UntypedServiceImplementation = {};
  for (const [i, path] of GRPC_PATHS.entries()) {
    definition[`m${i}`] = { path, requestStream: false, responseStream: false, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity };
    handlers[`m${i}`] = (_call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => callback(null, Buffer.alloc(0));
  }
  server.addService(definition, handlers);
  return new Promise((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, port) => (error ? reject(error) : resolve(port))),
  );
}

/** A bare `node:http2` stream handler speaking just enough gRPC: the floor under any gRPC library. */
function nodeHttp2(): Promise<number> {
  const empty = Buffer.alloc(5);
  const server = http2.createServer();
  server.on("stream", (stream) => {
    stream.on("data", () => undefined);
    stream.on("end", () => {
      stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
      stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
      stream.end(empty);
    });
  });
  return listen(server);
}

/** connect-node over HTTP/1.1, answering an empty `AuthorizeResponse` (it must decode the request to call us). */
function connectHttp1(): Promise<number> {
  const adapter = connectNodeAdapter({
    routes: (router) => router.service(AuthorizationService, { authorize: () => create(AuthorizeResponseSchema) }),
    readMaxBytes: 1024 * 1024,
  });
  return listen(http.createServer(adapter));
}

/** Bare `node:http`: reads the body, answers a small JSON. */
function nodeHttp(): Promise<number> {
  const body = Buffer.from("{}");
  return listen(
    http.createServer((request, response) => {
      request.on("data", () => undefined);
      request.on("end", () => {
        response.writeHead(200, { "content-type": "application/json", "content-length": body.length });
        response.end(body);
      });
    }),
  );
}

function listen(server: http.Server | http2.Http2Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve((server.address() as AddressInfo).port));
  });
}

const STARTERS: Record<NoopKind, () => Promise<number>> = {
  "grpc-js": grpcJs,
  "node-http2": nodeHttp2,
  "connect-http1": connectHttp1,
  "node-http": nodeHttp,
};

const kind = process.argv[2] as NoopKind | undefined;
if (kind !== undefined && import.meta.url.endsWith(process.argv[1]!.replace(/\\/g, "/"))) {
  const start = STARTERS[kind];
  if (start === undefined) {
    process.stderr.write(`unknown no-op server \`${kind}\`: expected one of ${NOOP_KINDS.join(", ")}\n`);
    process.exit(2);
  }
  const port = await start();
  process.stdout.write(`listening ${port}\n`);
  const stop = () => process.exit(0);
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}
