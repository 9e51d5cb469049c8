/**
 * `portcullis store copy`: moves an embedded SQLite store into PostgreSQL, so a
 * single host can become a fleet. Everything is copied as it is stored, row
 * for row: tokens with their hashes, lineages and use stamps, the audit trail
 * with its ids, suspended tenants and restricted workspaces.
 *
 * The target must be empty: the copy runs in one transaction that first
 * checks so, under an advisory lock, so it either copies everything or
 * nothing, and running it twice (or twice at once) refuses the second time
 * instead of duplicating or mixing two stores.
 */
import { existsSync } from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { notifyChange } from "./postgres/change-feed.js";
import { PostgresStore } from "./postgres/postgres-store.js";
import { createPostgresPool, inTransaction, redactPostgresUrl, transientPostgresError } from "./postgres/pool.js";
import { TOKEN_COLUMNS } from "./postgres/rows.js";
import { resolveSecret, SECRET_ENV_VAR, SECRET_FILE_NAME } from "./resolve-secret.js";
import { StoreError } from "./store-error.js";
import { DATABASE_FILE_NAME, SqliteStore } from "./sqlite/sqlite-store.js";

/** What {@link copySqliteToPostgres} copied. */
export interface StoreCopyResult {
  readonly tokens: number;
  /** Distinct rotation lineages among the tokens. */
  readonly lineages: number;
  /** Tokens with a last-used stamp. */
  readonly useStamps: number;
  readonly auditEvents: number;
  /** Security event rows (each a count of denials of one token, event and minute). */
  readonly securityEvents: number;
  readonly suspendedTenants: number;
  readonly restrictedWorkspaces: number;
  /** Where the hashes' secret came from, for the operator to give every replica. */
  readonly secretSource: "environment" | "file";
}

/** Rows per INSERT: 28 token columns x 500 stays under PostgreSQL's 65,535 parameters. */
const ROWS_PER_INSERT = 500;
/** Arbitrary key ("copy") of the advisory lock two copies into one database take turns on. */
const COPY_LOCK_KEY = 0x636f7079;

/**
 * Copies the SQLite store in `dataDir` into the (empty) PostgreSQL database at
 * `url`. The SQLite store is migrated to this build's schema first; the
 * PostgreSQL one is created or migrated as {@link PostgresStore.open} does, and
 * records the secret's fingerprint, so replicas started with another secret
 * refuse to start rather than reject every token.
 *
 * @throws {@link StoreError} `missing` without a SQLite store (or its secret),
 * `conflict` when the target holds anything, `unavailable` when PostgreSQL
 * cannot be reached
 */
