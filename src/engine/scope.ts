/**
 * The `scope_denied` stage and the effective permission of a token: the
 * intersection of its role, key level, explicit scopes and, for user tokens,
 * its creator's role. Names the policy set no longer defines grant nothing.
 */
import { LRUCache } from "lru-cache";
import type { CompiledPolicySet, RouteMatch } from "../policy/types.js";
import type { PreparedRequest } from "./request.js";
import type { TokenRecord } from "./types.js";

/** A scope denial: what the route needs and what the token holds in that module. */
export interface ScopeDenial {
  readonly reason: "no_route" | "missing_scope";
  readonly message: string;
  readonly ruleId: string;
  readonly details: Readonly<Record<string, string>>;
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

/** A token's effective scopes, sorted, and the same joined by spaces (the upstream header's value). */
export interface ScopeSet {
  readonly scopes: readonly string[];
  readonly joined: string;
}

/**
 * Scope sets per policy set, keyed by what decides them. Thousands of tokens
 * share a handful of roles, so they share one frozen list and one string
 * instead of each cached token holding a copy (most of an entry's bytes).
 * Bounded: tokens with their own scope lists can each make a distinct key.
 */
const scopeSets = new WeakMap<CompiledPolicySet, LRUCache<string, ScopeSet>>();

/** Every catalog scope the token holds, sorted; see {@link scopeSetOf}. */
export function effectiveScopes(token: TokenRecord, policy: CompiledPolicySet): readonly string[] {
  return scopeSetOf(token, policy).scopes;
}

/**
 * The token's effective scopes as a shared {@link ScopeSet}: every token with
 * the same role, key level, explicit scopes and (for user tokens) creator role
 * gets the same object under one policy set.
 */
export function scopeSetOf(token: TokenRecord, policy: CompiledPolicySet): ScopeSet {
  let sets = scopeSets.get(policy);
  if (sets === undefined) {
    sets = new LRUCache({ max: 1_024 });
    scopeSets.set(policy, sets);
  }
  const key = scopeSetKey(token);
  const cached = sets.get(key);
  if (cached !== undefined) return cached;
  const scopes = Object.freeze([...policy.scopes].filter((scope) => holdsScope(token, policy, scope)).sort());
  const set = Object.freeze({ scopes, joined: scopes.join(" ") });
  sets.set(key, set);
  return set;
}

/** The fields {@link holdsScope} reads, as one string; NUL cannot occur in a name. */
function scopeSetKey(token: TokenRecord): string {
  const creatorRole = token.type === "user" ? (token.creatorRole ?? "") : "";
  return `${token.role ?? ""}\u0000${token.keyLevel ?? ""}\u0000${creatorRole}\u0000${token.scopes === null ? "-" : `+${token.scopes.join("\u0000")}`}`;
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
  return { ok: false, denial: missingScopeDenial(scopeSetOf(token, policy), route) };
}

/**
 * Missing-scope denials per shared scope set, by rule and scope: what a
 * denied token holds and what the route needs are the same on every request,
 * so the denial (and what the engine and transports build from it, keyed on
 * this frozen object) is made once, not per request. Bounded by the routes.
 */
const missingScopeDenials = new WeakMap<ScopeSet, Map<string, ScopeDenial>>();

function missingScopeDenial(scopeSet: ScopeSet, route: RouteMatch): ScopeDenial {
  let byRoute = missingScopeDenials.get(scopeSet);
  if (byRoute === undefined) {
    byRoute = new Map();
    missingScopeDenials.set(scopeSet, byRoute);
  }
  const key = `${route.ruleId}\u0000${route.scope}`;
  let denial = byRoute.get(key);
  if (denial === undefined) {
    const module = route.scope.slice(0, route.scope.indexOf(":") + 1);
    const held = scopeSet.scopes.filter((scope) => scope.startsWith(module));
    denial = Object.freeze({
      reason: "missing_scope" as const,
      message: `token lacks the \`${route.scope}\` scope this operation requires`,
      ruleId: route.ruleId,
      details: Object.freeze({ required_scope: route.scope, current_scope: held.join(" ") }),
    });
    byRoute.set(key, denial);
  }
  return denial;
}
