/**
 * Verifies an exchanged JWT (jose): compact form, `alg` (EdDSA only, so
 * `none` and every HMAC or RSA algorithm are refused before any key is
 * looked up), `typ`, a key id the key ring trusts, the signature, then
 * issuer, audience and times with {@link JWT_CLOCK_SKEW_SECONDS} of skew.
 * Slow (a signature check): the authorizer caches what passed (jwt-credentials.ts).
 */
import { errors, jwtVerify, type JWTHeaderParameters } from "jose";
import type { CompiledTokenExchange } from "../policy/types.js";
import { JWT_ALGORITHM, JWT_CLOCK_SKEW_SECONDS, JWT_TYPE, judgeClaims, readClaims, type JwtClaims } from "./claims.js";
import type { KeyRing } from "./key-ring.js";

/** Why a JWT did not verify, in `unauthenticated` reasons. */
export type JwtRejection = { readonly reason: "jwt_invalid" | "jwt_not_yet_valid" | "expired"; readonly message: string };

export type JwtVerdict = { readonly ok: true; readonly claims: JwtClaims; readonly kid: string } | ({ readonly ok: false } & JwtRejection);

/** Verifies `compact` at `nowMs`; never throws. */
export async function verifyJwt(compact: string, ring: KeyRing, settings: CompiledTokenExchange, nowMs: number): Promise<JwtVerdict> {
  let kid = "";
  const keyFor = async (header: JWTHeaderParameters) => {
    if (typeof header.kid !== "string") throw new errors.JWKSNoMatchingKey();
    kid = header.kid;
    const known = ring.verificationKey(kid, nowMs);
    if (known !== undefined) return known;
    // why: another replica, or `keys rotate`, may have added the key since the last reload
    await ring.refreshSoon();
    const added = ring.verificationKey(kid, nowMs);
    if (added === undefined) throw new errors.JWKSNoMatchingKey();
    return added;
  };
  try {
    const { payload } = await jwtVerify(compact, keyFor, {
      algorithms: [JWT_ALGORITHM],
      typ: JWT_TYPE,
      issuer: settings.issuer,
      audience: [...settings.audiences],
      clockTolerance: JWT_CLOCK_SKEW_SECONDS,
      currentDate: new Date(nowMs),
      requiredClaims: ["sub", "jti", "iat", "exp"],
    });
    const claims = readClaims(payload);
    if (claims === null) return reject("jwt_invalid", "jwt claims are not those of an exchanged token");
    const judged = judgeClaims(claims, settings, nowMs);
    if (judged !== "ok") return reject(...rejectionOf(judged));
    return { ok: true, claims, kid };
  } catch (error) {
    return { ok: false, ...rejectionOfError(error) };
  }
}

/** The rejection for a claim check that failed on a cached JWT. */
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

function reject(reason: JwtRejection["reason"], message: string): JwtVerdict {
  return { ok: false, reason, message };
}

function rejectionOfError(error: unknown): JwtRejection {
  if (error instanceof errors.JWTExpired) return { reason: "expired", message: "jwt expired: exchange the api token again" };
  if (error instanceof errors.JWTClaimValidationFailed) {
    if (error.claim === "nbf" || error.claim === "iat") return { reason: "jwt_not_yet_valid", message: "jwt is not valid yet" };
    if (error.claim === "iss") return { reason: "jwt_invalid", message: "jwt issuer is not accepted" };
    if (error.claim === "aud") return { reason: "jwt_invalid", message: "jwt audience is not accepted" };
    return { reason: "jwt_invalid", message: `jwt claim \`${error.claim}\` is missing or invalid` };
  }
  if (error instanceof errors.JOSEAlgNotAllowed) return { reason: "jwt_invalid", message: "jwt algorithm is not accepted" };
  if (error instanceof errors.JWKSNoMatchingKey) return { reason: "jwt_invalid", message: "jwt is signed by a key this service does not trust" };
  if (error instanceof errors.JWSSignatureVerificationFailed) return { reason: "jwt_invalid", message: "jwt signature does not verify" };
  return { reason: "jwt_invalid", message: "jwt is malformed" };
}
