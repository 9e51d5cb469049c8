/**
 * The `portcullis` command: argument parsing over the same functions the
 * server and the tests use. Output meant for scripts goes to stdout, the rest
 * to stderr; every refusal is one line and a non-zero exit.
 */
import cluster from "node:cluster";
import { Command, CommanderError, Option } from "commander";
import type { Logger } from "pino";
import { ConfigError, resolvePaths, resolveServeConfig, storeUrl, type ServeConfig, type ServeFlags } from "../config/config.js";
import type { TokenRecord } from "../engine/types.js";
import { startServer } from "../main.js";
import { PolicyLoadError, formatPolicyErrors } from "../policy/errors.js";
import { loadPolicySet } from "../policy/load.js";
import type { CompiledPolicySet } from "../policy/types.js";
import { parseDuration } from "../policy/duration.js";
import { createToken, TokenRequestError, updateTokenControls } from "../service/tokens.js";
import { tokenStatus } from "../lifecycle/token-status.js";
import { controlsFromFlags, registerAdminCommands, withControlOptions, type ControlFlags } from "./admin.js";
import { registerLifecycleCommands } from "./lifecycle.js";
import { registerKeyCommands } from "./keys.js";
import { createLogger } from "./logger.js";
import { superviseWorkers, WORKER_LISTENING } from "./workers.js";
import { checkPortsFree, servePorts } from "../config/check-ports.js";
import { checkHealth } from "./healthcheck.js";
import { PolicyUsageError, registerPolicyAuthorCommands } from "./policy-commands.js";
import { registerStoreCommands } from "./store-commands.js";
import { registerWebhookCommands } from "./webhook-commands.js";
import { StoreError } from "../store/token-store.js";
import { createTokenLifecycle, type TokenLifecycle } from "../lifecycle/token-lifecycle.js";
import { openStore } from "../store/open-store.js";

