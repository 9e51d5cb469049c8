/**
 * The keyed hash under which tokens are stored. A leaked database alone does
 * not let anyone check guesses: the server secret is needed too.
 */
import { createHmac, timingSafeEqual } from "node:crypto";

/**
 * Hashes `token` with HMAC-SHA-256 under the server `secret`, as 64 lower-case
 * hex characters.
 *
 * Hex rather than base64url: it has one spelling per value (no padding or
 * alphabet variants to normalise), matches the lower-case hex used for
 * certificate fingerprints elsewhere, and reads plainly in the `sqlite3` shell.
 * The 21 extra bytes per row do not matter.
 */
export function hashToken(secret: Buffer, token: string): string {
  return createHmac("sha256", secret).update(token, "utf8").digest("hex");
}

/**
 * Compares two hashes without leaking, through timing, how many leading
 * characters match. Strings of different lengths are unequal; their length is
 * not secret (every hash has the same length).
 */
export function constantTimeEqual(a: string, b: string): boolean {
  const left = Buffer.from(a, "utf8");
  const right = Buffer.from(b, "utf8");
  return left.length === right.length && timingSafeEqual(left, right);
}
