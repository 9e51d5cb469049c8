/**
 * Server configuration: flags over environment variables over defaults, read
 * and validated once at start into one typed {@link ServeConfig}.
 */

import type { WebhookDelivererOptions } from "../webhooks/webhook-deliverer.js";
import { availableParallelism } from "node:os";
import { parseDuration } from "../policy/duration.js";
import type { TlsFiles } from "../transport/tls-files.js";
import { isTrustedProxyEntry } from "../transport/trusted-proxies.js";
// A cycle (it throws ConfigError), safe because both sides use each other only inside functions.
import { resolveDecisionLogSettings, type DecisionLogFlags, type DecisionLogSettings } from "../observe/decision-log-settings.js";
import { DEFAULT_SECURITY_EVENT_RETENTION_MS } from "../observe/security-event-retention.js";

/** Everything `portcullis serve` needs. */
/** What {@link ServeConfig.webhookDelivery} may set. */
export type WebhookDeliveryTuning = Pick<WebhookDelivererOptions, "pollIntervalMs" | "timeoutMs" | "concurrency" | "capacity" | "leaseMs" | "retry" | "retentionMs">;

export interface ServeConfig {
  /**
   * Timing of the webhook deliverer (poll interval, attempt timeout, backoff,
   * outbox capacity). Not a flag or variable: for tests and embedding; the
   * defaults are in docs/operations.md ("Signed webhooks").
   */
  readonly webhookDelivery?: WebhookDeliveryTuning;
  /**
   * Address both ports bind to. Default `127.0.0.1`, so that a laptop run is not
   * reachable from the network; containers set `0.0.0.0` (env `PORTCULLIS_HOST`).
   */
  readonly host: string;
  /** gRPC over HTTP/2 cleartext: Authorize, Envoy Check, health. Default 9191 (env `PORTCULLIS_GRPC_PORT`); 0 picks a free port. */
  readonly grpcPort: number;
  /** HTTP/1.1: Connect, gRPC-Web, `/healthz`, `/readyz`. Default 8181 (env `PORTCULLIS_HTTP_PORT`); 0 picks a free port. */
  readonly httpPort: number;
  /** Folder of the policy set. Default `policies` (env `PORTCULLIS_POLICY_DIR`). */
  readonly policyDir: string;
  /** Folder of the SQLite store and the token secret. Default `data` (env `PORTCULLIS_DATA_DIR`). */
  readonly dataDir: string;
  /**
   * The fleet store: a `postgres://` URL (`--store`; env `PORTCULLIS_STORE_URL`),
   * shared by every replica. Default none: the embedded SQLite store in
   * `dataDir`. Optional like `trustedProxies`.
   */
  readonly storeUrl?: string;
  /** pino level: `fatal`, `error`, `warn`, `info`, `debug`, `trace` or `silent`. Default `info` (env `PORTCULLIS_LOG_LEVEL`). */
  readonly logLevel: string;
  /**
   * Peers whose forwarding headers are believed: IP addresses or CIDR ranges,
   * IPv4 or IPv6. Only from these does `X-Forwarded-For`/`X-Real-IP` set the
   * source IP, `X-Forwarded-Host` the host, and `X-Forwarded-Client-Cert`,
   * `Client-Cert` or `X-Client-Cert-*` the client certificate. Default none
   * (`--trusted-proxy`, repeatable; env `PORTCULLIS_TRUSTED_PROXIES`, comma-separated),
   * e.g. `--trusted-proxy 10.0.0.0/8 --trusted-proxy ::1`. Optional so that
   * configs built in code (tests, benches) may leave it out.
   */
  readonly trustedProxies?: readonly string[];
  /**
   * Path prefix of the HTTP ext-authz endpoints on the HTTP/1.1 port:
   * `<prefix>/envoy/…`, `<prefix>/nginx`, `<prefix>/traefik`. Default `/ext-authz`
   * (`--ext-authz-prefix`; env `PORTCULLIS_EXT_AUTHZ_PREFIX`); optional like `trustedProxies`.
   */
  readonly extAuthzPrefix?: string;
  /**
   * Whether the server reloads its policy folder when a `*.json` file in it
   * changes (debounced; a set that fails to load leaves the one in force, as
   * SIGHUP does). Default `true` (`--no-watch-policies`; env
   * `PORTCULLIS_WATCH_POLICIES=false`); optional like `trustedProxies`.
   */
  readonly watchPolicies?: boolean;
  /**
   * Whether the HTTP port serves the read-only policy explorer at `/policy`
   * (route table, role matrix, controls, and a form that explains a request
   * for an inline token). Default `false` (`--policy-explorer`; env
   * `PORTCULLIS_POLICY_EXPLORER=true`): it shows the whole policy set to
   * anyone who reaches the port.
   */
  readonly policyExplorer?: boolean;
  /**
   * TLS on both ports: PEM certificate chain and key files (`--tls-cert`,
   * `--tls-key`; env `PORTCULLIS_TLS_CERT`, `PORTCULLIS_TLS_KEY`), reloaded when
   * they change, and optionally a CA bundle client certificates must chain to
   * (`--tls-client-ca`, env `PORTCULLIS_TLS_CLIENT_CA`), which makes both ports
   * require one. Default: no TLS, e.g. `--tls-cert /etc/portcullis/tls.crt
   * --tls-key /etc/portcullis/tls.key`.
   */
  readonly tls?: TlsFiles;
  /**
   * Where quota counters live: `redis://[user:password@]host:port[/db]` (or
   * `rediss://` for TLS) shares exact counts across every replica that names
   * the same Redis; without it each process counts in its own memory
   * (`--quota-store`; env `PORTCULLIS_QUOTA_STORE_URL`, better for a URL with a
   * password, which `ps` would show on a command line). Default none (in memory),
   * e.g. `--quota-store redis://redis.internal:6379`. See docs/controls/quota.md.
   */
  readonly quotaStoreUrl?: string;
  /**
   * Prefix of the quota store's keys (`<prefix><token id>`), so that several
   * fleets can share one Redis. Default `portcullis:quota:` (`--quota-key-prefix`;
   * env `PORTCULLIS_QUOTA_KEY_PREFIX`); used only with `quotaStoreUrl`.
   */
  readonly quotaKeyPrefix?: string;
  /**
   * Age at which a gRPC connection is sent GOAWAY so that its client
   * reconnects, varied by ±10% per connection; 0 never retires one. Envoy keeps
   * its connections for hours, so without it a replica added behind a Service
   * gets no load until the old connections break (docs/fleet.md). Default 10
   * minutes (`--grpc-max-connection-age`; env `PORTCULLIS_GRPC_MAX_CONNECTION_AGE`);
   * optional like `trustedProxies`, absent is the default.
   */
  readonly grpcMaxConnectionAgeMs?: number;
  /** After that GOAWAY, how long calls still open may run before the connection is cut. Default 30 s (`--grpc-max-connection-age-grace`; env `PORTCULLIS_GRPC_MAX_CONNECTION_AGE_GRACE`). */
  readonly grpcMaxConnectionAgeGraceMs?: number;
  /**
   * Processes serving the two ports: 1 serves in this process; more forks that
   * many workers (node:cluster) sharing the ports, each with its own caches, and
   * the first process supervises them. Default 1 (`--workers`, a number or
   * `auto` for one per core; env `PORTCULLIS_WORKERS`).
   */
  readonly workers?: number;
  /**
   * The decision log: sink, mode, sampling, rotation and queue size; absent
   * when off (`--decision-log-mode off`; the default is every denial on stdout). See src/observe/decision-log-settings.ts for the
   * flags (`--decision-log stdout|file:PATH`, `--decision-log-mode`, …).
   */
  readonly decisionLog?: DecisionLogSettings;
  /**
   * How long stored security events are kept: rows of minutes older than this
   * are deleted every 10 minutes, in batches, off the decision path. 0 keeps
   * them forever. Default 30 days (`--security-event-retention`; env
   * `PORTCULLIS_SECURITY_EVENT_RETENTION`), e.g. `--security-event-retention 7d`;
   * optional like `trustedProxies`, absent is the default.
   */
  readonly securityEventRetentionMs?: number;
}

