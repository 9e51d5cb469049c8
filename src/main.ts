/**
 * Composition root: config, policy set, store and servers. The only module that
 * wires everything together; everything else receives what it needs.
 */
import cluster from "node:cluster";
import type { Logger } from "pino";
import { DEFAULT_GRPC_MAX_CONNECTION_AGE_GRACE_MS, DEFAULT_GRPC_MAX_CONNECTION_AGE_MS, type ServeConfig } from "./config/config.js";
import { loadPolicySet } from "./policy/load.js";
import { PolicyLoadError } from "./policy/errors.js";
import type { CompiledPolicySet } from "./policy/types.js";
import { watchPolicyFolder } from "./policy/watch-policy-folder.js";
import { createAuthorizer, type Authorizer } from "./service/authorize.js";
import { createDecisionExplainer } from "./service/explain-decision.js";
import { createServerMetrics } from "./service/metrics.js";
import { installFastTextEncoding } from "./transport/text-encoding.js";
import { createTokenCache, type TokenCache } from "./service/token-cache.js";
import { createDecisionReads } from "./service/decision-reads.js";
import { createTokenService } from "./transport/token-service.js";
import { createUsageRecorder, type UsageRecorder } from "./service/usage-recorder.js";
import { createTokenLifecycle, type TokenLifecycle } from "./lifecycle/token-lifecycle.js";
import { openStore } from "./store/open-store.js";
import type { SecurityEventLog } from "./store/store-interfaces.js";
import { StoreError } from "./store/store-error.js";
import { watchStoreFile } from "./service/watch-store-file.js";
import { createGrpcServer } from "./transport/grpc.js";
import { Health } from "./transport/health.js";
import { closeHttp, createHttpServer, listenHttp } from "./transport/http.js";
import { DEFAULT_EXT_AUTHZ_PREFIX } from "./transport/ext-authz-http.js";
import { buildTrustedProxyMatcher } from "./transport/trusted-proxies.js";
import { checkPortsFree, listenErrorOf, servePorts } from "./config/check-ports.js";
import { createPolicyExplorerHandler } from "./transport/policy-explorer-http.js";
import { loadTlsFiles, watchTlsFiles } from "./transport/tls-files.js";
import { createRedisQuotaCounter, type RedisQuotaCounter } from "./quota/redis-quota-counter.js";
import { createJwtCredentials } from "./jwt/jwt-credentials.js";
import { openKeyRing, type KeyRing } from "./jwt/key-ring.js";
import { openSqliteSigningKeyStore } from "./jwt/sqlite-signing-key-store.js";
import { createTokenExchange } from "./jwt/token-exchange.js";
import { createMemoryQuotaCounter } from "./quota/memory-quota-counter.js";
import { createTokenExchangeHttpHandler } from "./transport/token-exchange-http.js";
import { openDecisionObservers } from "./observe/open-observers.js";
import { observeDecisions, type Transport } from "./observe/observe-decisions.js";
import type { SecurityEventRecorder } from "./observe/security-events.js";
import { DEFAULT_SECURITY_EVENT_RETENTION_MS, startSecurityEventPruner, type SecurityEventPruner } from "./observe/security-event-retention.js";
import { createWebhookDeliverer, type WebhookDeliverer } from "./webhooks/webhook-deliverer.js";

/** A started server: its bound ports and the way to stop it. */
export interface RunningServer {
  readonly grpcPort: number;
  readonly httpPort: number;
  readonly authorize: Authorizer;
  /** The token lifecycle over the server's store: what the token API and the CLI run. */
  readonly store: TokenLifecycle;
  readonly tokenCache: TokenCache;
  /** JWT signing keys in memory (src/jwt/key-ring.ts). */
  readonly keyRing: KeyRing;
  /** Last-used stamps waiting for their batch; `flush()` writes them now. */
  readonly usage: UsageRecorder;
  /** Denials counted as security events, waiting for their batch; `flush()` writes them to the store now. */
  readonly securityEvents: SecurityEventRecorder;
  /** Deletes stored security events past their retention on a timer; `null` when the retention is 0 (keep every row). */
  readonly securityEventPruner: SecurityEventPruner | null;
  /** The webhook deliverer working the store's outbox. */
  readonly webhooks: WebhookDeliverer;
  /** The policy set in force. */
  policy(): CompiledPolicySet;
  /** Reloads the policy folder; on any error the set in force stays and the errors are returned. */
  reloadPolicy(): { ok: true } | { ok: false; error: PolicyLoadError };
  /** Stops both servers (in-flight calls get `graceMs` to finish) and closes the store. */
  close(graceMs?: number): Promise<void>;
}

