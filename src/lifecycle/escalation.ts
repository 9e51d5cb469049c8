/**
 * No privilege escalation: a token created through the token API holds no
 * scope its creating token does not, and targets the creating token's
 * environment only (a sandbox key must never mint production keys).
 */
import { effectiveScopes } from "../engine/scope.js";
import type { Identity, TokenRecord } from "../engine/types.js";
import type { CompiledPolicySet } from "../policy/types.js";

/** Why `candidate` may not be created by `caller`, or `null`. */
export function escalationProblem(candidate: TokenRecord, caller: Identity, policy: CompiledPolicySet): string | null {
  if (candidate.environment !== caller.environment) {
    return `a \`${caller.environment}\` token cannot create tokens for the \`${clip(candidate.environment)}\` environment`;
  }
  const held = new Set(caller.scopes);
  const beyond = effectiveScopes(candidate, policy).filter((scope) => !held.has(scope));
  if (beyond.length === 0) return null;
  const shown = beyond.slice(0, 5).map((scope) => `\`${scope}\``).join(", ");
  return `the new token would hold ${beyond.length === 1 ? "a scope" : `${beyond.length} scopes`} the calling token does not: ${shown}${beyond.length > 5 ? ", ..." : ""}`;
}

/** Ids and names echoed in messages are user input: shown short. */
export function clip(value: string): string {
  return value.length > 64 ? `${value.slice(0, 64)}...` : value;
}