/** Defaults of the connection age settings, also used when a config built in code leaves them out. */
export const DEFAULT_GRPC_MAX_CONNECTION_AGE_MS = 10 * 60_000;
export const DEFAULT_GRPC_MAX_CONNECTION_AGE_GRACE_MS = 30_000;

/** Flags as the CLI parsed them; `undefined` when not given. */
export interface ServeFlags extends DecisionLogFlags {
  readonly host?: string;
  readonly grpcPort?: string;
  readonly httpPort?: string;
  readonly policies?: string;
  readonly dataDir?: string;
  readonly store?: string;
  readonly logLevel?: string;
  readonly trustedProxy?: readonly string[];
  readonly extAuthzPrefix?: string;
  readonly watchPolicies?: boolean;
  readonly policyExplorer?: boolean;
  readonly tlsCert?: string;
  readonly tlsKey?: string;
  readonly tlsClientCa?: string;
  readonly quotaStore?: string;
  readonly quotaKeyPrefix?: string;
  readonly grpcMaxConnectionAge?: string;
  readonly grpcMaxConnectionAgeGrace?: string;
  readonly workers?: string;
  readonly securityEventRetention?: string;
}

/**
 * Settings read from the environment only, with no flag (a secret does not
 * belong on a command line, where `ps` shows it). The README's "Running it"
 * table lists them after the flags of `serve`; test/cli/config-table.test.ts
 * fails when a `PORTCULLIS_*` variable read anywhere in src/ is in neither.
 */
