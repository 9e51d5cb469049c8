/**
 * Verifies an exchanged JWT with node:crypto, synchronously: compact form
 * (three strict base64url parts), header (`alg` EdDSA only, so `none` and
 * every HMAC or RSA algorithm are refused before any key is looked up; `typ`
 * `at+jwt`; no `crit`), a key id the key ring trusts, the Ed25519 signature
 * over the first two parts (RFC 7515 §5.2), then the claims: issuer,
 * audience and times with {@link JWT_CLOCK_SKEW_SECONDS} of skew.
 *
 * Hand-written rather than jose's `jwtVerify` because jose verifies through
 * WebCrypto, asynchronously, at about 270 µs of CPU per JWT on Node 20 against
 * about 75 µs for `crypto.verify`: a first-seen JWT, and every forged one an
 * attacker sends, pays it. jose signs (sign-jwt.ts) and is the reference this
 * verifier is held to (test/jwt/verify-differential.test.ts). Only a key id
 * the ring does not know waits: for one reload of the keys.
 */
import { verify, type KeyObject } from "node:crypto";
import type { CompiledTokenExchange } from "../policy/types.js";
import type { MaybePromise } from "../service/maybe-promise.js";
import { JWT_ALGORITHM, JWT_TYPE, judgeClaims, readClaims, type JwtClaims } from "./claims.js";
import type { KeyRing } from "./key-ring.js";

/** Why a JWT did not verify, in `unauthenticated` reasons. */
export type JwtRejection = { readonly reason: "jwt_invalid" | "jwt_not_yet_valid" | "expired"; readonly message: string };

export type JwtVerdict = { readonly ok: true; readonly claims: JwtClaims; readonly kid: string } | ({ readonly ok: false } & JwtRejection);

const BASE64URL = /^[A-Za-z0-9_-]+$/;
const ED25519_SIGNATURE_BYTES = 64;

/** Verifies `compact` at `nowMs`; never throws. A Promise only when the key id is unknown and the keys are reloaded first. */
export function verifyJwt(compact: string, ring: KeyRing, settings: CompiledTokenExchange, nowMs: number): MaybePromise<JwtVerdict> {
  const firstDot = compact.indexOf(".");
  const lastDot = compact.lastIndexOf(".");
  if (firstDot <= 0 || lastDot === firstDot || lastDot === compact.length - 1) return reject("jwt_invalid", "jwt is malformed");
  const encodedHeader = compact.slice(0, firstDot);
  const encodedPayload = compact.slice(firstDot + 1, lastDot);
  const encodedSignature = compact.slice(lastDot + 1);
  if (!BASE64URL.test(encodedHeader) || !BASE64URL.test(encodedPayload) || !BASE64URL.test(encodedSignature)) return reject("jwt_invalid", "jwt is malformed");
  const header = jsonObject(encodedHeader);
  if (header === null) return reject("jwt_invalid", "jwt is malformed");
  if (header.alg !== JWT_ALGORITHM) return reject("jwt_invalid", "jwt algorithm is not accepted");
  if (!isAccessTokenType(header.typ)) return reject("jwt_invalid", "jwt type is not accepted");
  // RFC 7515 §4.1.11: an extension the verifier does not understand must make the JWS invalid.
  if (header.crit !== undefined) return reject("jwt_invalid", "jwt names critical extensions this service does not understand");
  const kid = header.kid;
  if (typeof kid !== "string") return untrusted();
  const check = (key: KeyObject): JwtVerdict => {
    const signature = Buffer.from(encodedSignature, "base64url");
    if (signature.length !== ED25519_SIGNATURE_BYTES || !verify(null, Buffer.from(compact.slice(0, lastDot), "latin1"), key, signature)) {
      return reject("jwt_invalid", "jwt signature does not verify");
    }
    const payload = jsonObject(encodedPayload);
    const claims = payload === null ? null : readClaims(payload);
    if (claims === null) return reject("jwt_invalid", "jwt claims are not those of an exchanged token");
    const judged = judgeClaims(claims, settings, nowMs);
    if (judged !== "ok") return reject(...rejectionOf(judged));
    return { ok: true, claims, kid };
  };
  const known = ring.verificationKey(kid, nowMs);
  if (known !== undefined) return check(known);
  // why: another replica, or `keys rotate`, may have added the key since the last reload
  return ring.refreshSoon().then(
    () => {
      const added = ring.verificationKey(kid, nowMs);
      return added === undefined ? untrusted() : check(added);
    },
    () => untrusted(),
  );
}

/** The rejection for a claim check that failed. */
export function rejectionOf(judged: Exclude<ReturnType<typeof judgeClaims>, "ok">): [JwtRejection["reason"], string] {
  switch (judged) {
    case "expired":
      return ["expired", "jwt expired: exchange the api token again"];
    case "not_yet_valid":
      return ["jwt_not_yet_valid", "jwt is not valid yet"];
    case "wrong_issuer":
      return ["jwt_invalid", "jwt issuer is not accepted"];
    case "wrong_audience":
      return ["jwt_invalid", "jwt audience is not accepted"];
  }
}

/** `at+jwt`, compared as RFC 7515 §4.1.9 says: case-insensitively, with or without `application/`. */
function isAccessTokenType(typ: unknown): boolean {
  if (typeof typ !== "string") return false;
  const lower = typ.toLowerCase();
  return lower === JWT_TYPE || lower === `application/${JWT_TYPE}`;
}

function untrusted(): JwtVerdict {
  return reject("jwt_invalid", "jwt is signed by a key this service does not trust");
}

function reject(reason: JwtRejection["reason"], message: string): JwtVerdict {
  return { ok: false, reason, message };
}

function jsonObject(encoded: string): Readonly<Record<string, unknown>> | null {
  try {
    const value: unknown = JSON.parse(Buffer.from(encoded, "base64url").toString("utf8"));
    return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}