/** Runs the CLI with `argv` (as `process.argv`); resolves to the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync([...argv]);
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : 2;
    if (error instanceof PolicyLoadError) {
      process.stderr.write(`error: the policy set is invalid:\n${formatPolicyErrors(error.errors)}\n`);
      return 1;
    }
    // A limit, or a rotation of a token that cannot be rotated: exit 3, so scripts can tell it from other failures.
    if (error instanceof StoreError && error.kind === "conflict") {
      process.stderr.write(`error: conflict: ${error.message}\n`);
      return 3;
    }
    if (error instanceof ConfigError || error instanceof StoreError || error instanceof TokenRequestError || error instanceof UsageError) {
      process.stderr.write(`error: ${error.message}\n`);
      return error instanceof UsageError || error instanceof ConfigError ? 2 : 1;
    }
    if (error instanceof PolicyUsageError) {
      process.stderr.write(`error: ${error.message}\n`);
      return 2;
    }
    process.stderr.write(`error: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  }
}

class UsageError extends Error {}

/** The whole command tree; exported for the generated config table (`config-table.ts`). */
export function buildProgram(): Command {
  const program = new Command("portcullis")
    .description("policy decision point for bearer API tokens")
    .exitOverride()
    .configureOutput({ writeErr: (text) => process.stderr.write(text) })
    .showHelpAfterError("(run with --help for usage)");

  program
    .command("serve")
    .description("serve decisions over gRPC (Authorize, Envoy Check, health) and HTTP (Connect, gRPC-Web, ext-authz, /healthz, /readyz)")
    .option("--host <address>", "address to bind (env PORTCULLIS_HOST, default 127.0.0.1)")
    .option("--grpc-port <port>", "gRPC port, 0 for any free port (env PORTCULLIS_GRPC_PORT, default 9191)")
    .option("--http-port <port>", "HTTP/1.1 port, 0 for any free port (env PORTCULLIS_HTTP_PORT, default 8181)")
    .option("--policies <dir>", "policy set folder (env PORTCULLIS_POLICY_DIR, default policies)")
    .option("--data-dir <dir>", "store and secret folder (env PORTCULLIS_DATA_DIR, default data)")
    .option("--store <url>", "postgres://… url of a token store shared by replicas, needs PORTCULLIS_TOKEN_SECRET; without it sqlite in the data folder (env PORTCULLIS_STORE_URL, default none)")
    .option("--log-level <level>", "fatal, error, warn, info, debug, trace or silent (env PORTCULLIS_LOG_LEVEL, default info)")
    .option(
      "--trusted-proxy <cidr>",
      "address or CIDR whose X-Forwarded-For and client-certificate headers are believed, repeatable (env PORTCULLIS_TRUSTED_PROXIES, comma-separated; default none)",
      (value: string, previous: string[] = []) => [...previous, value],
    )
    .option("--ext-authz-prefix <path>", "path prefix of the HTTP ext-authz endpoints (env PORTCULLIS_EXT_AUTHZ_PREFIX, default /ext-authz)")
    .option("--tls-cert <file>", "PEM certificate chain: both ports serve TLS (cleartext without it), reloaded when it changes; needs --tls-key (env PORTCULLIS_TLS_CERT, default none)")
    .option("--tls-key <file>", "PEM private key of --tls-cert (env PORTCULLIS_TLS_KEY, default none)")
    .option("--tls-client-ca <file>", "PEM CA bundle: both ports require a client certificate from it (env PORTCULLIS_TLS_CLIENT_CA, default none)")
    .option("--no-watch-policies", "do not reload the policy folder when its files change; SIGHUP still reloads (env PORTCULLIS_WATCH_POLICIES, true or false, default true)")
    .option("--policy-explorer", "serve the read-only policy explorer at /policy on the HTTP port (env PORTCULLIS_POLICY_EXPLORER, true or false, default false)")
    .option("--quota-store <url>", "redis:// or rediss:// URL of the Redis that every replica counts quotas in, exactly; prefer the env for a password (env PORTCULLIS_QUOTA_STORE_URL, default none: in memory, per process)")
    .option("--quota-key-prefix <prefix>", "prefix of the quota store's keys, one per token id (env PORTCULLIS_QUOTA_KEY_PREFIX, default portcullis:quota:)")
    .option(
      "--grpc-max-connection-age <duration>",
      "age (±10%) at which a gRPC connection is sent GOAWAY so its client reconnects and load spreads over replicas, 0s for never (env PORTCULLIS_GRPC_MAX_CONNECTION_AGE, default 10m)",
    )
    .option("--grpc-max-connection-age-grace <duration>", "after that GOAWAY, how long open calls may run before the connection is cut (env PORTCULLIS_GRPC_MAX_CONNECTION_AGE_GRACE, default 30s)")
    .option("--workers <n>", "processes sharing the ports (node:cluster), or auto for one per core; 1 serves in this process (env PORTCULLIS_WORKERS, default 1)")
    .option("--decision-log <sink>", "write a JSON record per decision to stdout or file:PATH, batched off the decision path (env PORTCULLIS_DECISION_LOG, default stdout)")
    .option("--decision-log-mode <mode>", "which decisions get a record: off, denials, sampled (denials and a share of allows) or all (env PORTCULLIS_DECISION_LOG_MODE, default denials)")
    .option("--decision-log-sample-rate <rate>", "share of allows the sampled mode records, 0 to 1 (env PORTCULLIS_DECISION_LOG_SAMPLE_RATE, default 0.01)")
    .option("--decision-log-max-file-bytes <size>", "size past which the file:PATH log is rotated to PATH.1, e.g. 100M (env PORTCULLIS_DECISION_LOG_MAX_FILE_BYTES, default 100M)")
    .option("--decision-log-max-files <count>", "rotated decision log files kept, PATH.1 to PATH.N (env PORTCULLIS_DECISION_LOG_MAX_FILES, default 5)")
    .option("--decision-log-buffer <records>", "records queued at most; past it a record is dropped and counted, never waited for (env PORTCULLIS_DECISION_LOG_BUFFER, default 10000)")
    .option("--security-event-retention <duration>", "how long stored security events are kept; older rows are deleted in batches every 10 minutes, 0s keeps them all (env PORTCULLIS_SECURITY_EVENT_RETENTION, default 30d)")
    .action(async (flags: ServeFlags) => serve(flags));

  program
    .command("healthcheck")
    .description("exit 0 when the server this configuration describes answers /readyz with 200, else 1 (for container health checks)")
    .option("--host <address>", "address the server binds (env PORTCULLIS_HOST, default 127.0.0.1; 0.0.0.0 and :: are asked on loopback)")
    .option("--http-port <port>", "its HTTP/1.1 port (env PORTCULLIS_HTTP_PORT, default 8181)")
    .action(async (flags: { host?: string; httpPort?: string }) => {
      const result = await checkHealth(flags);
      (result.exitCode === 0 ? process.stdout : process.stderr).write(`${result.message}\n`);
      process.exitCode = result.exitCode;
    });

  const tokens = program.command("tokens").description("create, list, update, rotate and revoke tokens");
  withStoreOptions(
    withControlOptions(
      tokens
      .command("create")
      .description("create a token and print it once (stdout); details go to stderr")
      .requiredOption("--tenant <tenant>", "tenant the token belongs to")
      .requiredOption("--workspace <workspace>", "workspace within the tenant")
      .requiredOption("--name <name>", "a label for people, e.g. ingest-worker")
      .option("--environment <environment>", "environment, which picks the token prefix", "production")
      .addOption(new Option("--type <type>", "user or service").choices(["user", "service"]).default("service"))
      .option("--role <role>", "role from the policy set")
      .option("--level <level>", "key level from the policy set, e.g. read_only")
      .option("--scope <scope...>", "explicit scopes that narrow the role (repeatable)")
      .option("--creator <user>", "user tokens: who creates it")
      .option("--creator-role <role>", "user tokens: the creator's role, which caps the token")
      .option("--expires-in <duration>", "lifetime, e.g. 90d, 12h")
      .option("--service <label>", "service label that policy controls can select on")
      .option("--json", "print the token and its record as JSON"),
    ),
  ).action((flags: CreateFlags) => withPolicyAndStore(flags, (policy, store) => create(policy, store, flags), { mayCreate: true }));

  withStoreOptions(
    withControlOptions(
      tokens
        .command("update")
        .description("replace a token's own controls (kinds left out fall back to the policy's)")
        .argument("<id>", "token id, e.g. tok_…")
        .option("--clear", "remove every control of the token"),
    ),
  ).action((id: string, flags: ControlFlags & StoreFlags & { clear?: boolean }) =>
    withPolicyAndStore(flags, async (policy, store) => {
      const controls = controlsFromFlags(flags);
      if (controls === undefined && flags.clear !== true) throw new UsageError("nothing to update: give --controls, --ip-allow, --mtls-fingerprint, --mtls-ca, --quota-per-minute, --quota-per-day or --clear");
      if (controls !== undefined && flags.clear === true) throw new UsageError("--clear cannot be combined with controls");
      const record = await updateTokenControls(store, policy, id, controls ?? null, actor());
      process.stderr.write(`updated controls of ${record.id} (${record.name})\n`);
    }),
  );

  withStoreOptions(
    tokens
      .command("list")
      .description("list tokens (never their secret)")
      .option("--tenant <tenant>", "only this tenant")
      .option("--all", "include revoked tokens")
      .option("--json", "print JSON"),
  ).action((flags: ListFlags) => withStore(flags, (store) => list(store, flags)));

  withStoreOptions(tokens.command("revoke").description("revoke a token at once; final").argument("<id>", "token id, e.g. tok_…")).action(
    (id: string, flags: StoreFlags) =>
      withStore(flags, async (store) => {
        const before = await store.getListing(id);
        const record = await store.revoke(id, actor());
        if (before?.revokedAtMs != null) {
          process.stderr.write(`${record.id} (${record.name}) was already revoked at ${new Date(before.revokedAtMs).toISOString()} by ${before.revokedBy ?? "unknown"}; nothing changed\n`);
        } else {
          process.stderr.write(`revoked ${record.id} (${record.name})\n`);
        }
      }),
  );

  registerAdminCommands(program, { withStoreOptions, withStore, actor });
  registerStoreCommands(program);
  registerWebhookCommands(program, { withStoreOptions, withStore, usageError: (message) => new UsageError(message) });
  registerKeyCommands(program);
  registerLifecycleCommands(program, tokens, { withStoreOptions, withStore, withPolicyAndStore, actor, usageError: (message) => new UsageError(message) });

  const policy = program.command("policy").description("check policy sets");
  policy
    .command("validate")
    .description("load, validate and compile a policy set; print every error with file, pointer and line")
    .argument("[dir]", "policy set folder (env PORTCULLIS_POLICY_DIR, default policies)")
    .action((dir: string | undefined) => {
      const folder = dir ?? resolvePaths({}).policyDir;
      const loaded = loadPolicySet(folder);
      if (!loaded.ok) throw new PolicyLoadError(loaded.errors);
      process.stdout.write(`policy set \`${loaded.policy.name}\` is valid: ${loaded.files.length} files, revision ${loaded.policy.revision.slice(0, 12)}\n`);
    });
  registerPolicyAuthorCommands(policy);
  return program;
}