/**
 * Loads policies, opens the store and starts both servers. Throws
 * {@link PolicyLoadError} or the store's error before binding anything, so a
 * bad start never half-serves.
 */
export async function startServer(config: ServeConfig, log: Logger): Promise<RunningServer> {
  installFastTextEncoding();
  // A busy port is refused before the policy set and the store are loaded, naming the flag to change.
  // why: in a worker of `serve --workers` the ports are the primary's, bound already (it checked them before forking)
  if (!cluster.isWorker) await checkPortsFree(config.host, servePorts(config));
  const loaded = loadPolicySet(config.policyDir);
  if (!loaded.ok) throw new PolicyLoadError(loaded.errors);
  let policy = loaded.policy;
  log.info({ policySet: policy.name, revision: policy.revision.slice(0, 12), files: loaded.files.length }, `loaded policy set \`${policy.name}\` from ${config.policyDir}`);

  // Read before the store opens, so that unusable TLS files refuse the start like a bad policy does.
  const tls = config.tls === undefined ? undefined : loadTlsFiles(config.tls);
  // why: busy timeout 0, so no write on the event loop ever waits for another process's lock (see SqliteStoreOptions)
  const opened = await openStore({
    storeUrl: config.storeUrl,
    dataDir: config.dataDir,
    busyTimeoutMs: 0,
    onCreated: ({ databaseFile, secretFile }) =>
      log.warn({ databaseFile, secretFile }, `created a new token store in ${config.dataDir}${secretFile === null ? "" : " with a new server secret (tokens verify only with the secret they were hashed with: back it up)"}`),
    changeFeed: {
      onConnectionEvent: (event) =>
        event.kind === "lost"
          ? log.warn({ err: event.error }, "lost the PostgreSQL change feed; reconnecting (decisions that need a token answer unavailable once it has been away for 1 s)")
          : event.reconnect && log.info("the PostgreSQL change feed is back; caches dropped"),
    },
    onIdleError: (error) => log.warn({ err: error }, "a pooled PostgreSQL connection failed"),
  });
  const store = opened.store;
  if (opened.kind === "postgres") log.info({ store: opened.description, schema: opened.store.migration }, `token store: PostgreSQL at ${opened.description}`);
  const lifecycle = createTokenLifecycle({ store, secret: opened.secret, now: Date.now });
  let reads: Awaited<ReturnType<typeof createDecisionReads>>;
  try {
    reads = await createDecisionReads(opened, lifecycle, { onRefreshError: (error) => log.warn({ err: error }, "cannot reread tenant and workspace state from PostgreSQL; retrying") });
  } catch (error) {
    await store.close();
    throw error;
  }
  const { tokenCache, tenantState } = reads;
  // JWTs are judged as the token they were exchanged for, read by id through a cache of its own with the same 1 s bound.
  const tokensById = createTokenCache({ find: (id) => lifecycle.get(id) });
  store.onTokensChanged((tokenIds) => tokensById.evictTokenIds(tokenIds));
  // why: on PostgreSQL, what was cached while the change feed was away may be stale, and a blind replica decides nothing
  if (opened.kind === "postgres") opened.store.onFeedReset(() => tokensById.clear());
  const jwtTokens = { find: (id: string) => reads.guard(() => tokensById.find(id)) };
  // why: on PostgreSQL the keys are the fleet's, so a JWT signed by one replica verifies on every other
  const signingKeys = opened.kind === "postgres" ? opened.store.signingKeys : openSqliteSigningKeyStore(config.dataDir);
  const keyRing = await openKeyRing({
    store: signingKeys,
    secret: opened.secret,
    now: Date.now,
    onError: (error) => log.warn({ err: error }, "jwt signing keys not reloaded; the keys in memory stay"),
  }).catch((error: unknown) => {
    signingKeys.close();
    reads.close();
    void store.close();
    throw error;
  });
  const jwt = createJwtCredentials({ ring: keyRing, tokensById: jwtTokens });
  const metrics = createServerMetrics(cluster.isWorker && cluster.worker !== undefined ? { worker: { id: cluster.worker.id, pid: process.pid } } : {});
  metrics.policyLoaded(policy);
  const usage = createUsageRecorder(lifecycle, { onError: (error) => log.warn({ err: error }, "last-used stamps not written; retrying with the next batch") });
  // why: a blind replica refuses every token decision; one log line a second says so, not one per request
  let lastRefusalLoggedAt = 0;
  const quotaStore = config.quotaStoreUrl === undefined ? undefined : await openQuotaStore(config.quotaStoreUrl, config.quotaKeyPrefix, log);
  metrics.watchTokenCache(() => tokenCache.stats());
  const observers = openDecisionObservers(config.decisionLog, { policy: () => policy, metrics, log, securityEvents: store.securityEvents });
  const securityEventPruner = openSecurityEventPruner(config, store.securityEvents, log);
  if (securityEventPruner !== null) metrics.watchSecurityEventPruning(() => securityEventPruner.stats());
  // why: off the decision path: decisions only count denials in memory; the deliverer works the store's outbox on its own timer
  let lastWebhookErrorLoggedAt = -Infinity;
  const webhooks = createWebhookDeliverer({
    outbox: store.webhooks,
    endpoints: () => policy.webhooks,
    ...config.webhookDelivery,
    onError: (error) => {
      const nowMs = Date.now();
      if (nowMs - lastWebhookErrorLoggedAt < 60_000) return;
      lastWebhookErrorLoggedAt = nowMs;
      log.warn({ err: error }, "webhook outbox not worked this round; retrying (this warning repeats at most once a minute)");
    },
  });
  metrics.watchWebhooks(() => webhooks.stats());
  if (policy.webhooks.length > 0) log.info({ webhooks: policy.webhooks.map((e) => e.id) }, `webhooks: ${policy.webhooks.length} endpoint(s)`);
  const authorize = createAuthorizer({
    policy: () => policy,
    tokens: reads.tokens,
    // why: suspensions made through `store` are seen by the next decision; the CLI's within 1 s
    tenantState,
    now: Date.now,
    onError: (error, requestId) => {
      if (error instanceof StoreError && error.kind === "unavailable") {
        const nowMs = Date.now();
        if (nowMs - lastRefusalLoggedAt < 1_000) return;
        lastRefusalLoggedAt = nowMs;
      }
      log.error({ err: error, requestId }, "decision failed; answered unavailable");
    },
    usage,
    ...(quotaStore === undefined ? {} : { quota: quotaStore }),
    jwt,
  });
  const tokenExchange = createTokenExchange({
    policy: () => policy,
    // why: the same guarded reads as decisions, so a blind replica exchanges nothing
    tokens: reads.tokens,
    tenantState,
    ring: keyRing,
    quota: createMemoryQuotaCounter(),
    now: Date.now,
    onError: (error, requestId) => log.error({ err: error, requestId }, "token exchange failed; answered unavailable"),
    observe: (decision) => decision.identity !== null && usage.record(decision.identity.tokenId, Date.now()),
  });
  // why: one wrapper per transport, so that metrics, the decision log and spans say who asked
  const authorizeAs = (transport: Transport): Authorizer => observeDecisions(authorize, transport, observers);
  const tokenService = createTokenService({ lifecycle, policy: () => policy, authorize: authorizeAs("token_service"), now: Date.now });
  // why: explanations name controls and scopes, so only callers who may manage tokens get them
  const explain = createDecisionExplainer({ policy: () => policy, tokens: reads.tokens, tenantState, now: Date.now }, (call) => tokenService.mayManageTokens(call));

  const health = new Health({ "": "NOT_SERVING", [`portcullis.v1.AuthorizationService`]: "NOT_SERVING" });
  // Parsed once: every request's forwarding headers are judged against these.
  const trustedProxies = buildTrustedProxyMatcher(config.trustedProxies ?? []);
  const onTransportError = (error: unknown, requestId: string) => log.error({ err: error, requestId }, "ext_authz request failed; answered unavailable");
  const grpcServer = createGrpcServer({
    authorize: authorizeAs("grpc"),
    health,
    envoy: { trustedProxies, onError: onTransportError, authorize: authorizeAs("envoy_grpc") },
    tokenService,
    onError: (error, path) => log.error({ err: error, path }, "gRPC call failed; answered INTERNAL"),
    explain,
    tokenExchange,
    ...(tls === undefined ? {} : { tls }),
    ...maxConnectionAgeOf(config),
  });
  metrics.countGrpcConnections(() => grpcServer.connectionsAccepted());
  let ready = false;
  const httpServer = createHttpServer({
    authorize: authorizeAs("connect"),
    ready: () => ready && store.available && reads.isLive(),
    readinessNotes: () => [
      `policy revision: ${policy.revision}`,
      // why: only tokens with a quota need Redis, so its absence is reported, not made unready (docs/controls/quota.md)
      ...(quotaStore === undefined ? [] : [quotaStore.reachable() ? "quota store: reachable" : "quota store: unreachable (requests with a quota answer 503 unavailable)"]),
    ],
    extAuthz: {
      prefix: config.extAuthzPrefix ?? DEFAULT_EXT_AUTHZ_PREFIX,
      trustedProxies,
      onError: onTransportError,
      authorizeAs: (mode) => authorizeAs(mode === "envoy" ? "envoy_http" : mode),
    },
    tokenService,
    metrics: () => metrics.render(),
    explain,
    ...(config.policyExplorer === true ? { policyExplorer: createPolicyExplorerHandler(() => policy) } : {}),
    tokenExchange: { exchange: tokenExchange, http: createTokenExchangeHttpHandler({ exchange: tokenExchange, ring: keyRing, trustedProxies, now: Date.now }) },
    ...(tls === undefined ? {} : { tls }),
  });
  const stopWatchingTls =
    config.tls === undefined
      ? () => undefined
      : watchTlsFiles(
          config.tls,
          (options) => {
            grpcServer.setSecureContext(options);
            if ("setSecureContext" in httpServer) httpServer.setSecureContext(options);
            log.info({ cert: config.tls?.certFile }, "tls certificate reloaded; new connections use it");
          },
          (error) => log.error({ err: error }, "tls files changed but do not load; the previous certificate stays in force"),
        );

  let grpcPort: number;
  let httpPort: number;
  const [grpcEntry, httpEntry] = servePorts(config);
  let binding = grpcEntry!;
  try {
    grpcPort = await grpcServer.listen(config.host, config.grpcPort);
    binding = httpEntry!;
    httpPort = await listenHttp(httpServer, config.host, config.httpPort);
  } catch (error) {
    stopWatchingTls();
    await grpcServer.close(0);
    httpServer.close();
    await usage.close();
    reads.close();
    keyRing.close();
    signingKeys.close();
    await store.close();
    await quotaStore?.close();
    await observers.close();
    await securityEventPruner?.close();
    await webhooks.close();
    throw listenErrorOf(error, config.host, binding);
  }
  ready = true;
  const stopWatchingStore = opened.kind === "postgres" ? watchFleetLiveness() : watchStoreFile(opened.store, {
    onReopened: () => {
      tokenCache.clear();
      tokensById.clear();
      log.warn(`the token store file was replaced; reading the new one`);
    },
    onMissing: () => {
      // why: cached records would keep allowing what the missing store can no longer confirm
      tokenCache.clear();
      tokensById.clear();
      health.setStatus("", "NOT_SERVING");
      log.error(`the token store file is missing or unreadable; every decision is unavailable until it is back`);
    },
    onBack: () => health.setStatus("", "SERVING"),
  });
  health.setStatus("", "SERVING");
  health.setStatus("portcullis.v1.AuthorizationService", "SERVING");
  health.setStatus("envoy.service.auth.v3.Authorization", "SERVING");
  health.setStatus("portcullis.v1.TokenService", "SERVING");
  log.info({ grpc: `${config.host}:${grpcPort}`, http: `${config.host}:${httpPort}` }, `listening: grpc on ${config.host}:${grpcPort}, http on ${config.host}:${httpPort}`);

  // why: a changed file is picked up like SIGHUP does, but only a set that stayed unchanged while it was read
  const watcher =
    config.watchPolicies === false
      ? undefined
      : watchPolicyFolder(config.policyDir, {
          onSettled: () => {
            const next = loadPolicySet(config.policyDir);
            if (next.ok && next.policy.revision === policy.revision) return null;
            return () => void applyPolicy(next);
          },
          onError: (error) => log.warn({ err: error }, `cannot watch ${config.policyDir}; reload with SIGHUP`),
        });

  return {
    grpcPort,
    httpPort,
    authorize,
    store: lifecycle,
    tokenCache,
    keyRing,
    usage,
    // INVARIANT: openDecisionObservers is given the store's security event log, so it always builds a recorder.
    securityEvents: observers.securityEvents!,
    securityEventPruner,
    webhooks,
    policy: () => policy,
    reloadPolicy() {
      return applyPolicy(loadPolicySet(config.policyDir));
    },
    async close(graceMs = 5_000) {
      ready = false;
      watcher?.close();
      stopWatchingStore();
      health.setStatus("", "NOT_SERVING");
      stopWatchingTls();
      await Promise.all([grpcServer.close(graceMs), closeHttp(httpServer, graceMs)]);
      // Stamps of the last decisions are written before the store closes.
      await usage.close();
      reads.close();
      keyRing.close();
      signingKeys.close();
      // Records and security event counts of the last decisions are written before the store closes.
      await observers.close();
      await securityEventPruner?.close();
      // Attempts in flight finish (each bounded by its timeout); whatever is pending stays in the outbox for the next start.
      await webhooks.close();
      await store.close();
      await quotaStore?.close();
    },
  };

  /**
   * PostgreSQL: reports the replica not serving over gRPC health while it is
   * blind (`/readyz` asks {@link DecisionReads.isLive} itself), checked ten
   * times a second, and says so in the log once per change.
   */
  function watchFleetLiveness(): () => void {
    let live = true;
    const timer = setInterval(() => {
      if (reads.isLive() === live) return;
      live = !live;
      health.setStatus("", live ? "SERVING" : "NOT_SERVING");
      if (live) log.info("PostgreSQL changes are confirmed again; deciding");
      else log.error("PostgreSQL changes cannot be confirmed for over 1 s; every decision that needs a token is unavailable until they are");
    }, 100);
    timer.unref();
    return () => clearInterval(timer);
  }

  /** Puts a loaded set in force, or keeps the one in force when it did not load. */
  function applyPolicy(next: ReturnType<typeof loadPolicySet>): { ok: true } | { ok: false; error: PolicyLoadError } {
    if (!next.ok) {
      const error = new PolicyLoadError(next.errors);
      log.error({ errors: next.errors }, `policy reload refused; keeping revision ${policy.revision.slice(0, 12)}`);
      metrics.policyReload("refused");
      return { ok: false, error };
    }
    policy = next.policy;
    tokenCache.clear();
    tokensById.clear();
    jwt.clear();
    metrics.policyReload("ok");
    metrics.policyLoaded(policy);
    log.info({ revision: policy.revision.slice(0, 12) }, `reloaded policy set \`${policy.name}\``);
    return { ok: true };
  }
}

