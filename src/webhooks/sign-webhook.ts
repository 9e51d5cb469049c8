/**
 * Webhook signatures: HMAC-SHA-256 over `${timestamp}.${body}`, sent as
 * `Portcullis-Signature: t=<unix seconds>,v1=<hex>` (the scheme Stripe made
 * familiar). The timestamp is signed too, so a receiver that refuses old
 * timestamps refuses replays of captured requests.
 */
import { createHmac, timingSafeEqual } from "node:crypto";

/** Name of the signature header. */
export const SIGNATURE_HEADER = "portcullis-signature";

/** The `Portcullis-Signature` value for `body` sent at `timestampSeconds`. */
export function signWebhook(secret: Buffer, timestampSeconds: number, body: string): string {
  const mac = createHmac("sha256", secret).update(`${timestampSeconds}.${body}`).digest("hex");
  return `t=${timestampSeconds},v1=${mac}`;
}

/** Why {@link verifyWebhookSignature} refused, or `ok`. */
export type WebhookVerification = "ok" | "malformed" | "bad_signature" | "too_old";

/**
 * Checks a `Portcullis-Signature` value as a receiver should: the MAC in
 * constant time, and the timestamp within `toleranceSeconds` of `nowSeconds`
 * (default 300, five minutes). Any `v1` entry may match, so that a secret
 * can be rotated by sending two signatures.
 */
export function verifyWebhookSignature(secret: Buffer, header: string, body: string, nowSeconds: number, toleranceSeconds = 300): WebhookVerification {
  let timestamp: number | null = null;
  const macs: string[] = [];
  for (const part of header.split(",")) {
    const [key, value] = part.split("=", 2);
    if (key === "t" && value !== undefined && /^\d{1,12}$/.test(value)) timestamp = Number(value);
    else if (key === "v1" && value !== undefined && /^[0-9a-f]{64}$/.test(value)) macs.push(value);
  }
  if (timestamp === null || macs.length === 0) return "malformed";
  const expected = createHmac("sha256", secret).update(`${timestamp}.${body}`).digest();
  if (!macs.some((mac) => timingSafeEqual(Buffer.from(mac, "hex"), expected))) return "bad_signature";
  return Math.abs(nowSeconds - timestamp) > toleranceSeconds ? "too_old" : "ok";
}