interface StoreFlags {
  readonly policies?: string;
  readonly dataDir?: string;
  /** `--store`: a postgres:// url instead of the SQLite store in the data folder. */
  readonly store?: string;
}

interface CreateFlags extends StoreFlags, ControlFlags {
  readonly tenant: string;
  readonly workspace: string;
  readonly name: string;
  readonly environment: string;
  readonly type: "user" | "service";
  readonly role?: string;
  readonly level?: string;
  readonly scope?: string[];
  readonly creator?: string;
  readonly creatorRole?: string;
  readonly expiresIn?: string;
  readonly service?: string;
  readonly json?: boolean;
}

interface ListFlags extends StoreFlags {
  readonly tenant?: string;
  readonly all?: boolean;
  readonly json?: boolean;
}

function withStoreOptions(command: Command): Command {
  return command
    .option("--policies <dir>", "policy set folder (env PORTCULLIS_POLICY_DIR, default policies)")
    .option("--data-dir <dir>", "store folder (env PORTCULLIS_DATA_DIR, default data)")
    .option("--store <url>", "postgres://… url of a shared token store (env PORTCULLIS_STORE_URL, default none: sqlite in the data folder)");
}

async function serve(flags: ServeFlags): Promise<void> {
  const config = resolveServeConfig(flags);
  const workers = config.workers ?? 1;
  if (workers > 1 && cluster.isPrimary) {
    // why: in a cluster, every listen(0) of a process shares one port, so the two ports would be the same
    if (config.grpcPort === 0 || config.httpPort === 0) throw new ConfigError("--workers above 1 needs fixed ports: --grpc-port and --http-port cannot be 0");
    await checkPortsFree(config.host, servePorts(config));
    process.exitCode = await superviseWorkers(workers, createLogger(config.logLevel));
    return;
  }
  const base = createLogger(config.logLevel);
  const log = cluster.isWorker && cluster.worker !== undefined ? base.child({ worker: cluster.worker.id }) : base;
  try {
    await serveUntilStopped(config, log);
  } finally {
    // why: a worker's channel to the primary would keep it alive once its servers closed, or when it failed to start
    if (cluster.worker?.isConnected() === true) cluster.worker.disconnect();
  }
}

