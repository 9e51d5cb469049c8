/**
 * The Redis {@link QuotaCounter}: the same fixed UTC windows as the in-memory
 * counter, kept in Redis so that every replica charges one count. Each charge
 * is one Lua script run (EVALSHA), which reads, checks and counts both windows
 * atomically: two replicas can never both take the last request of a window.
 */
import { Redis } from "ioredis";
import { chargeResultOf, DAY_MS, MINUTE_MS } from "./charge-report.js";
import type { ChargeResult, QuotaLimits } from "./quota-counter.js";
import { QuotaStoreUnavailableError } from "./quota-store-error.js";

/** Default prefix of every key the counter writes: `portcullis:quota:<token id>`. */
export const DEFAULT_QUOTA_KEY_PREFIX = "portcullis:quota:";
/** Default wait for one charge's answer before the request fails closed. */
export const DEFAULT_QUOTA_COMMAND_TIMEOUT_MS = 250;
/** Default bound on charges waiting for Redis; past it a charge fails at once. */
export const DEFAULT_MAX_PENDING_CHARGES = 10_000;

/**
 * How long a key outlives its last window. Windows come from each replica's
 * clock, so a replica whose clock lags by less than this still finds the
 * counts of the window a replica ahead of it started, rather than a fresh one.
 */
const EXPIRY_SLACK_MS = 5_000;

/**
 * How long a ready connection may go without one answer, while charges time
 * out on it, before it is dropped and made again. A Redis that is paused or cut
 * off without a reset keeps its TCP connection open; dropping it makes charges
 * fail at once (not after a timeout each), `reachable()` false, and the next
 * connection ready only once Redis answers again.
 */
const STALLED_CONNECTION_MS = 1_000;

/** Options of {@link createRedisQuotaCounter}. */
export interface RedisQuotaCounterOptions {
  /** `redis://[user:password@]host[:port][/db]` or `rediss://…` for TLS. */
  readonly url: string;
  /** Prepended to each token id to make its key; default {@link DEFAULT_QUOTA_KEY_PREFIX}. */
  readonly keyPrefix?: string;
  /** Wait for one charge, in ms; default {@link DEFAULT_QUOTA_COMMAND_TIMEOUT_MS}. */
  readonly commandTimeoutMs?: number;
  /** Charges waiting for Redis at most; default {@link DEFAULT_MAX_PENDING_CHARGES}. */
  readonly maxPendingCharges?: number;
  /**
   * Whether charges issued in one event-loop turn go out as one pipeline
   * (ioredis auto-pipelining, one write for many). Default `false`: measured on
   * the bench machine it cost more CPU per charge at 1 in flight (35 against
   * 21 µs; it defers each write by a `setImmediate`) and saved nothing at 8 to
   * 256 in flight, where Node already sends a turn's writes back to back.
   */
  readonly autoPipelining?: boolean;
  /** Told when Redis becomes reachable or stops being so (not on every failed charge or reconnect attempt). */
  readonly onReachableChange?: (reachable: boolean, error?: Error) => void;
}

/** The Redis counter, with its connection's state for `/readyz`. */
export interface RedisQuotaCounter {
  /**
   * Counts one request for `key` like the in-memory counter does. Rejects with
   * {@link QuotaStoreUnavailableError} when Redis cannot answer within the
   * command timeout; nothing is retried, so a charge is counted at most once.
   */
  charge(key: string, limits: QuotaLimits, nowMs: number): Promise<ChargeResult>;
  /** Whether the connection to Redis is up and ready now. */
  reachable(): boolean;
  /** Resolves once Redis is ready (`true`) or after `timeoutMs` (`false`). */
  waitReachable(timeoutMs: number): Promise<boolean>;
  /** Closes the connection; charges after it fail. */
  close(): Promise<void>;
}

// KEYS[1]: the token's hash {ms, mc, ds, dc}: minute start and count, day start and count.
// ARGV: limit per minute (0: none), limit per day (0: none), the decision's clock in ms.
// A window restarts only when the current one starts after the stored one (a
// clock that steps back never reopens a window); a refused charge writes nothing.
// Returns {allowed 0|1, minute start, minute count, day start, day count}.
const CHARGE_SCRIPT = `
local lm = tonumber(ARGV[1])
local ld = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local ms = now - now % ${MINUTE_MS}
local ds = now - now % ${DAY_MS}
local mc = 0
local dc = 0
local v = redis.call('HMGET', KEYS[1], 'ms', 'mc', 'ds', 'dc')
if v[1] then
  local sms = tonumber(v[1])
  local sds = tonumber(v[3])
  if ms <= sms then ms = sms; mc = tonumber(v[2]) end
  if ds <= sds then ds = sds; dc = tonumber(v[4]) end
end
if (lm > 0 and mc >= lm) or (ld > 0 and dc >= ld) then
  return {0, ms, mc, ds, dc}
end
if lm > 0 then mc = mc + 1 end
if ld > 0 then dc = dc + 1 end
redis.call('HSET', KEYS[1], 'ms', string.format('%.0f', ms), 'mc', mc, 'ds', string.format('%.0f', ds), 'dc', dc)
local endMs = 0
if lm > 0 then endMs = ms + ${MINUTE_MS} end
if ld > 0 and ds + ${DAY_MS} > endMs then endMs = ds + ${DAY_MS} end
redis.call('PEXPIRE', KEYS[1], string.format('%.0f', math.max(1, endMs - now) + ${EXPIRY_SLACK_MS}))
return {1, ms, mc, ds, dc}
`;

