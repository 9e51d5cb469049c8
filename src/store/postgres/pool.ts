/**
 * The PostgreSQL connection pool of the fleet store, from a `postgres://` URL.
 * The only place (with the change feed's own connection) that connects to
 * PostgreSQL.
 */
import pg from "pg";
import { StoreError } from "../store-error.js";

/** Options of {@link createPostgresPool}. */
export interface PostgresPoolOptions {
  /** `postgres://user:password@host:port/database?…`, as libpq and node-postgres read it. */
  readonly url: string;
  /** Connections kept at most; default 10. */
  readonly max?: number;
  /**
   * How long to wait for a connection, and for a statement, ms; default 5,000.
   * Without it a query to an unreachable server would wait for TCP to give up
   * (minutes), and so would everything queued behind it.
   */
  readonly timeoutMs?: number;
  /** Told about errors of idle connections (the server went away); they are otherwise harmless. */
  readonly onIdleError?: (error: Error) => void;
}

/** Names the schemes {@link isPostgresUrl} accepts. */
const POSTGRES_SCHEMES = ["postgres:", "postgresql:"];

/** Whether `value` is a `postgres://` or `postgresql://` URL (the fleet store), not a data folder. */
export function isPostgresUrl(value: string): boolean {
  try {
    return POSTGRES_SCHEMES.includes(new URL(value).protocol);
  } catch {
    return false;
  }
}

/** `url` with its password masked, for logs and error messages. */
export function redactPostgresUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    return parsed.toString();
  } catch {
    return "(unparsable url)";
  }
}

/**
 * Timestamps are ms since the epoch in BIGINT columns; node-postgres returns
 * int8 as a string (it may exceed 2^53), but ours never do, so they are parsed
 * as numbers like SQLite returns them.
 */
const INT8_OID = 20;
export const POSTGRES_TYPES = {
  getTypeParser: ((oid: number, format?: string) =>
    oid === INT8_OID && format !== "binary" ? (value: string) => Number(value) : pg.types.getTypeParser(oid, format as "text")) as typeof pg.types.getTypeParser,
};

/** Connection settings shared by the pool and the change feed's own connection. */
export function postgresClientConfig(url: string, timeoutMs = 5_000): pg.ClientConfig {
  if (!isPostgresUrl(url)) throw new StoreError("invalid", `store url must start with postgres:// or postgresql://, got \`${redactPostgresUrl(url)}\``);
  return {
    connectionString: url,
    connectionTimeoutMillis: timeoutMs,
    query_timeout: timeoutMs,
    keepAlive: true,
    types: POSTGRES_TYPES,
    application_name: "portcullis",
  };
}

/**
 * Opens a pool (lazily: nothing connects until the first query). Errors of
 * idle connections are reported, never thrown: an unhandled one would end the
 * process when PostgreSQL restarts.
 */
export function createPostgresPool(options: PostgresPoolOptions): pg.Pool {
  const pool = new pg.Pool({ ...postgresClientConfig(options.url, options.timeoutMs), max: options.max ?? 10, idleTimeoutMillis: 30_000 });
  pool.on("error", (error) => options.onIdleError?.(error));
  return pool;
}

/**
 * Runs `work` in one transaction on one pooled connection: committed when it
 * resolves, rolled back when it throws.
 */
export async function inTransaction<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken = false;
  try {
    await client.query("BEGIN");
    const result = await work(client);
    await client.query("COMMIT");
    return result;
  } catch (error) {
    try {
      await client.query("ROLLBACK");
    } catch {
      // why: a connection that cannot even roll back is dead; don't give it back to the pool
      broken = true;
    }
    throw error;
  } finally {
    client.release(broken);
  }
}

/**
 * SQLSTATE classes that say "not now" rather than "never": connection
 * exceptions (08), insufficient resources (53), operator intervention such as
 * a shutdown (57), system errors (58), serialization failures and deadlocks (40).
 */
const TRANSIENT_SQLSTATE = /^(08|53|57|58|40)/;
const TRANSIENT_ERRNO = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "EHOSTUNREACH", "ENETUNREACH", "EAI_AGAIN", "ENOTFOUND"]);

/**
 * Turns a PostgreSQL or network error into an `unavailable` {@link StoreError}
 * when a retry may succeed; `undefined` for anything else.
 */
export function transientPostgresError(error: unknown): StoreError | undefined {
  if (error instanceof StoreError) return error.kind === "unavailable" ? error : undefined;
  const code = (error as { code?: unknown } | null)?.code;
  const message = error instanceof Error ? error.message : String(error);
  const transient =
    (typeof code === "string" && (TRANSIENT_SQLSTATE.test(code) || TRANSIENT_ERRNO.has(code))) ||
    // node-postgres's own errors carry no code
    /Connection terminated|timeout exceeded|Query read timeout|Client has encountered a connection error|not queryable/i.test(message);
  return transient ? new StoreError("unavailable", `PostgreSQL cannot be used right now: ${message}`, { cause: error }) : undefined;
}