async function serveUntilStopped(config: ServeConfig, log: Logger): Promise<void> {
  const server = await startServer(config, log);
  if (cluster.isWorker) process.send?.(WORKER_LISTENING);
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (reason: string) => {
      if (stopping) return;
      stopping = true;
      log.info(`${reason}; shutting down`);
      process.off("SIGHUP", reload);
      server.close().then(resolve, resolve);
    };
    const reload = () => void server.reloadPolicy();
    process.once("SIGINT", () => stop("SIGINT received"));
    process.once("SIGTERM", () => stop("SIGTERM received"));
    process.on("SIGHUP", reload);
    // A worker whose primary is gone has nobody to hand it connections or restart it.
    cluster.worker?.once("disconnect", () => stop("the primary process is gone"));
  });
  log.info("stopped");
}

/**
 * Opens the store for one command. Only a command that creates (`tokens
 * create`) may create a missing store; every other one refuses it, so that a
 * mistyped `--data-dir` is an error and not an empty new store with a new secret.
 */
async function withStore(flags: StoreFlags, run: (store: TokenLifecycle) => void | Promise<void>, options: { mayCreate?: boolean } = {}): Promise<void> {
  const opened = await openStore({
    ...storeUrl(flags),
    dataDir: resolvePaths(flags).dataDir,
    mustExist: options.mayCreate !== true,
    onCreated: ({ databaseFile, secretFile }) => {
      if (databaseFile !== null) process.stderr.write(`created a new token store: ${databaseFile}\n`);
      if (secretFile !== null) process.stderr.write(`created a new server secret: ${secretFile} (tokens verify only with the secret they were hashed with: back it up)\n`);
    },
  });
  try {
    await run(createTokenLifecycle({ store: opened.store, secret: opened.secret, now: Date.now }));
  } finally {
    await opened.store.close();
  }
}

