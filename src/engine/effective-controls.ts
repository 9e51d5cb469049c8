/**
 * Which controls apply to a token. For each kind (IP allowlist, mTLS,
 * conditional access, quota) independently, the most specific source that matches
 * the token and sets that kind wins and replaces the others, never merging:
 * the token's own controls, then a policy entry selecting by service label,
 * by environment, by role, and last by workspace. The policy loader refuses two
 * entries of one level that could match one token and set the same kind, so
 * the winner never depends on file order.
 */
import { compileControls } from "../policy/controls.js";
import {
  CONTROL_LEVELS,
  type CompiledConditionalAccess,
  type CompiledControlSelector,
  type CompiledIpAllowlist,
  type CompiledMtls,
  type CompiledPolicySet,
  type CompiledQuota,
} from "../policy/types.js";
import { ruleIdOf, tokenAllowlist } from "./token-allowlists.js";
import type { TokenRecord } from "./types.js";

/** The controls in force for one token; `null` where no source sets the kind. */
export interface EffectiveControls {
  readonly ipAllowlist: CompiledIpAllowlist | null;
  readonly mtls: CompiledMtls | null;
  readonly conditionalAccess: CompiledConditionalAccess | null;
  /** The quota to charge once every check passed; counted per token id. */
  readonly quota: CompiledQuota | null;
}

const KINDS = ["ipAllowlist", "mtls", "conditionalAccess", "quota"] as const;

const cache = new WeakMap<TokenRecord, { policy: CompiledPolicySet; controls: EffectiveControls }>();

/** Whether a selector matches a token: every field it names equals the token's. */
export function selectorMatches(selector: CompiledControlSelector, token: TokenRecord): boolean {
  return (
    (selector.tenant === undefined || selector.tenant === token.tenant) &&
    (selector.workspace === undefined || selector.workspace === token.workspace) &&
    (selector.environment === undefined || selector.environment === token.environment) &&
    (selector.service === undefined || selector.service === token.service) &&
    (selector.role === undefined || selector.role === token.role)
  );
}

/**
 * Resolves and compiles the controls of a token under a policy set. Memoised
 * per (record, policy) pair like `effectiveScopes`: both are immutable, and a
 * record lives as long as the token cache keeps it, so CIDRs and pins are
 * parsed once per cache fill, never per request.
 *
 * @throws Error when the token's stored controls do not compile (the store
 * refuses such input, so only a hand-edited database gets here); the
 * authorizer turns that into `unavailable`, failing closed
 */
export function effectiveControls(token: TokenRecord, policy: CompiledPolicySet): EffectiveControls {
  const cached = cache.get(token);
  if (cached !== undefined && cached.policy === policy) return cached.controls;

  const own = compileControls(token.controls, ruleIdOf(token), (entries) => tokenAllowlist(token, entries));
  if (!own.ok) throw new Error(`controls of token \`${token.id}\` do not compile: ${own.errors[0]?.message ?? ""}`);
  const result: { -readonly [K in keyof EffectiveControls]: EffectiveControls[K] } = { ipAllowlist: null, mtls: null, conditionalAccess: null, quota: null };
  for (const kind of KINDS) {
    const mine = own.value[kind];
    if (mine !== undefined) {
      (result as Record<string, unknown>)[kind] = mine;
      continue;
    }
    let bestRank = CONTROL_LEVELS.length;
    for (const entry of policy.controls) {
      const value = entry.controls[kind];
      if (value === undefined) continue;
      const rank = CONTROL_LEVELS.indexOf(entry.level);
      if (rank < bestRank && selectorMatches(entry.selector, token)) {
        bestRank = rank;
        (result as Record<string, unknown>)[kind] = value;
      }
    }
  }
  const controls = Object.freeze(result);
  cache.set(token, { policy, controls });
  return controls;
}