export const ENVIRONMENT_ONLY_SETTINGS: readonly { readonly env: string; readonly defaultValue: string; readonly description: string }[] = [
  {
    env: "PORTCULLIS_TOKEN_SECRET",
    defaultValue: "`secret.key` in the data folder, written with mode 0600 by the first run",
    description: "server secret the tokens are hashed with (HMAC-SHA-256): at least 32 bytes, hex or base64; losing it invalidates every token",
  },
];

/** A configuration value that cannot be used; the message names the flag and the env variable. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

const LOG_LEVELS: ReadonlySet<string> = new Set(["fatal", "error", "warn", "info", "debug", "trace", "silent"]);

/** Resolves flags and environment into a validated config, or throws {@link ConfigError}. */
export function resolveServeConfig(flags: ServeFlags, env: NodeJS.ProcessEnv = process.env): ServeConfig {
  const logLevel = flags.logLevel ?? env.PORTCULLIS_LOG_LEVEL ?? "info";
  if (!LOG_LEVELS.has(logLevel)) throw new ConfigError(`invalid log level \`${logLevel}\`: expected one of ${[...LOG_LEVELS].join(", ")}`);
  return {
    host: nonEmpty(flags.host ?? env.PORTCULLIS_HOST ?? "127.0.0.1", "--host", "PORTCULLIS_HOST"),
    grpcPort: port(flags.grpcPort ?? env.PORTCULLIS_GRPC_PORT ?? "9191", "--grpc-port", "PORTCULLIS_GRPC_PORT"),
    httpPort: port(flags.httpPort ?? env.PORTCULLIS_HTTP_PORT ?? "8181", "--http-port", "PORTCULLIS_HTTP_PORT"),
    policyDir: nonEmpty(flags.policies ?? env.PORTCULLIS_POLICY_DIR ?? "policies", "--policies", "PORTCULLIS_POLICY_DIR"),
    dataDir: nonEmpty(flags.dataDir ?? env.PORTCULLIS_DATA_DIR ?? "data", "--data-dir", "PORTCULLIS_DATA_DIR"),
    ...storeUrl(flags, env),
    logLevel,
    trustedProxies: trustedProxies(flags.trustedProxy, env.PORTCULLIS_TRUSTED_PROXIES),
    extAuthzPrefix: pathPrefix(flags.extAuthzPrefix ?? env.PORTCULLIS_EXT_AUTHZ_PREFIX ?? "/ext-authz"),
    // why: commander makes `--no-watch-policies` default to true, so only its `false` overrides the environment
    watchPolicies: flags.watchPolicies === false ? false : booleanEnv(env.PORTCULLIS_WATCH_POLICIES, "PORTCULLIS_WATCH_POLICIES", true),
    policyExplorer: flags.policyExplorer === true || booleanEnv(env.PORTCULLIS_POLICY_EXPLORER, "PORTCULLIS_POLICY_EXPLORER", false),
    ...tlsFiles(flags.tlsCert ?? env.PORTCULLIS_TLS_CERT, flags.tlsKey ?? env.PORTCULLIS_TLS_KEY, flags.tlsClientCa ?? env.PORTCULLIS_TLS_CLIENT_CA),
    ...quotaStore(flags.quotaStore ?? env.PORTCULLIS_QUOTA_STORE_URL, flags.quotaKeyPrefix ?? env.PORTCULLIS_QUOTA_KEY_PREFIX),
    grpcMaxConnectionAgeMs: durationSetting(flags.grpcMaxConnectionAge ?? env.PORTCULLIS_GRPC_MAX_CONNECTION_AGE, "--grpc-max-connection-age", "PORTCULLIS_GRPC_MAX_CONNECTION_AGE", DEFAULT_GRPC_MAX_CONNECTION_AGE_MS),
    grpcMaxConnectionAgeGraceMs: durationSetting(
      flags.grpcMaxConnectionAgeGrace ?? env.PORTCULLIS_GRPC_MAX_CONNECTION_AGE_GRACE,
      "--grpc-max-connection-age-grace",
      "PORTCULLIS_GRPC_MAX_CONNECTION_AGE_GRACE",
      DEFAULT_GRPC_MAX_CONNECTION_AGE_GRACE_MS,
    ),
    workers: workers(flags.workers ?? env.PORTCULLIS_WORKERS ?? "1"),
    ...resolveDecisionLogSettings(flags, env),
    securityEventRetentionMs: retention(flags.securityEventRetention ?? env.PORTCULLIS_SECURITY_EVENT_RETENTION),
  };
}

