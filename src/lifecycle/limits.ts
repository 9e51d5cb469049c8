/** The policy set's caps on active tokens, judged from counts the store made. */
import type { ActiveTokenFilter } from "../store/store-interfaces.js";
import type { CreateTokenSpec, TokenLimits } from "./create-spec.js";

/**
 * What to count before creating `spec` under `limits`: the active service
 * tokens of its tenant, or the active user tokens of its creator there;
 * `null` when no cap applies to it.
 */
export function limitCountFilter(spec: CreateTokenSpec, limits: TokenLimits): ActiveTokenFilter | null {
  if (spec.type === "service" && limits.serviceTokensPerTenant !== null) return { tenant: spec.tenant, type: "service" };
  if (spec.type === "user" && limits.userTokensPerCreator !== null) return { tenant: spec.tenant, type: "user", creator: spec.creator ?? null };
  return null;
}

/**
 * Why creating `spec` would pass a cap, given `count` active tokens of what
 * {@link limitCountFilter} named, or `null` when there is room.
 */
export function limitProblem(spec: CreateTokenSpec, limits: TokenLimits, count: number): string | null {
  if (spec.type === "service" && limits.serviceTokensPerTenant !== null && count >= limits.serviceTokensPerTenant) {
    return `tenant \`${spec.tenant}\` already has ${count} active service token${count === 1 ? "" : "s"}, the policy set's limit`;
  }
  if (spec.type === "user" && limits.userTokensPerCreator !== null && count >= limits.userTokensPerCreator) {
    return `creator \`${spec.creator ?? ""}\` already has ${count} active user token${count === 1 ? "" : "s"} in tenant \`${spec.tenant}\`, the policy set's limit`;
  }
  return null;
}
