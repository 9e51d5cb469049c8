/**
 * `portcullis.v1.TokenService` on the gRPC port. Thin: reads the caller's
 * credential and peer into a {@link CallContext}, calls the service, and sends
 * a {@link ConnectError} as the gRPC status of the same code (Connect's codes
 * are gRPC's).
 */
import { toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import type { ConnectError } from "@connectrpc/connect";
import {
  CreateTokenRequestSchema,
  CreateTokenResponseSchema,
  EmergencyRevokeRequestSchema,
  EmergencyRevokeResponseSchema,
  GetTokenRequestSchema,
  GetTokenResponseSchema,
  ListSecurityEventsRequestSchema,
  ListSecurityEventsResponseSchema,
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
import { toConnectError, type CallContext, type TokenServiceImpl } from "./token-service.js";
import { decodeRequest } from "./grpc.js";
import { GrpcError, headerValue, type GrpcCall, type GrpcMethod } from "./grpc-server.js";
import { unmapPeerAddress } from "./trusted-proxies.js";

/** Every `TokenService` method, by gRPC path. */
export function tokenServiceMethods(service: TokenServiceImpl): Map<string, GrpcMethod> {
  const path = (method: string): string => `/${TokenService.typeName}/${method}`;
  return new Map([
    [path("CreateToken"), unary(CreateTokenRequestSchema, CreateTokenResponseSchema, (request, call) => service.createToken(request, call))],
    [path("GetToken"), unary(GetTokenRequestSchema, GetTokenResponseSchema, (request, call) => service.getToken(request, call))],
    [path("ListTokens"), unary(ListTokensRequestSchema, ListTokensResponseSchema, (request, call) => service.listTokens(request, call))],
    [path("UpdateTokenControls"), unary(UpdateTokenControlsRequestSchema, UpdateTokenControlsResponseSchema, (request, call) => service.updateTokenControls(request, call))],
    [path("RotateToken"), unary(RotateTokenRequestSchema, RotateTokenResponseSchema, (request, call) => service.rotateToken(request, call))],
    [path("RevokeToken"), unary(RevokeTokenRequestSchema, RevokeTokenResponseSchema, (request, call) => service.revokeToken(request, call))],
    [path("EmergencyRevoke"), unary(EmergencyRevokeRequestSchema, EmergencyRevokeResponseSchema, (request, call) => service.emergencyRevoke(request, call))],
    [path("ListSecurityEvents"), unary(ListSecurityEventsRequestSchema, ListSecurityEventsResponseSchema, (request, call) => service.listSecurityEvents(request, call))],
  ]);
}

function unary<I extends DescMessage, O extends DescMessage>(
  input: I,
  output: O,
  run: (request: MessageShape<I>, call: CallContext) => MessageShape<O> | Promise<MessageShape<O>>,
): GrpcMethod {
  const fail = (error: unknown): never => {
    const connectError: ConnectError = toConnectError(error);
    throw new GrpcError(connectError.code, connectError.rawMessage);
  };
  return {
    kind: "unary",
    handle: (bytes, call) => {
      const request = decodeRequest(input, bytes);
      let response: MessageShape<O> | Promise<MessageShape<O>>;
      try {
        response = run(request, callContextOf(call));
      } catch (error) {
        return fail(error);
      }
      // why: writes retry a busy store on timers, so they answer later
      if (response instanceof Promise) return response.then((value) => toBinary(output, value), fail);
      return toBinary(output, response);
    },
  };
}

/** The caller of a gRPC call: its `authorization`, `x-request-id` and peer address. */
export function callContextOf(call: GrpcCall): CallContext {
  const authorization = headerValue(call, "authorization");
  const requestId = headerValue(call, "x-request-id");
  return { authorization, sourceIp: unmapPeerAddress(call.peerAddress), ...(requestId === undefined ? {} : { requestId }) };
}
