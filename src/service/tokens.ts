/**
 * Token management as the CLI and the token API share it: a request checked
 * against the policy set in force (`src/lifecycle/create-request.ts`), then
 * handed to the lifecycle.
 */
import type { TokenControls, TokenRecord } from "../engine/types.js";
import { checkCreateRequest, controlsProblemForPolicy, type CreateTokenRequest } from "../lifecycle/create-request.js";
import type { TokenLifecycle } from "../lifecycle/token-lifecycle.js";
import type { CompiledPolicySet } from "../policy/types.js";

export type { CreateTokenRequest } from "../lifecycle/create-request.js";

/** A request the policy set or the token rules refuse; the message says which field and why. */
export class TokenRequestError extends Error {
  override readonly name = "TokenRequestError";
}

/**
 * Checks a create request against the policy set and creates the token.
 * Resolves to the plaintext, which is shown once and never stored.
 */
export async function createToken(
  lifecycle: Pick<TokenLifecycle, "create">,
  policy: CompiledPolicySet,
  request: CreateTokenRequest,
  nowMs: number,
): Promise<{ token: string; record: TokenRecord }> {
  const checked = checkCreateRequest(policy, request, nowMs);
  if (!checked.ok) throw new TokenRequestError(checked.message);
  return lifecycle.create(checked.spec);
}

/**
 * Replaces a token's own controls after checking them against the policy set;
 * `null` or `{}` clears them.
 */
export async function updateTokenControls(
  lifecycle: Pick<TokenLifecycle, "updateControls">,
  policy: CompiledPolicySet,
  id: string,
  controls: TokenControls | null,
  actor: string,
): Promise<TokenRecord> {
  if (controls !== null) {
    const problem = controlsProblemForPolicy(controls, policy);
    if (problem !== null) throw new TokenRequestError(problem);
  }
  return lifecycle.updateControls(id, controls, actor);
}