function quotaStore(url: string | undefined, keyPrefix: string | undefined): { quotaStoreUrl?: string; quotaKeyPrefix?: string } {
  const prefix = keyPrefix === undefined || keyPrefix === "" ? {} : { quotaKeyPrefix: keyPrefix };
  if (url === undefined || url.trim() === "") return prefix;
  let parsed: URL | undefined;
  try {
    parsed = new URL(url.trim());
  } catch {
    parsed = undefined;
  }
  if (parsed === undefined || (parsed.protocol !== "redis:" && parsed.protocol !== "rediss:") || parsed.hostname === "") {
    // why: the URL may hold a password, so the message does not repeat it
    throw new ConfigError("invalid --quota-store (PORTCULLIS_QUOTA_STORE_URL): expected a url such as redis://127.0.0.1:6379 or rediss://user:password@host:6380");
  }
  return { quotaStoreUrl: url.trim(), ...prefix };
}

function durationSetting(value: string | undefined, flag: string, envName: string, fallback: number): number {
  if (value === undefined || value.trim() === "") return fallback;
  const ms = parseDuration(value);
  // Beyond setTimeout's range (about 24.8 days) a timer would fire at once.
  if (ms === null || ms > 2 ** 31 - 1) throw new ConfigError(`invalid ${flag} (${envName}) \`${value}\`: expected a duration such as 30s, 10m or 2h, at most 24d (0s: never)`);
  return ms;
}

function retention(value: string | undefined): number {
  if (value === undefined || value.trim() === "") return DEFAULT_SECURITY_EVENT_RETENTION_MS;
  const ms = parseDuration(value.trim());
  // why: a retention under a minute would delete the rows of the minute being counted
  if (ms === null || (ms !== 0 && ms < 60_000)) {
    throw new ConfigError(`invalid --security-event-retention (PORTCULLIS_SECURITY_EVENT_RETENTION) \`${value}\`: expected a duration of at least 1m such as 30d or 12h, or 0s to keep every row`);
  }
  return ms;
}

function workers(value: string): number {
  const trimmed = value.trim();
  if (trimmed === "auto") return availableParallelism();
  const parsed = /^\d{1,3}$/.test(trimmed) ? Number(trimmed) : NaN;
  if (!(parsed >= 1 && parsed <= 256)) throw new ConfigError(`invalid --workers (PORTCULLIS_WORKERS) \`${value}\`: expected a number of processes from 1 to 256, or auto (one per core)`);
  return parsed;
}

