/** Emergency revocation: what to revoke, and filters over listings. */
import { holdsScope } from "../engine/scope.js";
import type { CompiledPolicySet } from "../policy/types.js";
import type { TokenListing } from "../store/store-interfaces.js";

/** What an emergency revoke targets: a token's whole lineage, or explicit ids. */
export type EmergencyTarget = { readonly lineageOf: string } | { readonly ids: readonly string[] };

/**
 * The tokens an emergency revoke revokes among `rows` (a lineage or the rows
 * of explicit ids): each unrevoked one once, and with `tenant`, only that
 * tenant's. Order is kept.
 */
export function selectEmergencyRevocations<T extends TokenListing>(rows: readonly T[], tenant: string | undefined): T[] {
  const seen = new Set<string>();
  return rows.filter((row) => {
    if (row.revokedAtMs !== null || seen.has(row.id)) return false;
    if (tenant !== undefined && row.tenant !== tenant) return false;
    seen.add(row.id);
    return true;
  });
}

/** A token filter as the API and the CLI share it; every field given must match. */
export interface TokenFilter {
  readonly tenant?: string;
  readonly serviceLabel?: string;
  readonly environment?: string;
  /** A scope the token holds under the policy set in force. */
  readonly scope?: string;
  readonly ids?: readonly string[];
}

/**
 * The tokens a filter selects: every field given must match, and a filter with
 * no field selects nothing (an emergency revoke of everything is refused by the
 * callers, not guessed at here). `scope` matches tokens that hold it under the
 * policy set in force, whatever granted it (role, key level or explicit scopes).
 */
export function selectTokens<T extends TokenListing>(rows: readonly T[], filter: TokenFilter, policy: CompiledPolicySet): T[] {
  if (!filterHasField(filter)) return [];
  const ids = filter.ids === undefined || filter.ids.length === 0 ? null : new Set(filter.ids);
  return rows.filter(
    (row) =>
      (filter.tenant === undefined || row.tenant === filter.tenant) &&
      (filter.serviceLabel === undefined || row.service === filter.serviceLabel) &&
      (filter.environment === undefined || row.environment === filter.environment) &&
      (filter.scope === undefined || holdsScope(row, policy, filter.scope)) &&
      (ids === null || ids.has(row.id)),
  );
}

/** Whether a filter names anything besides the tenant. */
export function filterHasField(filter: TokenFilter): boolean {
  return filter.serviceLabel !== undefined || filter.environment !== undefined || filter.scope !== undefined || (filter.ids !== undefined && filter.ids.length > 0);
}
