/**
 * Signing keys at rest: each Ed25519 private key is stored encrypted with
 * AES-256-GCM under a key derived (HKDF-SHA-256) from the server secret, the
 * same secret that keys token hashes (`secret.key` or `PORTCULLIS_TOKEN_SECRET`).
 * The store alone (a copied database file, a backup) then holds no usable key.
 * The key id is bound into both the derivation and the cipher's associated
 * data, so a sealed key cannot be moved to another id.
 */
import { createCipheriv, createDecipheriv, createPrivateKey, createPublicKey, generateKeyPairSync, hkdfSync, randomBytes, type KeyObject } from "node:crypto";
import type { PublicJwk, StoredSigningKey } from "./signing-key-store.js";

const HKDF_SALT = "portcullis jwt signing key v1";
const IV_BYTES = 12;
const TAG_BYTES = 16;

/** A fresh Ed25519 signing key, sealed for the store, created at `nowMs`. */
export function generateSigningKey(secret: Buffer, nowMs: number): StoredSigningKey {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  const kid = randomBytes(8).toString("hex");
  const jwk = publicKey.export({ format: "jwk" });
  const publicJwk: PublicJwk = { kty: "OKP", crv: "Ed25519", x: jwk.x! };
  const der = privateKey.export({ format: "der", type: "pkcs8" });
  return { kid, algorithm: "EdDSA", publicJwk, sealedPrivateKey: seal(secret, kid, der), createdAtMs: nowMs, retiredAtMs: null };
}

/**
 * The private key of a stored key.
 * @throws Error when the secret is not the one the key was sealed with, or the sealed bytes were altered
 */
export function unsealPrivateKey(secret: Buffer, key: StoredSigningKey): KeyObject {
  const sealed = Buffer.from(key.sealedPrivateKey, "base64url");
  if (sealed.length <= IV_BYTES + TAG_BYTES) throw new Error(`signing key \`${key.kid}\` is not a sealed key`);
  const decipher = createDecipheriv("aes-256-gcm", keyFor(secret, key.kid), sealed.subarray(0, IV_BYTES));
  decipher.setAAD(Buffer.from(key.kid));
  decipher.setAuthTag(sealed.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
  let der: Buffer;
  try {
    der = Buffer.concat([decipher.update(sealed.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]);
  } catch {
    throw new Error(`signing key \`${key.kid}\` does not open with this server secret`);
  }
  return createPrivateKey({ key: der, format: "der", type: "pkcs8" });
}

/** The public key of a stored key. */
export function publicKeyOf(key: StoredSigningKey): KeyObject {
  return createPublicKey({ key: { ...key.publicJwk }, format: "jwk" });
}

function seal(secret: Buffer, kid: string, plaintext: Buffer): string {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv("aes-256-gcm", keyFor(secret, kid), iv);
  cipher.setAAD(Buffer.from(kid));
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([iv, cipher.getAuthTag(), ciphertext]).toString("base64url");
}

function keyFor(secret: Buffer, kid: string): Buffer {
  return Buffer.from(hkdfSync("sha256", secret, HKDF_SALT, `kid:${kid}`, 32));
}
