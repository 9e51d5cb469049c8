/**
 * A creation request checked against the policy set in force: known names,
 * the environment's prefix, a user token bounded by its creator's role, and
 * the policy set's caps attached for the store's transaction.
 */
import type { TokenControls } from "../engine/types.js";
import { suggest } from "../policy/crosscheck.js";
import type { CompiledPolicySet } from "../policy/types.js";
import type { CreateTokenSpec } from "./create-spec.js";
import { identifierProblem } from "./create-spec.js";
import { checkTokenControls } from "./token-controls.js";

/**
 * What a caller asks for when creating a token: the store's spec without what
 * the policy set supplies (the environment's prefix, the token limits).
 */
export type CreateTokenRequest = Omit<CreateTokenSpec, "prefix" | "limits" | "actor"> & {
  /** Who asked, for the audit trail. */
  readonly actor: string;
};

/** The request as a spec the lifecycle can create, or why the policy set refuses it. */
export type CheckedCreateRequest = { readonly ok: true; readonly spec: CreateTokenSpec } | { readonly ok: false; readonly message: string };

/**
 * Checks `request` against `policy` at `nowMs`. A user token needs its
 * creator's role: its effective permission is intersected with it, so it
 * never exceeds what its creator holds.
 */
export function checkCreateRequest(policy: CompiledPolicySet, request: CreateTokenRequest, nowMs: number): CheckedCreateRequest {
  const refuse = (message: string): CheckedCreateRequest => ({ ok: false, message });
  for (const [field, value] of [["tenant", request.tenant], ["workspace", request.workspace]] as const) {
    const problem = identifierProblem(field, value);
    if (problem !== null) return refuse(problem);
  }
  if (request.name.trim() === "" || request.name.length > 200) return refuse("name must be 1-200 characters");
  const prefix = prefixOf(policy, request.environment);
  if (!prefix.ok) return prefix;
  const names =
    (request.role == null ? null : unknownName("role", request.role, [...policy.roles.keys()])) ??
    (request.keyLevel == null ? null : unknownName("key level", request.keyLevel, [...policy.keyLevels.keys()])) ??
    (request.creatorRole == null ? null : unknownName("creator role", request.creatorRole, [...policy.roles.keys()]));
  if (names !== null) return refuse(names);
  if (request.scopes != null) {
    if (request.scopes.length === 0) return refuse("scopes must name at least one scope when given");
    for (const scope of request.scopes) {
      const problem = unknownName("scope", scope, [...policy.scopes]);
      if (problem !== null) return refuse(problem);
    }
  }
  if (request.role == null && request.scopes == null) return refuse("a token needs a role, scopes, or both");
  if (request.type === "user" && (request.creator == null || request.creatorRole == null)) {
    return refuse("a user token needs its creator and the creator's role: its permission never exceeds theirs");
  }
  if (request.expiresAtMs != null && request.expiresAtMs <= nowMs) return refuse("expiry must be in the future");
  if (request.service != null) {
    const problem = identifierProblem("service label", request.service);
    if (problem !== null) return refuse(problem);
  }
  if (request.controls != null) {
    const problem = controlsProblemForPolicy(request.controls, policy);
    if (problem !== null) return refuse(problem);
  }
  return {
    ok: true,
    spec: {
      ...request,
      prefix: prefix.prefix,
      // The policy set's caps; the lifecycle checks them inside the insert's transaction.
      limits: { userTokensPerCreator: policy.tokens.userTokensPerCreator, serviceTokensPerTenant: policy.tokens.serviceTokensPerTenant },
    },
  };
}

/**
 * Checks a token's controls: their shape and values (as every creation does)
 * and the names they use against the policy set
 * (`conditionalAccess.environments`). Returns one message naming every
 * problem, or `null`.
 */
export function controlsProblemForPolicy(controls: unknown, policy: CompiledPolicySet): string | null {
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

function prefixOf(policy: CompiledPolicySet, environment: string): { ok: true; prefix: string } | { ok: false; message: string } {
  for (const [prefix, name] of policy.environmentByPrefix) if (name === environment) return { ok: true, prefix };
  return { ok: false, message: unknownName("environment", environment, [...new Set(policy.environmentByPrefix.values())]) ?? `unknown environment \`${environment}\`` };
}

function unknownName(kind: string, value: string, names: readonly string[]): string | null {
  if (names.includes(value)) return null;
  const hint = suggest(value, names);
  return `unknown ${kind} \`${value}\`${hint === undefined ? "" : ` (${hint})`}`;
}
