/**
 * The SQLite {@link SigningKeyStore}: a `signing_keys` table in the token
 * store's own file (`portcullis.db`), through a connection of its own, so
 * that the key ring never shares statements with the token look-ups. The
 * table is created when missing rather than by a schema step, since it is
 * independent of every other table; the private keys in it are sealed
 * (sealed-key.ts).
 */
import path from "node:path";
import Database from "better-sqlite3";
import { DATABASE_FILE_NAME } from "../store/token-store.js";
import type { PublicJwk, SigningKeyStore, StoredSigningKey } from "./signing-key-store.js";

const CREATE_TABLE = `
  CREATE TABLE IF NOT EXISTS signing_keys (
    kid                TEXT PRIMARY KEY,
    algorithm          TEXT NOT NULL CHECK (algorithm IN ('EdDSA')),
    public_jwk         TEXT NOT NULL,
    sealed_private_key TEXT NOT NULL,
    created_at         INTEGER NOT NULL,
    retired_at         INTEGER
  ) STRICT
`;

interface KeyRow {
  kid: string;
  algorithm: "EdDSA";
  public_jwk: string;
  sealed_private_key: string;
  created_at: number;
  retired_at: number | null;
}

/** A {@link SigningKeyStore} over a SQLite file, with `close`. */
export interface SqliteSigningKeyStore extends SigningKeyStore {
  close(): void;
}

/**
 * Opens the signing keys of the token store in `dataDir`, whose database must
 * exist (open the token store first: it creates and migrates the file).
 */
export function openSqliteSigningKeyStore(dataDir: string, options: { busyTimeoutMs?: number } = {}): SqliteSigningKeyStore {
  const db = new Database(path.join(dataDir, DATABASE_FILE_NAME), { fileMustExist: true });
  try {
    db.pragma("journal_mode = WAL");
    db.pragma(`busy_timeout = ${options.busyTimeoutMs ?? 5_000}`);
    db.exec(CREATE_TABLE);
  } catch (error) {
    db.close();
    throw error;
  }
  const list = db.prepare<[], KeyRow>("SELECT kid, algorithm, public_jwk, sealed_private_key, created_at, retired_at FROM signing_keys ORDER BY created_at, kid");
  const insert = db.prepare("INSERT INTO signing_keys (kid, algorithm, public_jwk, sealed_private_key, created_at, retired_at) VALUES (?, ?, ?, ?, ?, ?)");
  const retire = db.prepare("UPDATE signing_keys SET retired_at = ? WHERE kid = ? AND retired_at IS NULL");
  return {
    listKeys: () =>
      list.all().map((row) => ({
        kid: row.kid,
        algorithm: row.algorithm,
        publicJwk: JSON.parse(row.public_jwk) as PublicJwk,
        sealedPrivateKey: row.sealed_private_key,
        createdAtMs: row.created_at,
        retiredAtMs: row.retired_at,
      })),
    addKey(key: StoredSigningKey) {
      insert.run(key.kid, key.algorithm, JSON.stringify(key.publicJwk), key.sealedPrivateKey, key.createdAtMs, key.retiredAtMs);
    },
    retireKey(kid, atMs) {
      retire.run(atMs, kid);
    },
    close: () => db.close(),
  };
}
