/**
 * Where JWT signing keys live: a small interface, so that the SQLite
 * implementation (sqlite-signing-key-store.ts) and a PostgreSQL one share the
 * key ring and the `keys` commands.
 */
import type { MaybePromise } from "../service/maybe-promise.js";

/** The public half of an Ed25519 key as a JWK (RFC 8037). */
export interface PublicJwk {
  readonly kty: "OKP";
  readonly crv: "Ed25519";
  readonly x: string;
}

/** One signing key as stored. The private key is sealed: see sealed-key.ts. */
export interface StoredSigningKey {
  /** Key id, the JWT header's `kid`: random, safe to publish. */
  readonly kid: string;
  readonly algorithm: "EdDSA";
  readonly publicJwk: PublicJwk;
  /** The PKCS #8 private key, encrypted with a key derived from the server secret. */
  readonly sealedPrivateKey: string;
  readonly createdAtMs: number;
  /**
   * When the key stopped signing (a rotation); `null` while it signs. JWTs it
   * signed still verify until they expire: at most the longest JWT lifetime
   * (15 minutes) plus the clock skew after this instant.
   */
  readonly retiredAtMs: number | null;
}

/** Lists, adds and retires signing keys. A network store answers with Promises. */
export interface SigningKeyStore {
  /** Every key, retired ones included, oldest first. */
  listKeys(): MaybePromise<readonly StoredSigningKey[]>;
  addKey(key: StoredSigningKey): MaybePromise<void>;
  /** Marks a key retired at `atMs`; a key already retired keeps its first retirement. */
  retireKey(kid: string, atMs: number): MaybePromise<void>;
}
