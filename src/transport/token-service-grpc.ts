/**
 * `portcullis.v1.TokenService` on the grpc-js server (the gRPC port). Thin:
 * reads the caller's credential and peer into a {@link CallContext}, calls the
 * service, and sends a {@link ConnectError} as the gRPC status of the same
 * code (Connect's codes are gRPC's).
 */
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import { ConnectError } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import {
  CreateTokenRequestSchema,
  CreateTokenResponseSchema,
  EmergencyRevokeRequestSchema,
  EmergencyRevokeResponseSchema,
  GetTokenRequestSchema,
  GetTokenResponseSchema,
  ListTokensRequestSchema,
  ListTokensResponseSchema,
  RevokeTokenRequestSchema,
  RevokeTokenResponseSchema,
  RotateTokenRequestSchema,
  RotateTokenResponseSchema,
  TokenService,
  UpdateTokenControlsRequestSchema,
  UpdateTokenControlsResponseSchema,
} from "../gen/portcullis/v1/token_service_pb.js";
import { toConnectError, type CallContext, type TokenServiceImpl } from "../service/token-service.js";
import { unaryMethod } from "./grpc.js";
import { unmapIpv4 } from "./token-service-connect.js";

const path = (method: string): string => `/${TokenService.typeName}/${method}`;

/** The grpc-js definition of `TokenService`, one entry per method. */
export const tokenServiceDefinition = {
  createToken: unaryMethod(path("CreateToken"), CreateTokenRequestSchema, CreateTokenResponseSchema),
  getToken: unaryMethod(path("GetToken"), GetTokenRequestSchema, GetTokenResponseSchema),
  listTokens: unaryMethod(path("ListTokens"), ListTokensRequestSchema, ListTokensResponseSchema),
  updateTokenControls: unaryMethod(path("UpdateTokenControls"), UpdateTokenControlsRequestSchema, UpdateTokenControlsResponseSchema),
  rotateToken: unaryMethod(path("RotateToken"), RotateTokenRequestSchema, RotateTokenResponseSchema),
  revokeToken: unaryMethod(path("RevokeToken"), RevokeTokenRequestSchema, RevokeTokenResponseSchema),
  emergencyRevoke: unaryMethod(path("EmergencyRevoke"), EmergencyRevokeRequestSchema, EmergencyRevokeResponseSchema),
};

/** Adds `TokenService` to a grpc-js server. */
export function addTokenService(server: grpc.Server, service: TokenServiceImpl): void {
  server.addService(tokenServiceDefinition, {
    createToken: handler(CreateTokenRequestSchema, CreateTokenResponseSchema, (request, call) => service.createToken(request, call)),
    getToken: handler(GetTokenRequestSchema, GetTokenResponseSchema, (request, call) => service.getToken(request, call)),
    listTokens: handler(ListTokensRequestSchema, ListTokensResponseSchema, (request, call) => service.listTokens(request, call)),
    updateTokenControls: handler(UpdateTokenControlsRequestSchema, UpdateTokenControlsResponseSchema, (request, call) => service.updateTokenControls(request, call)),
    rotateToken: handler(RotateTokenRequestSchema, RotateTokenResponseSchema, (request, call) => service.rotateToken(request, call)),
    revokeToken: handler(RevokeTokenRequestSchema, RevokeTokenResponseSchema, (request, call) => service.revokeToken(request, call)),
    emergencyRevoke: handler(EmergencyRevokeRequestSchema, EmergencyRevokeResponseSchema, (request, call) => service.emergencyRevoke(request, call)),
  });
}

function handler<I extends DescMessage, O extends DescMessage>(
  _input: I,
  _output: O,
  run: (request: MessageShape<I>, call: CallContext) => MessageShape<O>,
): grpc.handleUnaryCall<MessageShape<I>, MessageShape<O>> {
  return (call, callback) => {
    try {
      callback(null, run(call.request, callContextOf(call)));
    } catch (error) {
      const connectError: ConnectError = toConnectError(error);
      callback({ code: connectError.code as number as grpc.status, details: connectError.rawMessage, metadata: new grpc.Metadata() }, null);
    }
  };
}

function callContextOf(call: grpc.ServerUnaryCall<unknown, unknown>): CallContext {
  const text = (name: string): string[] => call.metadata.get(name).filter((value): value is string => typeof value === "string");
  const authorization = text("authorization");
  const requestId = text("x-request-id")[0];
  return {
    authorization: authorization.length === 0 ? undefined : authorization.join(", "),
    sourceIp: peerIp(call.getPeer()),
    ...(requestId === undefined ? {} : { requestId }),
  };
}

/** grpc-js peers look like `127.0.0.1:5123`, `[::1]:5123` or `ipv4:127.0.0.1:5123`; `""` when not an ip. */
export function peerIp(peer: string): string {
  const bare = peer.replace(/^ipv[46]:/, "");
  if (bare.startsWith("[")) return unmapIpv4(bare.slice(1, bare.indexOf("]")));
  const colon = bare.lastIndexOf(":");
  const host = colon === -1 ? bare : bare.slice(0, colon);
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(host) ? host : "";
}
