/**
 * The authorizer over in-memory look-ups, answering at once: tests that judge
 * with a map or an embedded store expect no Promise, and one would mean the
 * fast path was lost.
 */
import type { AuthzInput } from "../../src/engine/types.js";
import { createAuthorizer, type AuthorizeResult, type AuthorizerDeps } from "../../src/service/authorize.js";
import { settledNow } from "../../src/service/maybe-promise.js";

export function createSyncAuthorizer(deps: AuthorizerDeps): (input: AuthzInput) => AuthorizeResult {
  const authorize = createAuthorizer(deps);
  return (input) => settledNow(authorize(input));
}
