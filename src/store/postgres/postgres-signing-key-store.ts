/**
 * JWT signing keys in the fleet's PostgreSQL database, so that every replica
 * signs with and verifies against the same key ring.
 */
import type pg from "pg";
import type { PublicJwk, SigningKeyStore, StoredSigningKey } from "../../jwt/signing-key-store.js";

interface KeyRow {
  kid: string;
  algorithm: "EdDSA";
  public_jwk: string;
  sealed_private_key: string;
  created_at: number;
  retired_at: number | null;
}

/** A {@link SigningKeyStore} over the `signing_keys` table of an open PostgreSQL store's pool. */
export function postgresSigningKeyStore(db: { query: pg.Pool["query"] }): SigningKeyStore & { close(): void } {
  return {
    async listKeys() {
      const { rows } = await db.query<KeyRow>("SELECT * FROM signing_keys ORDER BY created_at, kid");
      return rows.map(
        (row): StoredSigningKey => ({
          kid: row.kid,
          algorithm: row.algorithm,
          publicJwk: JSON.parse(row.public_jwk) as PublicJwk,
          sealedPrivateKey: row.sealed_private_key,
          createdAtMs: row.created_at,
          retiredAtMs: row.retired_at,
        }),
      );
    },
    async addKey(key) {
      await db.query("INSERT INTO signing_keys (kid, algorithm, public_jwk, sealed_private_key, created_at, retired_at) VALUES ($1, $2, $3, $4, $5, $6)", [
        key.kid,
        key.algorithm,
        JSON.stringify(key.publicJwk),
        key.sealedPrivateKey,
        key.createdAtMs,
        key.retiredAtMs,
      ]);
    },
    async retireKey(kid, atMs) {
      await db.query("UPDATE signing_keys SET retired_at = $2 WHERE kid = $1 AND retired_at IS NULL", [kid, atMs]);
    },
    // The pool is the store's; closing it is the store's too.
    close() {},
  };
}
