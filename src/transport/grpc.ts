/**
 * The gRPC port: `portcullis.v1.AuthorizationService` and `grpc.health.v1.Health`
 * over HTTP/2 cleartext, served by `@grpc/grpc-js`, which costs a fifth of the
 * CPU per request that connect-node's HTTP/2 server does on this workload.
 */
import { fromBinary, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { HealthImplementation } from "grpc-health-check";
import { AuthorizationService, AuthorizeRequestSchema, AuthorizeResponseSchema } from "../gen/portcullis/v1/authorization_pb.js";
import type { Authorizer } from "../service/authorize.js";
import type { TokenServiceImpl } from "../service/token-service.js";
import { authzInputFromMessage, messageFromResult } from "./authorize-messages.js";
import { registerEnvoyAuthorization, type EnvoyCheckOptions } from "./envoy.js";
// A cycle (it builds its definitions with unaryMethod), safe because both sides only use function declarations.
import { addTokenService } from "./token-service-grpc.js";
import { buildTrustedProxyMatcher } from "./trusted-proxies.js";

/** A unary gRPC method definition whose messages are protobuf-es schemas. */
export function unaryMethod<I extends DescMessage, O extends DescMessage>(
  path: string,
  input: I,
  output: O,
): grpc.MethodDefinition<MessageShape<I>, MessageShape<O>> {
  return {
    path,
    requestStream: false,
    responseStream: false,
    requestSerialize: (message) => Buffer.from(toBinary(input, message)),
    requestDeserialize: (bytes) => fromBinary(input, bytes),
    responseSerialize: (message) => Buffer.from(toBinary(output, message)),
    responseDeserialize: (bytes) => fromBinary(output, bytes),
  };
}

const authorizationServiceDefinition = {
  authorize: unaryMethod(`/${AuthorizationService.typeName}/Authorize`, AuthorizeRequestSchema, AuthorizeResponseSchema),
};

export interface GrpcServerOptions {
  readonly authorize: Authorizer;
  readonly health: HealthImplementation;
  /** Envoy's `Authorization/Check`: which peers' forwarding headers to believe, and where transport failures go. */
  readonly envoy?: Omit<EnvoyCheckOptions, "authorize">;
  /** `portcullis.v1.TokenService` (token management, guarded by Portcullis itself); not served when absent. */
  readonly tokenService?: TokenServiceImpl;
}

/** Creates the gRPC server with every service registered; {@link listenGrpc} binds it. */
export function createGrpcServer(options: GrpcServerOptions): grpc.Server {
  const server = new grpc.Server({ "grpc.max_receive_message_length": 1024 * 1024 });
  server.addService(authorizationServiceDefinition, {
    authorize: (call: grpc.ServerUnaryCall<MessageShape<typeof AuthorizeRequestSchema>, unknown>, callback: grpc.sendUnaryData<MessageShape<typeof AuthorizeResponseSchema>>) => {
      // This port's codec is protobuf binary (unaryMethod), never JSON.
      callback(null, messageFromResult(options.authorize(authzInputFromMessage(call.request)), "binary"));
    },
  });
  registerEnvoyAuthorization(server, { trustedProxies: buildTrustedProxyMatcher([]), ...options.envoy, authorize: options.authorize });
  if (options.tokenService !== undefined) addTokenService(server, options.tokenService);
  options.health.addToServer(server);
  return server;
}

/** Binds the server on `host:port` (port 0 picks a free one) and resolves to the bound port. */
export function listenGrpc(server: grpc.Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const address = host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
    server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (error, boundPort) => (error ? reject(error) : resolve(boundPort)));
  });
}

/** Stops accepting calls and waits for those in flight, up to `graceMs`, then cuts the rest. */
export function closeGrpc(server: grpc.Server, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
