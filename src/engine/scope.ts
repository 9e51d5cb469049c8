/**
 * The `scope_denied` stage and the effective permission of a token: the
 * intersection of its role, key level, explicit scopes and, for user tokens,
 * its creator's role. Names the policy set no longer defines grant nothing.
 */
import type { CompiledPolicySet, RouteMatch } from "../policy/types.js";
import type { PreparedRequest } from "./request.js";
import type { TokenRecord } from "./types.js";

/** A scope denial: what the route needs and what the token holds in that module. */
export interface ScopeDenial {
  readonly reason: "no_route" | "missing_scope";
  readonly message: string;
  readonly ruleId: string;
  readonly details: Record<string, string>;
}

/** Whether the token's effective permission includes `scope`. Set look-ups only: O(1) in catalog size. */
export function holdsScope(token: TokenRecord, policy: CompiledPolicySet, scope: string): boolean {
  if (token.role === null && token.scopes === null) return false;
  if (token.role !== null && policy.roles.get(token.role)?.has(scope) !== true) return false;
  if (token.keyLevel !== null && policy.keyLevels.get(token.keyLevel)?.has(scope) !== true) return false;
  if (token.scopes !== null && !token.scopes.includes(scope)) return false;
  if (token.type === "user" && token.creatorRole !== null && policy.roles.get(token.creatorRole)?.has(scope) !== true) return false;
  return true;
}

const effectiveScopesCache = new WeakMap<TokenRecord, { policy: CompiledPolicySet; scopes: readonly string[] }>();

/**
 * Every catalog scope the token holds, sorted. Memoised per (record, policy)
 * pair: both are immutable, so the memo cannot go stale, and allows stay cheap.
 */
export function effectiveScopes(token: TokenRecord, policy: CompiledPolicySet): readonly string[] {
  const cached = effectiveScopesCache.get(token);
  if (cached !== undefined && cached.policy === policy) return cached.scopes;
  const scopes = Object.freeze([...policy.scopes].filter((scope) => holdsScope(token, policy, scope)).sort());
  effectiveScopesCache.set(token, { policy, scopes });
  return scopes;
}

/** Checks that some route covers the request and that the token holds the scope it needs. */
export function checkScope(
  request: PreparedRequest,
  policy: CompiledPolicySet,
  token: TokenRecord,
): { ok: true; route: RouteMatch } | { ok: false; denial: ScopeDenial } {
  const route = policy.routes.match(request.method, request.target.segments, request.isWrite);
  if (route === null) {
    return {
      ok: false,
      denial: {
        reason: "no_route",
        message: `no endpoint group covers \`${request.method} ${request.target.path}\``,
        ruleId: "default-deny",
        details: { path: request.target.path, method: request.method },
      },
    };
  }
  if (holdsScope(token, policy, route.scope)) return { ok: true, route };
  const module = route.scope.slice(0, route.scope.indexOf(":") + 1);
  const held = effectiveScopes(token, policy).filter((scope) => scope.startsWith(module));
  return {
    ok: false,
    denial: {
      reason: "missing_scope",
      message: `token lacks the \`${route.scope}\` scope this operation requires`,
      ruleId: route.ruleId,
      details: { required_scope: route.scope, current_scope: held.join(" ") },
    },
  };
}
