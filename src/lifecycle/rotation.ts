/**
 * Rotation: when a token may be rotated, what its successor is, and how long
 * the predecessor stays valid. A successor inherits everything but the secret.
 */
import type { TokenRecord } from "../engine/types.js";
import type { CompiledTokenRules } from "../policy/types.js";
import type { StoredToken, TokenListing } from "../store/store-interfaces.js";

/** Why an overlap is not a duration at all (the store's own check), or `null`. */
export function overlapShapeProblem(overlapMs: number): string | null {
  return Number.isSafeInteger(overlapMs) && overlapMs >= 0 ? null : `overlap must be zero or more milliseconds, got \`${overlapMs}\``;
}

/** Why a requested overlap is refused under the policy set's rules, or `null`; shared by the API and the CLI. */
export function overlapProblem(overlapMs: number, rules: CompiledTokenRules): string | null {
  if (!Number.isSafeInteger(overlapMs) || overlapMs < 0) return "overlap must be zero or a positive duration";
  if (overlapMs > rules.maxOverlapMs) return `overlap of ${formatDuration(overlapMs)} exceeds the policy set's maximum of ${formatDuration(rules.maxOverlapMs)}`;
  return null;
}

/** `90d`, `12h`, `30m` or `45s`: the largest unit that divides the duration. */
export function formatDuration(ms: number): string {
  for (const [unit, size] of [["d", 86_400_000], ["h", 3_600_000], ["m", 60_000]] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${Math.round(ms / 1_000)}s`;
}

/**
 * Why `row` cannot be rotated at `nowMs`, as advice an operator can follow, or
 * `null`. `successor` is the row `row.successorId` names (`undefined` when it
 * is gone or there is none). A token whose successor is unusable (revoked,
 * e.g. leaked, or expired) may be rotated again while its own overlap lasts:
 * otherwise the only advice, "rotate the successor", could not be followed.
 */
export function rotationRefusal(row: TokenRecord, successor: TokenRecord | undefined, nowMs: number): string | null {
  const id = row.id;
  if (row.revokedAtMs !== null) return `token \`${id}\` is revoked; a revoked token cannot be rotated: create a new token`;
  if (row.expiresAtMs !== null && nowMs >= row.expiresAtMs) return `token \`${id}\` has expired; an expired token cannot be rotated: create a new token`;
  if (row.successorId === null) return null;
  const successorProblem =
    successor === undefined ? "is gone" : successor.revokedAtMs !== null ? "is revoked" : successor.expiresAtMs !== null && nowMs >= successor.expiresAtMs ? "has expired" : null;
  if (successorProblem === null) return `token \`${id}\` was already rotated to \`${row.successorId}\`; rotate that one instead`;
  if (row.overlapEndsAtMs !== null && nowMs >= row.overlapEndsAtMs) {
    return `token \`${id}\` was rotated out at ${new Date(row.overlapEndsAtMs).toISOString()} and its successor \`${row.successorId}\` ${successorProblem}: create a new token`;
  }
  return null;
}

/** A rotation's outcome before it is written: the successor's row and the predecessor's window end. */
export interface PlannedRotation {
  readonly successor: StoredToken;
  /** `nowMs + overlapMs`: the end the predecessor (and any older window still open) is capped to. */
  readonly overlapEndsAtMs: number;
}

/**
 * Plans the rotation of `row` at `nowMs`: the successor inherits tenant,
 * workspace, environment and prefix, type, name, role, key level, scopes,
 * controls, service label, creator and creator role, and expiry; it starts a
 * fresh history (no use, no revocation) in the same lineage.
 */
export function planRotation(row: TokenListing, successor: { readonly id: string; readonly hash: string }, overlapMs: number, nowMs: number): PlannedRotation {
  return {
    successor: {
      ...row,
      id: successor.id,
      hash: successor.hash,
      createdAtMs: nowMs,
      revokedAtMs: null,
      revokedBy: null,
      revokedReason: null,
      lastUsedAtMs: null,
      useCount: 0,
      lineageId: row.lineageId,
      predecessorId: row.id,
      successorId: null,
      rotatedAtMs: null,
      overlapEndsAtMs: null,
    },
    overlapEndsAtMs: nowMs + overlapMs,
  };
}

/** The predecessor's window end after a rotation ending at `endsAtMs`: an earlier end already set stays. */
export function cappedOverlapEnd(current: number | null, endsAtMs: number): number {
  return current === null ? endsAtMs : Math.min(current, endsAtMs);
}
