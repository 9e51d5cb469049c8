/**
 * What a token creation asks for, and the store-level checks every creation
 * passes whoever calls (the CLI, the token API, a test): shapes, not the
 * policy set (see `create-request.ts` for that).
 */
import type { TokenControls } from "../engine/types.js";
import { checkTokenControls } from "./token-controls.js";

/** What a creation needs. Role and scope names must already be checked against the policy. */
export interface CreateTokenSpec {
  readonly tenant: string;
  readonly workspace: string;
  /** Environment the prefix names; the caller maps one to the other from the policy. */
  readonly environment: string;
  readonly prefix: string;
  readonly type: "user" | "service";
  readonly name: string;
  readonly role?: string | null;
  readonly keyLevel?: string | null;
  /** Explicit scopes; when given, at least one. A token needs a role, scopes or both. */
  readonly scopes?: readonly string[] | null;
  /** Who the token acts for; required for user tokens. */
  readonly creator?: string | null;
  readonly creatorRole?: string | null;
  /** `null` or absent for a token that never expires; else in the future. */
  readonly expiresAtMs?: number | null;
  /** Who is issuing it, for the audit trail; defaults to `creator`, then `system`. */
  readonly actor?: string;
  /** Label policy `controls` entries can select on (`selector.service`); `null` or absent for none. */
  readonly service?: string | null;
  /** The token's own controls; checked with {@link checkTokenControls}. Absent or `null` for none. */
  readonly controls?: TokenControls | null;
  /**
   * The policy set's caps, checked inside the insert's transaction so that two
   * concurrent creations cannot both take the last place. Absent: no caps.
   */
  readonly limits?: TokenLimits | null;
}

/**
 * Caps on active tokens, from the policy set's `tokens.limits`. A token is
 * active while it is unrevoked, unexpired and the newest of its lineage (a
 * rotation replaces a token; it does not add one). `null` means no cap.
 */
export interface TokenLimits {
  /** Active user tokens one creator may hold in a tenant. */
  readonly userTokensPerCreator: number | null;
  /** Active service tokens one tenant may hold. */
  readonly serviceTokensPerTenant: number | null;
}

// Tenant, workspace and service names travel in upstream headers and logs, so they stay printable and short.
const IDENTIFIER = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

/** Whether `value` is a tenant, workspace or service name: 1-128 printable characters. */
export function isIdentifier(value: unknown): value is string {
  return typeof value === "string" && IDENTIFIER.test(value);
}

/** Why `value` is no identifier (naming `field`), or `null`. */
export function identifierProblem(field: string, value: unknown): string | null {
  return isIdentifier(value) ? null : `${field} \`${String(value)}\` must be 1-128 letters, digits, \`.\`, \`_\`, \`:\` or \`-\``;
}

/**
 * The first problem with `spec` at `nowMs`, as a message, or `null`: fields
 * present and non-empty, a role or scopes, a creator for a user token, a
 * service label that is an identifier, controls that compile, an expiry in
 * the future.
 */
export function createSpecProblem(spec: CreateTokenSpec, nowMs: number): string | null {
  for (const field of ["tenant", "workspace", "environment", "prefix", "name"] as const) {
    const value: unknown = spec[field];
    if (typeof value !== "string" || value.trim() === "") return `token ${field} must not be empty`;
  }
  if (spec.type !== "user" && spec.type !== "service") {
    return `token type must be \`user\` or \`service\`, got \`${String(spec.type)}\``;
  }
  if (spec.role != null && spec.role.trim() === "") return "token role must not be empty when given";
  if (spec.scopes != null) {
    if (spec.scopes.length === 0) return "token scopes must list at least one scope when given";
    for (const scope of spec.scopes) {
      if (typeof scope !== "string" || scope.trim() === "") return "token scopes must not contain an empty scope";
    }
  }
  if (spec.role == null && spec.scopes == null) return "a token needs a role, scopes or both";
  if (spec.type === "user" && (spec.creator == null || spec.creator.trim() === "")) return "a user token needs a creator";
  if (spec.service != null && !isIdentifier(spec.service)) {
    return `service label \`${spec.service}\` must be 1-128 letters, digits, \`.\`, \`_\`, \`:\` or \`-\``;
  }
  if (spec.controls != null) {
    const problem = checkTokenControls(spec.controls);
    if (problem !== null) return problem;
  }
  if (spec.expiresAtMs != null && (!Number.isSafeInteger(spec.expiresAtMs) || spec.expiresAtMs <= nowMs)) {
    return `token expiry \`${spec.expiresAtMs}\` must be a time in the future, in ms since the epoch`;
  }
  return null;
}
