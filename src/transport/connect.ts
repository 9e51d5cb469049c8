/**
 * `portcullis.v1.AuthorizationService` as Connect routes: served on the HTTP/1.1
 * port for the Connect (JSON and binary) and gRPC-Web protocols.
 */
import type { ConnectRouter } from "@connectrpc/connect";
import { AuthorizationService } from "../gen/portcullis/v1/authorization_pb.js";
import type { Authorizer } from "../service/authorize.js";
import type { AuthorizeExplainer } from "../service/explain-decision.js";
import { answerAuthorize, responseWireOf } from "./authorize-messages.js";
import { callContextOf } from "./token-service-connect.js";

/**
 * Registers `Authorize` on a Connect router; the authorizer never throws, so
 * neither does this. `explain` answers requests that set `explain` (for
 * callers it allows); absent, the flag is ignored.
 */
export function registerAuthorizationService(router: ConnectRouter, authorize: Authorizer, explain?: AuthorizeExplainer): void {
  router.service(AuthorizationService, {
    authorize: (request, context) =>
      answerAuthorize(request, authorize, responseWireOf(context.requestHeader.get("content-type")), explain === undefined ? undefined : (input, result) => explain(input, result, callContextOf(context))),
  });
}