function tlsFiles(certFile: string | undefined, keyFile: string | undefined, clientCaFile: string | undefined): { tls?: TlsFiles } {
  const given = (value: string | undefined) => value !== undefined && value.trim() !== "";
  if (!given(certFile) && !given(keyFile)) {
    if (given(clientCaFile)) throw new ConfigError("--tls-client-ca (PORTCULLIS_TLS_CLIENT_CA) needs --tls-cert and --tls-key: client certificates are only asked for over tls");
    return {};
  }
  if (!given(certFile) || !given(keyFile)) throw new ConfigError("--tls-cert (PORTCULLIS_TLS_CERT) and --tls-key (PORTCULLIS_TLS_KEY) go together: give both or neither");
  return { tls: { certFile: certFile!, keyFile: keyFile!, ...(given(clientCaFile) ? { clientCaFile: clientCaFile! } : {}) } };
}

function trustedProxies(fromFlags: readonly string[] | undefined, fromEnv: string | undefined): string[] {
  const entries = fromFlags !== undefined && fromFlags.length > 0 ? fromFlags.flatMap((entry) => entry.split(",")) : (fromEnv ?? "").split(",");
  const trimmed = entries.map((entry) => entry.trim()).filter((entry) => entry !== "");
  for (const entry of trimmed) {
    if (!isTrustedProxyEntry(entry)) {
      throw new ConfigError(`invalid --trusted-proxy (PORTCULLIS_TRUSTED_PROXIES) \`${entry}\`: expected an ip address or a cidr range such as 10.0.0.0/8`);
    }
  }
  return trimmed;
}

function pathPrefix(value: string): string {
  const prefix = value.trim().replace(/\/+$/, "");
  if (!/^\/[A-Za-z0-9._~\-\/]*[A-Za-z0-9._~\-]$/.test(prefix)) {
    throw new ConfigError(`invalid --ext-authz-prefix (PORTCULLIS_EXT_AUTHZ_PREFIX) \`${value}\`: expected a path such as /ext-authz`);
  }
  return prefix;
}

/**
 * The store URL from `--store` or `PORTCULLIS_STORE_URL`, checked to be a
 * PostgreSQL URL; absent when neither is given (SQLite in the data folder).
 */
export function storeUrl(flags: Pick<ServeFlags, "store">, env: NodeJS.ProcessEnv = process.env): { storeUrl?: string } {
  const value = (flags.store ?? env.PORTCULLIS_STORE_URL ?? "").trim();
  if (value === "") return {};
  if (!/^postgres(ql)?:\/\//.test(value)) {
    throw new ConfigError(`invalid --store (PORTCULLIS_STORE_URL): expected a postgres:// url, got \`${value.replace(/\/\/[^@/]*@/, "//***@")}\``);
  }
  return { storeUrl: value };
}

/** Policy folder and data folder, for the commands that only need those. */
export function resolvePaths(flags: Pick<ServeFlags, "policies" | "dataDir">, env: NodeJS.ProcessEnv = process.env): { policyDir: string; dataDir: string } {
  return {
    policyDir: nonEmpty(flags.policies ?? env.PORTCULLIS_POLICY_DIR ?? "policies", "--policies", "PORTCULLIS_POLICY_DIR"),
    dataDir: nonEmpty(flags.dataDir ?? env.PORTCULLIS_DATA_DIR ?? "data", "--data-dir", "PORTCULLIS_DATA_DIR"),
  };
}

function port(value: string, flag: string, envName: string): number {
  const parsed = /^\d{1,5}$/.test(value.trim()) ? Number(value.trim()) : NaN;
  if (!(parsed >= 0 && parsed <= 65535)) throw new ConfigError(`invalid ${flag} (${envName}) \`${value}\`: expected a port number from 0 to 65535`);
  return parsed;
}

function nonEmpty(value: string, flag: string, envName: string): string {
  if (value.trim() === "") throw new ConfigError(`${flag} (${envName}) must not be empty`);
  return value;
}

function booleanEnv(value: string | undefined, envName: string, fallback: boolean): boolean {
  if (value === undefined || value.trim() === "") return fallback;
  const v = value.trim().toLowerCase();
  if (["1", "true", "yes", "on"].includes(v)) return true;
  if (["0", "false", "no", "off"].includes(v)) return false;
  throw new ConfigError(`invalid ${envName} \`${value}\`: expected true or false`);
}
