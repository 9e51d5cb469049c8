/**
 * Token management as the CLI and (later) the management API share it: input
 * checked against the policy set in force, then handed to the store.
 */
import type { TokenControls, TokenRecord } from "../engine/types.js";
import { suggest } from "../policy/crosscheck.js";
import type { CompiledPolicySet } from "../policy/types.js";
import { checkTokenControls, type CreateTokenSpec, type TokenStore } from "../store/token-store.js";

/**
 * What a caller asks for when creating a token: the store's spec without what
 * the policy set supplies (the environment's prefix, the token limits).
 */
export type CreateTokenRequest = Omit<CreateTokenSpec, "prefix" | "limits" | "actor"> & {
  /** Who asked, for the audit trail. */
  readonly actor: string;
};

/** A request the policy set or the token rules refuse; the message says which field and why. */
export class TokenRequestError extends Error {
  override readonly name = "TokenRequestError";
}

// Identifiers travel in upstream headers and logs, so they stay printable and short.
const IDENTIFIER = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

/**
 * Checks a create request against the policy set and creates the token.
 * Returns the plaintext, which is shown once and never stored.
 */
export function createToken(store: TokenStore, policy: CompiledPolicySet, request: CreateTokenRequest, nowMs: number): { token: string; record: TokenRecord } {
  for (const [field, value] of [["tenant", request.tenant], ["workspace", request.workspace]] as const) {
    if (!IDENTIFIER.test(value)) throw new TokenRequestError(`${field} \`${value}\` must be 1-128 letters, digits, \`.\`, \`_\`, \`:\` or \`-\``);
  }
  if (request.name.trim() === "" || request.name.length > 200) throw new TokenRequestError("name must be 1-200 characters");
  const prefix = prefixOf(policy, request.environment);
  if (request.role != null) known("role", request.role, [...policy.roles.keys()]);
  if (request.keyLevel != null) known("key level", request.keyLevel, [...policy.keyLevels.keys()]);
  if (request.creatorRole != null) known("creator role", request.creatorRole, [...policy.roles.keys()]);
  if (request.scopes != null) {
    if (request.scopes.length === 0) throw new TokenRequestError("scopes must name at least one scope when given");
    for (const scope of request.scopes) known("scope", scope, [...policy.scopes]);
  }
  if (request.role == null && request.scopes == null) throw new TokenRequestError("a token needs a role, scopes, or both");
  if (request.type === "user" && (request.creator == null || request.creatorRole == null)) {
    throw new TokenRequestError("a user token needs its creator and the creator's role: its permission never exceeds theirs");
  }
  if (request.expiresAtMs != null && request.expiresAtMs <= nowMs) throw new TokenRequestError("expiry must be in the future");
  if (request.service != null && !IDENTIFIER.test(request.service)) {
    throw new TokenRequestError(`service label \`${request.service}\` must be 1-128 letters, digits, \`.\`, \`_\`, \`:\` or \`-\``);
  }
  if (request.controls != null) {
    const problem = checkTokenControlsForPolicy(request.controls, policy);
    if (problem !== null) throw new TokenRequestError(problem);
  }
  return store.create({
    ...request,
    prefix,
    // The policy set's caps; the store checks them inside the insert's transaction.
    limits: { userTokensPerCreator: policy.tokens.userTokensPerCreator, serviceTokensPerTenant: policy.tokens.serviceTokensPerTenant },
  });
}

/**
 * Checks a token's controls: their shape and values (as the store does) and
 * the names they use against the policy set (`conditionalAccess.environments`).
 * Returns one message naming every problem, or `null`.
 */
export function checkTokenControlsForPolicy(controls: unknown, policy: CompiledPolicySet): string | null {
  const problem = checkTokenControls(controls);
  if (problem !== null) return problem;
  const environments = [...new Set(policy.environmentByPrefix.values())];
  const named = (controls as TokenControls).conditionalAccess?.environments ?? [];
  for (const [i, name] of named.entries()) {
    if (!environments.includes(name)) {
      const hint = suggest(name, environments);
      return `controls /conditionalAccess/environments/${i}: unknown environment \`${name}\`${hint === undefined ? "" : ` (${hint})`}`;
    }
  }
  return null;
}

/**
 * Replaces a token's own controls after checking them against the policy set;
 * `null` or `{}` clears them.
 */
export function updateTokenControls(store: TokenStore, policy: CompiledPolicySet, id: string, controls: TokenControls | null, actor: string): TokenRecord {
  if (controls !== null) {
    const problem = checkTokenControlsForPolicy(controls, policy);
    if (problem !== null) throw new TokenRequestError(problem);
  }
  return store.updateControls(id, controls, actor);
}

function prefixOf(policy: CompiledPolicySet, environment: string): string {
  for (const [prefix, name] of policy.environmentByPrefix) if (name === environment) return prefix;
  known("environment", environment, [...new Set(policy.environmentByPrefix.values())]);
  throw new TokenRequestError(`unknown environment \`${environment}\``);
}

function known(kind: string, value: string, names: readonly string[]): void {
  if (names.includes(value)) return;
  const hint = suggest(value, names);
  throw new TokenRequestError(`unknown ${kind} \`${value}\`${hint === undefined ? "" : ` (${hint})`}`);
}