/**
 * Starts deleting stored security events past the configured retention, or
 * nothing when it is 0. Failures are logged at most once an hour: a store
 * that is away is reported by its own warnings already.
 */
function openSecurityEventPruner(config: ServeConfig, securityEvents: SecurityEventLog, log: Logger): SecurityEventPruner | null {
  const retentionMs = config.securityEventRetentionMs ?? DEFAULT_SECURITY_EVENT_RETENTION_MS;
  if (retentionMs === 0) return null;
  let lastWarnedMs = -Infinity;
  return startSecurityEventPruner({
    log: securityEvents,
    retentionMs,
    now: Date.now,
    onError: (error) => {
      const nowMs = Date.now();
      if (nowMs - lastWarnedMs < 3_600_000) return;
      lastWarnedMs = nowMs;
      log.warn({ err: error }, "security events past their retention not deleted; retrying in 10 minutes (this warning repeats at most once an hour)");
    },
  });
}

/**
 * Connects the Redis quota store and waits briefly for it, so that a start
 * beside a healthy Redis does not answer its first quota requests with 503;
 * an unreachable one does not stop the start (it is retried in the background).
 */
async function openQuotaStore(url: string, keyPrefix: string | undefined, log: Logger): Promise<RedisQuotaCounter> {
  // why: the URL may carry a password; the log names only where it points
  const where = redisLocation(url);
  const counter = createRedisQuotaCounter({
    url,
    ...(keyPrefix === undefined ? {} : { keyPrefix }),
    onReachableChange: (reachable, error) => {
      if (reachable) log.info({ quotaStore: where }, `quota store ${where} reachable`);
      else log.error({ quotaStore: where, err: error }, `quota store ${where} unreachable; requests with a quota answer 503 unavailable until it is back`);
    },
  });
  if (!(await counter.waitReachable(2_000))) log.error({ quotaStore: where }, `quota store ${where} not reachable at start; requests with a quota answer 503 unavailable until it is`);
  return counter;
}

function redisLocation(url: string): string {
  const parsed = new URL(url);
  return `${parsed.protocol}//${parsed.host}${parsed.pathname === "/" ? "" : parsed.pathname}`;
}

/** The gRPC connection age as configured; 0 never retires a connection. */
function maxConnectionAgeOf(config: ServeConfig): { maxConnectionAge?: { ageMs: number; graceMs: number } } {
  const ageMs = config.grpcMaxConnectionAgeMs ?? DEFAULT_GRPC_MAX_CONNECTION_AGE_MS;
  if (ageMs === 0) return {};
  return { maxConnectionAge: { ageMs, graceMs: config.grpcMaxConnectionAgeGraceMs ?? DEFAULT_GRPC_MAX_CONNECTION_AGE_GRACE_MS } };
}
