/**
 * The gRPC port: `portcullis.v1.AuthorizationService`, Envoy's
 * `envoy.service.auth.v3.Authorization`, `portcullis.v1.TokenService` and
 * `grpc.health.v1.Health` over HTTP/2 cleartext, on the small gRPC server of
 * `grpc-server.ts` (why not grpc-js: see there).
 */
import { fromBinary, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { AuthorizationService, AuthorizeRequestSchema, AuthorizeResponseSchema, type AuthorizeResponse } from "../gen/portcullis/v1/authorization_pb.js";
import type { Authorizer } from "../service/authorize.js";
import { isPromise } from "../service/maybe-promise.js";
import type { TokenServiceImpl } from "./token-service.js";
import type { AuthorizeExplainer } from "../service/explain-decision.js";
import { answerAuthorize } from "./authorize-messages.js";
import { envoyAuthorizationMethods, type EnvoyCheckOptions } from "./envoy.js";
import { createGrpcServer as createServer, GrpcError, GrpcStatus, type GrpcMethod, type GrpcServer, type MaxConnectionAge } from "./grpc-server.js";
import type { Health } from "./health.js";
// A cycle (it uses decodeRequest), safe because both sides only use function declarations.
import { callContextOf, tokenServiceMethods } from "./token-service-grpc.js";
import type { TokenExchange } from "../jwt/token-exchange.js";
import { tokenExchangeGrpcMethods } from "./token-exchange-rpc.js";
import type { TlsServerOptions } from "./tls-files.js";
import { buildTrustedProxyMatcher } from "./trusted-proxies.js";

export type { GrpcServer } from "./grpc-server.js";

/** The largest request message the gRPC port accepts. */
export const MAX_GRPC_MESSAGE_BYTES = 1024 * 1024;

export interface GrpcServerOptions {
  readonly authorize: Authorizer;
  readonly health: Health;
  /** Envoy's `Authorization/Check`: which peers' forwarding headers to believe, and where transport failures go. */
  readonly envoy?: Omit<EnvoyCheckOptions, "authorize">;
  /** `portcullis.v1.TokenService` (token management, guarded by Portcullis itself); not served when absent. */
  readonly tokenService?: TokenServiceImpl;
  /** Told about an exception a handler threw (answered INTERNAL). */
  readonly onError?: (error: unknown, path: string) => void;
  /** Answers `Authorize` requests that set `explain`, for callers it allows; absent, the flag is ignored. */
  readonly explain?: AuthorizeExplainer;
  /** Serve gRPC over TLS; `setSecureContext` replaces the certificate. */
  readonly tls?: TlsServerOptions;
  /** Retire connections at an age (GOAWAY, then a grace for open calls); never when absent. */
  readonly maxConnectionAge?: MaxConnectionAge;
  /** `TokenService.ExchangeToken`; answered `unimplemented` when absent. */
  readonly tokenExchange?: TokenExchange;
}

/** Creates the gRPC server with every service; `listen` binds it. */
export function createGrpcServer(options: GrpcServerOptions): GrpcServer {
  const { authorize, explain } = options;
  const methods = new Map<string, GrpcMethod>([
    [
      `/${AuthorizationService.typeName}/Authorize`,
      {
        kind: "unary",
        // This port's codec is protobuf binary, never JSON.
        handle: (bytes, call) => {
          const answer = answerAuthorize(decodeRequest(AuthorizeRequestSchema, bytes), authorize, "binary", explain === undefined ? undefined : (input, result) => explain(input, result, callContextOf(call)));
          return isPromise(answer) ? answer.then(encodeAuthorizeResponse) : encodeAuthorizeResponse(answer);
        },
      },
    ],
    ...envoyAuthorizationMethods({ trustedProxies: buildTrustedProxyMatcher([]), ...options.envoy, authorize }),
    ...(options.tokenService === undefined ? [] : tokenServiceMethods(options.tokenService)),
    ...(options.tokenExchange === undefined ? [] : tokenExchangeGrpcMethods(options.tokenExchange)),
    ...options.health.methods(),
  ]);
  return createServer({
    methods,
    maxMessageBytes: MAX_GRPC_MESSAGE_BYTES,
    ...(options.onError === undefined ? {} : { onError: options.onError }),
    ...(options.tls === undefined ? {} : { tls: options.tls }),
    ...(options.maxConnectionAge === undefined ? {} : { maxConnectionAge: options.maxConnectionAge }),
  });
}

function encodeAuthorizeResponse(message: AuthorizeResponse): Uint8Array {
  return toBinary(AuthorizeResponseSchema, message);
}

/** A request message from its bytes; bytes that are not one answer INTERNAL, as gRPC libraries do. */
export function decodeRequest<I extends DescMessage>(schema: I, bytes: Buffer): MessageShape<I> {
  try {
    return fromBinary(schema, bytes);
  } catch {
    throw new GrpcError(GrpcStatus.INTERNAL, `the request does not decode as ${schema.typeName}`);
  }
}