type ChargeReply = [number, number, number, number, number];
type ScriptedRedis = Redis & { portcullisQuotaCharge(key: string, limitPerMinute: number, limitPerDay: number, nowMs: number): Promise<ChargeReply> };

/**
 * Connects to Redis and returns the counter. It does not wait for the
 * connection: charges fail with {@link QuotaStoreUnavailableError} until it is
 * ready (see {@link RedisQuotaCounter.waitReachable}).
 *
 * Failing closed without piling up: no offline queue (a charge while Redis is
 * down fails at once), a command timeout, no retry of a charge whose answer was
 * lost (it may have counted; counting twice only errs towards refusing), and a
 * bound on charges in flight. A connection that stops answering is dropped; it
 * reconnects by itself, attempts at most a second apart. The script is sent once per connection, then run
 * by its SHA1, and sent again if Redis answers NOSCRIPT (after a restart or
 * SCRIPT FLUSH).
 *
 * @example
 * const counter = createRedisQuotaCounter({ url: "redis://127.0.0.1:6379" });
 * await counter.charge("tok_2Xk…", { limitPerMinute: 60, limitPerDay: 10_000 }, Date.now());
 */
export function createRedisQuotaCounter(options: RedisQuotaCounterOptions): RedisQuotaCounter {
  const keyPrefix = options.keyPrefix ?? DEFAULT_QUOTA_KEY_PREFIX;
  const commandTimeoutMs = options.commandTimeoutMs ?? DEFAULT_QUOTA_COMMAND_TIMEOUT_MS;
  const maxPending = options.maxPendingCharges ?? DEFAULT_MAX_PENDING_CHARGES;
  const redis = new Redis(options.url, {
    enableOfflineQueue: false,
    enableAutoPipelining: options.autoPipelining ?? false,
    commandTimeout: commandTimeoutMs,
    maxRetriesPerRequest: 0,
    connectTimeout: Math.max(1_000, commandTimeoutMs),
    retryStrategy: (attempt) => Math.min(100 * attempt, 1_000),
    keepAlive: 10_000,
  }) as ScriptedRedis;
  redis.defineCommand("portcullisQuotaCharge", { numberOfKeys: 1, lua: CHARGE_SCRIPT });

  let reachable = false;
  let lastError: Error | undefined;
  // why: ioredis emits `error` on every failed reconnect; the owner hears of transitions only
  redis.on("error", (error: Error) => {
    lastError = error;
  });
  let lastAnswerAtMs = performance.now();
  redis.on("ready", () => {
    lastAnswerAtMs = performance.now();
    reachable = true;
    options.onReachableChange?.(true);
  });
  const markUnreachable = () => {
    if (!reachable) return;
    reachable = false;
    options.onReachableChange?.(false, lastError);
  };
  redis.on("close", markUnreachable);

  let pending = 0;
  const unavailable = (message: string, cause?: unknown) =>
    Promise.reject(new QuotaStoreUnavailableError(`the quota store cannot count this request: ${message}`, cause === undefined ? undefined : { cause }));

  return {
    charge(key, limits, nowMs) {
      const { limitPerMinute, limitPerDay } = limits;
      // INVARIANT: compileQuota refuses a quota without a limit.
      if (limitPerMinute === null && limitPerDay === null) throw new Error("a quota needs a per-minute or a per-day limit");
      if (!reachable || redis.status !== "ready") return unavailable(`redis is ${redis.status === "end" ? "closed" : "not connected"}`);
      if (pending >= maxPending) return unavailable(`${pending} charges are already waiting for redis`);
      pending++;
      return redis.portcullisQuotaCharge(keyPrefix + key, limitPerMinute ?? 0, limitPerDay ?? 0, nowMs).then(
        (reply) => {
          pending--;
          lastAnswerAtMs = performance.now();
          const [allowed, minuteStartMs, minuteCount, dayStartMs, dayCount] = reply;
          return chargeResultOf(allowed === 1, limits, { minuteStartMs, minuteCount, dayStartMs, dayCount }, nowMs);
        },
        (error: unknown) => {
          pending--;
          if (error instanceof Error && error.message === "Command timed out" && redis.status === "ready" && performance.now() - lastAnswerAtMs > STALLED_CONNECTION_MS) {
            lastError = error;
            markUnreachable();
            redis.disconnect(true);
          }
          return unavailable(error instanceof Error ? error.message.toLowerCase() : String(error), error);
        },
      );
    },
    reachable: () => reachable,
    waitReachable(timeoutMs) {
      if (reachable) return Promise.resolve(true);
      return new Promise((resolve) => {
        const done = (value: boolean) => {
          clearTimeout(timer);
          redis.off("ready", onReady);
          resolve(value);
        };
        const onReady = () => done(true);
        const timer = setTimeout(() => done(false), timeoutMs);
        redis.on("ready", onReady);
      });
    },
    async close() {
      reachable = false;
      redis.disconnect();
    },
  };
}
