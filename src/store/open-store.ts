/**
 * Opens the token store the configuration names: PostgreSQL when a
 * `postgres://` URL is given (`--store`, `PORTCULLIS_STORE_URL`), else the
 * embedded SQLite store in the data folder, which needs nothing but Node.
 */
import { existsSync } from "node:fs";
import path from "node:path";
import type { ChangeFeedOptions } from "./postgres/change-feed.js";
import { isPostgresUrl, redactPostgresUrl } from "./postgres/pool.js";
import { PostgresStore } from "./postgres/postgres-store.js";
import { resolveSecret, SECRET_ENV_VAR, SECRET_FILE_NAME } from "./resolve-secret.js";
import { SqliteStore, type SqliteStoreOptions } from "./sqlite/sqlite-store.js";
import { StoreError } from "./store-error.js";

/** Options of {@link openStore}. */
export interface OpenStoreOptions extends Omit<SqliteStoreOptions, "secret"> {
  /** `postgres://…` for the fleet store; absent or empty for SQLite in `dataDir`. */
  readonly storeUrl?: string;
  /** PostgreSQL: listen to the change feed (a server does). */
  readonly changeFeed?: boolean | Omit<ChangeFeedOptions, "url">;
  /** PostgreSQL: told about errors of idle pooled connections. */
  readonly onIdleError?: (error: Error) => void;
  readonly env?: NodeJS.ProcessEnv;
}

/** An open store and the secret its token hashes are keyed with. */
export type OpenedStore =
  | { readonly kind: "sqlite"; readonly store: SqliteStore; readonly secret: Buffer; readonly description: string }
  | { readonly kind: "postgres"; readonly store: PostgresStore; readonly secret: Buffer; readonly description: string };

/**
 * Opens SQLite or PostgreSQL. A PostgreSQL store is shared by replicas, so its
 * secret must be theirs too: `PORTCULLIS_TOKEN_SECRET`, or a `secret.key`
 * already in the data folder (the one `store copy` copied from); a new one is
 * never made up for it, since each replica would make its own.
 */
export async function openStore(options: OpenStoreOptions): Promise<OpenedStore> {
  const env = options.env ?? process.env;
  const url = options.storeUrl?.trim() ?? "";
  if (url === "") {
    const store = SqliteStore.open(options);
    return { kind: "sqlite", store, secret: store.secret, description: path.join(options.dataDir, "portcullis.db") };
  }
  if (!isPostgresUrl(url)) throw new StoreError("invalid", `the store url must start with postgres:// or postgresql://, got \`${redactPostgresUrl(url)}\``);
  if (env[SECRET_ENV_VAR] === undefined && !existsSync(path.join(options.dataDir, SECRET_FILE_NAME))) {
    throw new StoreError(
      "secret",
      `a postgresql store needs the token secret every replica shares: set ${SECRET_ENV_VAR} (e.g. \`openssl rand -hex 32\`, or the contents of the secret.key a store copy came from)`,
    );
  }
  const secret = resolveSecret(options.dataDir, env);
  const store = await PostgresStore.open({ url, secret, changeFeed: options.changeFeed, onIdleError: options.onIdleError });
  return { kind: "postgres", store, secret, description: redactPostgresUrl(url) };
}
