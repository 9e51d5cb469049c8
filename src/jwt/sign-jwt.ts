/** Signs exchanged JWTs with the key ring's current key (jose). */
import { SignJWT } from "jose";
import { JWT_ALGORITHM, JWT_TYPE, type JwtPayloadOut } from "./claims.js";
import type { KeyRing } from "./key-ring.js";

/**
 * Signs `payload` with the ring's signing key.
 * @throws Error when the ring has no signing key (the store holds only retired keys)
 */
export async function signJwt(payload: JwtPayloadOut, ring: KeyRing): Promise<string> {
  const key = ring.signingKey();
  if (key === null) throw new Error("no signing key: run `portcullis keys rotate`");
  return new SignJWT({ ...payload, aud: typeof payload.aud === "string" ? payload.aud : [...payload.aud] }).setProtectedHeader({ alg: JWT_ALGORITHM, kid: key.kid, typ: JWT_TYPE }).sign(key.privateKey);
}