async function withPolicyAndStore(flags: StoreFlags, run: (policy: CompiledPolicySet, store: TokenLifecycle) => void | Promise<void>, options: { mayCreate?: boolean } = {}): Promise<void> {
  // why: token commands send no webhooks, so an operator's shell needs no webhook secret
  const loaded = loadPolicySet(resolvePaths(flags).policyDir, { readWebhookSecrets: false });
  if (!loaded.ok) throw new PolicyLoadError(loaded.errors);
  return withStore(flags, (store) => run(loaded.policy, store), options);
}

async function create(policy: CompiledPolicySet, store: TokenLifecycle, flags: CreateFlags): Promise<void> {
  let expiresAtMs: number | null = null;
  const now = Date.now();
  if (flags.expiresIn !== undefined) {
    const ms = parseDuration(flags.expiresIn);
    if (ms === null || ms === 0) throw new UsageError(`invalid --expires-in \`${flags.expiresIn}\`: expected a duration such as 90d, 12h or 30m`);
    expiresAtMs = now + ms;
  }
  const { token, record } = await createToken(
    store,
    policy,
    {
      tenant: flags.tenant,
      workspace: flags.workspace,
      environment: flags.environment,
      name: flags.name,
      type: flags.type,
      role: flags.role ?? null,
      keyLevel: flags.level ?? null,
      scopes: flags.scope ?? null,
      creator: flags.creator ?? null,
      creatorRole: flags.creatorRole ?? null,
      expiresAtMs,
      service: flags.service ?? null,
      controls: controlsFromFlags(flags) ?? null,
      actor: actor(),
    },
    now,
  );
  if (flags.json) {
    process.stdout.write(JSON.stringify({ token, record }, null, 2) + "\n");
    return;
  }
  process.stderr.write(`created ${record.id} (${record.environment}, tenant ${record.tenant}, workspace ${record.workspace}); store it now, it is shown only once:\n`);
  process.stdout.write(token + "\n");
}

async function list(store: TokenLifecycle, flags: ListFlags): Promise<void> {
  const rows = await store.list({ tenant: flags.tenant, includeRevoked: flags.all === true });
  if (flags.json) {
    process.stdout.write(JSON.stringify(rows, null, 2) + "\n");
    return;
  }
  const table = [["ID", "NAME", "TENANT", "WORKSPACE", "ENV", "TYPE", "ROLE", "LEVEL", "SERVICE", "CONTROLS", "CREATED", "EXPIRES", "STATUS", "LAST USED", "USES"]];
  for (const row of rows) {
    table.push([
      row.id,
      row.name,
      row.tenant,
      row.workspace,
      row.environment,
      row.type,
      row.role ?? "-",
      row.keyLevel ?? "-",
      row.service ?? "-",
      Object.keys(row.controls).join(",") || "-",
      date(row.createdAtMs),
      date(row.expiresAtMs),
      status(row),
      date(row.lastUsedAtMs),
      String(row.useCount),
    ]);
  }
  const widths = table[0]!.map((_, column) => Math.max(...table.map((row) => row[column]!.length)));
  for (const row of table) process.stdout.write(row.map((cell, column) => cell.padEnd(widths[column]!)).join("  ").trimEnd() + "\n");
}

function status(record: TokenRecord): string {
  return tokenStatus(record, Date.now());
}

function date(ms: number | null): string {
  return ms === null ? "-" : new Date(ms).toISOString().slice(0, 19) + "Z";
}

function actor(): string {
  return `cli:${process.env.USER ?? process.env.LOGNAME ?? "unknown"}`;
}
