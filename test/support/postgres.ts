/**
 * Real PostgreSQL for tests: a database unique to the test run on the machine's
 * service (127.0.0.1:5432, trust, user postgres), or an instance of the test's
 * own on a free port that fault tests may stop and start. No mocks.
 *
 * Where PostgreSQL cannot be had the caller skips with a printed reason, except
 * in CI (`process.env.CI` set), where that is a failure.
 */
import { execFile, execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import pg from "pg";

const run = promisify(execFile);

/** The machine's shared PostgreSQL service, as the notes promise it. */
export const SHARED_POSTGRES_URL = process.env.PORTCULLIS_TEST_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";

/** A database made for one test run; {@link TestDatabase.drop} removes it. */
export interface TestDatabase {
  /** Connection URL of the new database. */
  readonly url: string;
  readonly name: string;
  /** Drops the database, ending any connection still open to it. */
  drop(): Promise<void>;
}

/**
 * Why PostgreSQL cannot be used here, or `null` when it can. In CI an
 * unreachable server throws instead, so a misconfigured CI fails loudly.
 */
export async function postgresUnavailableReason(adminUrl = SHARED_POSTGRES_URL): Promise<string | null> {
  const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 2_000 });
  try {
    await client.connect();
    await client.query("SELECT 1");
    return null;
  } catch (error) {
    const reason = `PostgreSQL unreachable at ${redact(adminUrl)}: ${(error as Error).message}`;
    if (process.env.CI) throw new Error(`${reason} (CI must run the PostgreSQL tests)`);
    console.warn(`skipping PostgreSQL tests: ${reason}`);
    return reason;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Creates `portcullis_test_<pid>_<random>` on the server of `adminUrl`. */
export async function createTestDatabase(adminUrl = SHARED_POSTGRES_URL): Promise<TestDatabase> {
  const name = `portcullis_test_${process.pid}_${randomBytes(4).toString("hex")}`;
  const admin = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 5_000 });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    name,
    async drop() {
      const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 5_000 });
      await client.connect();
      try {
        // why: a server under test may still hold pooled connections; FORCE ends them (PostgreSQL 13+)
        await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await client.end();
      }
    },
  };
}

/** A PostgreSQL server of the test's own, in a temporary folder, on a free loopback port. */
export interface OwnPostgres {
  readonly port: number;
  /** URL of its `postgres` database. */
  readonly url: string;
  /** Stops the server at once (`-m immediate`), as a crash or a network cut would look to clients. */
  stop(): Promise<void>;
  /** Starts it again on the same port and folder. */
  start(): Promise<void>;
  /** Stops it if running and removes its folder. */
  destroy(): Promise<void>;
}

/** Folder of `initdb` and `pg_ctl`, or `null` when PostgreSQL's server binaries are not installed. */
export function postgresBinDir(): string | null {
  const candidates: string[] = [];
  try {
    candidates.push(execFileSync("pg_config", ["--bindir"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim());
  } catch {
    // pg_config is optional; fall through to the usual places
  }
  candidates.push("/usr/lib/postgresql/15/bin", "/usr/local/bin", "/usr/bin");
  for (const dir of fs.existsSync("/usr/lib/postgresql") ? fs.readdirSync("/usr/lib/postgresql").sort().reverse() : []) {
    candidates.push(`/usr/lib/postgresql/${dir}/bin`);
  }
  return candidates.find((dir) => fs.existsSync(path.join(dir, "initdb")) && fs.existsSync(path.join(dir, "pg_ctl"))) ?? null;
}

/**
 * Why an own instance cannot be started here, or `null`. Like
 * {@link postgresUnavailableReason}, it throws in CI instead of skipping.
 */
export function ownPostgresUnavailableReason(): string | null {
  let reason: string | null = null;
  if (postgresBinDir() === null) reason = "initdb and pg_ctl not found (pg_config --bindir, /usr/lib/postgresql/*/bin, /usr/local/bin)";
  else if (process.getuid?.() === 0 && !hasPostgresUser()) reason = "running as root and there is no `postgres` user to run initdb as";
  if (reason === null) return null;
  if (process.env.CI) throw new Error(`cannot start an own PostgreSQL: ${reason} (CI must run the PostgreSQL fault tests)`);
  console.warn(`skipping PostgreSQL fault tests: ${reason}`);
  return reason;
}

/**
 * Starts a fresh PostgreSQL in a temporary folder (initdb, then pg_ctl) on a
 * free port, with trust authentication and no fsync (test data is disposable,
 * and the OS keeps what was written; commits stay synchronous so that an
 * immediate stop, a crash to PostgreSQL, loses none).
 * PostgreSQL refuses to run as root, so as root it runs as `postgres`.
 */
export async function startOwnPostgres(): Promise<OwnPostgres> {
  const binDir = postgresBinDir();
  if (binDir === null) throw new Error("initdb and pg_ctl not found");
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-pg-"));
  const dataDir = path.join(root, "data");
  const logFile = path.join(root, "server.log");
  const asRoot = process.getuid?.() === 0;
  if (asRoot) execFileSync("chown", ["postgres:postgres", root]);
  const pgCommand = (tool: string, args: string[]) => (asRoot ? run("runuser", ["-u", "postgres", "--", path.join(binDir, tool), ...args]) : run(path.join(binDir, tool), args));

  await pgCommand("initdb", ["-D", dataDir, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale", "C"]);
  const port = await freePort();
  const options = `-p ${port} -k ${root} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off`;
  let running = false;
  const start = async () => {
    await pgCommand("pg_ctl", ["-D", dataDir, "-o", options, "-l", logFile, "-w", "-t", "30", "start"]);
    running = true;
  };
  const stop = async () => {
    await pgCommand("pg_ctl", ["-D", dataDir, "-m", "immediate", "-w", "-t", "30", "stop"]);
    running = false;
  };
  try {
    await start();
  } catch (error) {
    fs.rmSync(root, { recursive: true, force: true });
    throw error;
  }
  return {
    port,
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    stop,
    start,
    async destroy() {
      if (running) await stop().catch(() => undefined);
      fs.rmSync(root, { recursive: true, force: true });
    },
  };
}

function hasPostgresUser(): boolean {
  try {
    execFileSync("id", ["-u", "postgres"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function redact(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    return parsed.toString();
  } catch {
    return "(unparsable url)";
  }
}
