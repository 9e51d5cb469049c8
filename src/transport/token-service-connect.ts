/**
 * `portcullis.v1.TokenService` as Connect routes on the HTTP/1.1 port (Connect
 * JSON and binary, gRPC-Web). Thin: reads the caller's credential and peer
 * address into a {@link CallContext} and calls the service.
 */
import { createContextKey, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import { TokenService } from "../gen/portcullis/v1/token_service_pb.js";
import type { TokenExchange } from "../jwt/token-exchange.js";
import type { CallContext, TokenServiceImpl } from "./token-service.js";
import { exchangeTokenCall } from "./token-exchange-rpc.js";
import { unmapPeerAddress } from "./trusted-proxies.js";

/**
 * The socket's remote address, set per request by the HTTP server through the
 * Connect adapter's `contextValues`; `""` when not set. Connect's handler
 * context carries no peer address of its own.
 */
export const peerAddressKey = createContextKey<string>("", { description: "remote address of the http connection" });

/** Registers every `TokenService` method on a Connect router; `ExchangeToken` answers `unimplemented` without `exchange`. */
export function registerTokenService(router: ConnectRouter, service: TokenServiceImpl, exchange?: TokenExchange): void {
  router.service(TokenService, {
    createToken: (request, context) => service.createToken(request, callContextOf(context)),
    getToken: (request, context) => service.getToken(request, callContextOf(context)),
    listTokens: (request, context) => service.listTokens(request, callContextOf(context)),
    updateTokenControls: (request, context) => service.updateTokenControls(request, callContextOf(context)),
    rotateToken: (request, context) => service.rotateToken(request, callContextOf(context)),
    revokeToken: (request, context) => service.revokeToken(request, callContextOf(context)),
    emergencyRevoke: (request, context) => service.emergencyRevoke(request, callContextOf(context)),
    listSecurityEvents: (request, context) => service.listSecurityEvents(request, callContextOf(context)),
    ...(exchange === undefined ? {} : { exchangeToken: (request, context) => exchangeTokenCall(exchange, request, callContextOf(context)) }),
  });
}

/** The caller of a Connect call: its `authorization`, `x-request-id` and peer address. */
export function callContextOf(context: HandlerContext): CallContext {
  // Headers.get joins repeated fields with ", ", which the engine reads as a duplicate header.
  const authorization = context.requestHeader.get("authorization") ?? undefined;
  const requestId = context.requestHeader.get("x-request-id") ?? undefined;
  return { authorization, sourceIp: unmapPeerAddress(context.values.get(peerAddressKey)), ...(requestId === undefined ? {} : { requestId }) };
}