export async function copySqliteToPostgres(options: { readonly dataDir: string; readonly url: string; readonly env?: NodeJS.ProcessEnv }): Promise<StoreCopyResult> {
  const env = options.env ?? process.env;
  const file = path.join(options.dataDir, DATABASE_FILE_NAME);
  const secretFromEnv = env[SECRET_ENV_VAR] !== undefined;
  if (!existsSync(file)) throw new StoreError("missing", `no token store at \`${options.dataDir}\``);
  if (!secretFromEnv && !existsSync(path.join(options.dataDir, SECRET_FILE_NAME))) {
    // why: resolveSecret would create a new secret, and no copied hash would ever verify with it
    throw new StoreError("missing", `no \`${SECRET_FILE_NAME}\` in \`${options.dataDir}\` and \`${SECRET_ENV_VAR}\` is not set: the tokens' secret is needed to use them`);
  }
  const secret = resolveSecret(options.dataDir, env);
  // Brings an older SQLite store up to this build's columns; the copy reads them by name.
  await SqliteStore.open({ dataDir: options.dataDir, secret, mustExist: true }).close();

  const target = `\`${redactPostgresUrl(options.url)}\``;
  await (await PostgresStore.open({ url: options.url, secret })).close();

  const source = new Database(file, { readonly: true, fileMustExist: true });
  const pool = createPostgresPool({ url: options.url, max: 1, timeoutMs: 60_000 });
  try {
    return await inTransaction(pool, async (client) => {
      await client.query("SELECT pg_advisory_xact_lock($1)", [COPY_LOCK_KEY]);
      const { rows } = await client.query<{ tokens: number; audit: number; tenants: number; workspaces: number }>(
        `SELECT (SELECT count(*) FROM tokens)::int AS tokens, (SELECT count(*) FROM audit_events)::int AS audit,
                (SELECT count(*) FROM tenants)::int AS tenants, (SELECT count(*) FROM workspaces)::int AS workspaces`,
      );
      const present = rows[0]!;
      if (present.tokens + present.audit + present.tenants + present.workspaces > 0) {
        throw new StoreError(
          "conflict",
          `the target ${target} is not empty (${present.tokens} tokens, ${present.audit} audit events, ${present.tenants} suspended tenants, ${present.workspaces} restricted workspaces); store copy only fills an empty database`,
        );
      }
      // A read transaction on SQLite, so the copy is of one moment even while a server writes to the file.
      const read = source.transaction(() => ({
        tokens: source.prepare(`SELECT seq, ${TOKEN_COLUMNS.join(", ")} FROM tokens ORDER BY seq`).raw(true).all() as unknown[][],
        audit: source.prepare("SELECT id, at, event, actor, token_id, tenant, data FROM audit_events ORDER BY id").raw(true).all() as unknown[][],
        tenants: source.prepare("SELECT tenant, suspended_at, suspended_by, reason FROM tenants ORDER BY tenant").raw(true).all() as unknown[][],
        workspaces: source.prepare("SELECT tenant, workspace, restricted_at, restricted_by, reason, mode FROM workspaces ORDER BY tenant, workspace").raw(true).all() as unknown[][],
        securityEvents: source.prepare("SELECT minute, event, token_id, tenant, count, last_at FROM security_events ORDER BY minute, event, token_id").raw(true).all() as unknown[][],
      }));
      const data = read.deferred();
      await insertRows(client, "tokens", ["seq", ...TOKEN_COLUMNS], data.tokens);
      await insertRows(client, "audit_events", ["id", "at", "event", "actor", "token_id", "tenant", "data"], data.audit);
      await insertRows(client, "tenants", ["tenant", "suspended_at", "suspended_by", "reason"], data.tenants);
      await insertRows(client, "workspaces", ["tenant", "workspace", "restricted_at", "restricted_by", "reason", "mode"], data.workspaces);
      // why: a replica already serving on the empty target may have counted denials (of unknown tokens) into the same rows; the counts add up
      await insertRows(client, "security_events", ["minute", "event", "token_id", "tenant", "count", "last_at"], data.securityEvents, "ON CONFLICT (minute, event, token_id) DO UPDATE SET count = security_events.count + excluded.count, last_at = GREATEST(security_events.last_at, excluded.last_at)");
      // why: rows came with their own ids; new ones must continue after them, not collide
      for (const [table, column] of [["tokens", "seq"], ["audit_events", "id"]] as const) {
        await client.query(`SELECT setval(pg_get_serial_sequence('${table}', '${column}'), coalesce((SELECT max(${column}) FROM ${table}), 0) + 1, false)`);
      }
      // Replicas already running on the empty database reread tenant state; they cached no token of it.
      await notifyChange(client, { kind: "administrative" });
      const lineageIndex = 1 + TOKEN_COLUMNS.indexOf("lineage_id");
      const idIndex = 1 + TOKEN_COLUMNS.indexOf("id");
      const lastUsedIndex = 1 + TOKEN_COLUMNS.indexOf("last_used_at");
      return {
        tokens: data.tokens.length,
        lineages: new Set(data.tokens.map((row) => row[lineageIndex] ?? row[idIndex])).size,
        useStamps: data.tokens.filter((row) => row[lastUsedIndex] !== null).length,
        auditEvents: data.audit.length,
        securityEvents: data.securityEvents.length,
        suspendedTenants: data.tenants.length,
        restrictedWorkspaces: data.workspaces.length,
        secretSource: secretFromEnv ? "environment" : "file",
      } satisfies StoreCopyResult;
    });
  } catch (error) {
    if (error instanceof StoreError) throw error;
    throw transientPostgresError(error) ?? error;
  } finally {
    source.close();
    await pool.end();
  }
}

async function insertRows(client: { query: (text: string, values: unknown[]) => Promise<unknown> }, table: string, columns: readonly string[], rows: readonly unknown[][], onConflict = ""): Promise<void> {
  for (let start = 0; start < rows.length; start += ROWS_PER_INSERT) {
    const chunk = rows.slice(start, start + ROWS_PER_INSERT);
    const values: unknown[] = [];
    const tuples = chunk.map((row) => {
      const placeholders = row.map((value) => {
        values.push(typeof value === "bigint" ? value.toString() : value);
        return `$${values.length}`;
      });
      return `(${placeholders.join(", ")})`;
    });
    await client.query(`INSERT INTO ${table} (${columns.join(", ")}) VALUES ${tuples.join(", ")} ${onConflict}`, values);
  }
}
