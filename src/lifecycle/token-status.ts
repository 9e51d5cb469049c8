/** A token's status at one instant, as listings and the API show it. */
import type { TokenRecord } from "../engine/types.js";

/** What {@link tokenStatus} answers. */
export type TokenStatus = "active" | "rotating" | "rotated" | "revoked" | "expired";

/** `revoked`, `expired`, `rotated` (its window ended), `rotating` (inside its window) or `active`; the first that holds wins. */
export function tokenStatus(row: TokenRecord, nowMs: number): TokenStatus {
  if (row.revokedAtMs !== null) return "revoked";
  if (row.expiresAtMs !== null && nowMs >= row.expiresAtMs) return "expired";
  if (row.overlapEndsAtMs != null) return nowMs >= row.overlapEndsAtMs ? "rotated" : "rotating";
  return "active";
}
