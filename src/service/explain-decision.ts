/**
 * The Authorize API's `explain` flag: the explanation of a decision the
 * authorizer just made, for callers allowed to manage tokens. Runs off the
 * plain decision path: only a request that asked for it, from such a caller,
 * pays for the second token look-up (a cache hit) and the stage walk.
 */
import type { AuthzInput } from "../engine/types.js";
import { explainRequest, type Explanation } from "../explain/explain.js";
import type { AuthorizeResult, AuthorizerDeps } from "./authorize.js";
import { readCredential } from "../engine/authenticate.js";
import { prepareRequest } from "../engine/request.js";
import type { MaybePromise } from "./maybe-promise.js";
import type { CallContext } from "../transport/token-service.js";

/** Explains a result for a caller, or answers `null` when the caller may not have it. */
export type AuthorizeExplainer = (input: AuthzInput, result: AuthorizeResult, call: CallContext) => Promise<Explanation | null>;

/**
 * Builds the explainer. `mayExplain` decides who may have explanations (the
 * server asks the token service's own guard: may this caller manage tokens).
 * The explanation is of the policy set that decided; after a reload in
 * between, none is given rather than one of another revision.
 */
export function createDecisionExplainer(
  deps: Pick<AuthorizerDeps, "policy" | "tokens" | "tenantState" | "now">,
  mayExplain: (call: CallContext) => MaybePromise<boolean>,
): AuthorizeExplainer {
  return async (input, result, call) => {
    const policy = deps.policy();
    if (policy === null || policy.revision !== result.policyRevision || !(await mayExplain(call))) return null;
    try {
      const prepared = prepareRequest(input, policy);
      const credential = prepared.ok ? readCredential(prepared.request, policy) : null;
      const token = credential?.ok === true ? await deps.tokens.find(credential.credential.token) : undefined;
      const facts = {
        token,
        tenantSuspended: token !== undefined && deps.tenantState.tenantSuspended(token.tenant),
        workspaceRestricted: token !== undefined && deps.tenantState.workspaceRestricted(token.tenant, token.workspace),
      };
      // why: after the awaits, a reload may have replaced the policy set that decided
      if (deps.policy() !== policy) return null;
      return explainRequest(input, policy, facts, deps.now(), result.decision);
    } catch {
      // why: the answer is already decided; an explanation that cannot be made (a store
      // failure, a token whose stored controls do not compile) must not turn it into an error
      return null;
    }
  };
}
