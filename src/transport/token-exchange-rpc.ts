/**
 * `TokenService.ExchangeToken` for Connect (HTTP/1.1 port) and gRPC (gRPC
 * port). Thin: the caller's `authorization`, `x-request-id` and address become
 * the exchange's input (a `POST` to the exchange path), and a refusal becomes
 * the RPC status of its decision code, carrying the decision's client headers
 * (`www-authenticate`, `retry-after`, `ratelimit-*`) as response metadata.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  ExchangeTokenRequestSchema,
  ExchangeTokenResponseSchema,
  TokenService,
  type ExchangeTokenRequest,
  type ExchangeTokenResponse,
} from "../gen/portcullis/v1/token_service_pb.js";
import type { TokenExchange } from "../jwt/token-exchange.js";
import { rpcCodeOf, type CallContext } from "./token-service.js";
import { decodeRequest } from "./grpc.js";
import { GrpcError, type GrpcMethod } from "./grpc-server.js";
import { callContextOf } from "./token-service-grpc.js";

/** Runs one `ExchangeToken` call; throws only {@link ConnectError}. */
export async function exchangeTokenCall(exchange: TokenExchange, request: ExchangeTokenRequest, call: CallContext): Promise<ExchangeTokenResponse> {
  const path = exchange.path();
  if (path === null) throw new ConnectError("token exchange is not enabled by the policy set", Code.Unimplemented);
  const headers = new Map<string, string>();
  if (call.authorization !== undefined) headers.set("authorization", call.authorization);
  if (call.requestId !== undefined) headers.set("x-request-id", call.requestId);
  const outcome = await exchange.exchange(
    { method: "POST", path, host: "", headers, sourceIp: call.sourceIp, clientCertificate: null },
    { scopes: request.scopes, lifetimeSeconds: request.lifetimeSeconds },
  );
  if (outcome.ok) return create(ExchangeTokenResponseSchema, { accessToken: outcome.accessToken, expiresIn: outcome.expiresIn, tokenType: outcome.tokenType });
  const metadata = new Headers();
  for (const [name, value] of outcome.decision.responseHeaders) metadata.append(name, value);
  throw new ConnectError(outcome.decision.message, rpcCodeOf(outcome.decision.code), metadata);
}

/** The gRPC port's `ExchangeToken` method, by path. */
export function tokenExchangeGrpcMethods(exchange: TokenExchange): Map<string, GrpcMethod> {
  return new Map([
    [
      `/${TokenService.typeName}/ExchangeToken`,
      {
        kind: "unary",
        handle: (bytes, call) =>
          exchangeTokenCall(exchange, decodeRequest(ExchangeTokenRequestSchema, bytes), callContextOf(call)).then(
            (response) => toBinary(ExchangeTokenResponseSchema, response),
            (error: unknown) => {
              const connectError = ConnectError.from(error);
              throw new GrpcError(connectError.code, connectError.rawMessage);
            },
          ),
      },
    ],
  ]);
}
