/**
 * `portcullis.v1.AuthorizationService` as Connect routes: served on the HTTP/1.1
 * port for the Connect (JSON and binary) and gRPC-Web protocols.
 */
import type { ConnectRouter } from "@connectrpc/connect";
import { AuthorizationService } from "../gen/portcullis/v1/authorization_pb.js";
import type { Authorizer } from "../service/authorize.js";
import { authzInputFromMessage, messageFromResult, responseWireOf } from "./authorize-messages.js";

/** Registers `Authorize` on a Connect router; the authorizer never throws, so neither does this. */
export function registerAuthorizationService(router: ConnectRouter, authorize: Authorizer): void {
  router.service(AuthorizationService, {
    authorize: (request, context) => messageFromResult(authorize(authzInputFromMessage(request)), responseWireOf(context.requestHeader.get("content-type"))),
  });
}
