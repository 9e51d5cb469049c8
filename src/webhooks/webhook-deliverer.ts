/**
 * The webhook deliverer: runs in the server beside the decision path, never
 * on it. Each round it fans waiting events out into deliveries (one per
 * subscribed endpoint, the outbox bounded), claims due deliveries under a
 * lease, POSTs each signed, and records the outcome: a 2xx is delivered,
 * anything else (a status, a timeout, a refused connection) is retried with
 * exponential backoff and jitter until it is given up. Everything it knows
 * lives in the store, so a restart loses nothing (at-least-once delivery).
 */
import { randomUUID } from "node:crypto";
import type { CompiledWebhookEndpoint } from "../policy/types.js";
import type { WebhookDelivery, WebhookOutbox } from "../store/store-interfaces.js";
import { DEFAULT_WEBHOOK_RETRY, givesUp, nextRetryDelayMs, type WebhookRetrySettings } from "./backoff.js";
import { postWebhook, type PostOutcome } from "./post-webhook.js";
import { SIGNATURE_HEADER, signWebhook } from "./sign-webhook.js";

/** Settings of {@link createWebhookDeliverer}; every duration in ms. */
export interface WebhookDelivererOptions {
  readonly outbox: WebhookOutbox;
  /** The endpoints in force (the policy set's); read each round, so a reload applies at the next one. */
  readonly endpoints: () => readonly CompiledWebhookEndpoint[];
  readonly now?: () => number;
  /** Pause between rounds when there was nothing to do. Default 1,000. */
  readonly pollIntervalMs?: number;
  /** Bound on one attempt: connect, send and answer. Default 5,000. */
  readonly timeoutMs?: number;
  /** Attempts in flight at once, over all endpoints. Default 8. */
  readonly concurrency?: number;
  /** Pending deliveries the outbox holds at most; deliveries past it are dropped and counted. Default 10,000. */
  readonly capacity?: number;
  /** How long a claimed delivery is reserved to this process; after a crash another replica (or the restart) tries it once it ends. Default `timeoutMs` + 10,000. */
  readonly leaseMs?: number;
  /** Backoff and giving up; see {@link WebhookRetrySettings}. */
  readonly retry?: Partial<WebhookRetrySettings>;
  /** How long delivered and failed deliveries stay listed. Default 7 days. */
  readonly retentionMs?: number;
  /** Told when the store refuses a round (it is tried again next round). */
  readonly onError?: (error: unknown) => void;
  /** A draw in [0, 1) for jitter. Default `Math.random`. */
  readonly random?: () => number;
}

/** Counters since start, for metrics and tests. */
export interface WebhookDelivererStats {
  readonly delivered: number;
  /** Attempts that failed (each retry or give-up counts one). */
  readonly failedAttempts: number;
  /** Deliveries given up (attempts or age exhausted). */
  readonly givenUp: number;
  /** Deliveries not created because the outbox was full. */
  readonly dropped: number;
  /** Pending deliveries in the outbox at the last round. */
  readonly pending: number;
  /** Events waiting to be fanned out at the last round. */
  readonly waitingEvents: number;
  readonly inFlight: number;
}

/** A running deliverer, from {@link createWebhookDeliverer}. */
export interface WebhookDeliverer {
  stats(): WebhookDelivererStats;
  /** Runs one round now (fan out, claim, start attempts) and waits for its attempts; for tests and shutdown. */
  runOnce(): Promise<void>;
  /** Stops the rounds and waits for the attempts in flight (each bounded by `timeoutMs`). */
  close(): Promise<void>;
}

const SWEEP_INTERVAL_MS = 60_000;
const FAN_OUT_BATCH = 500;

/** Starts the rounds; the timer does not keep the process alive. */
export function createWebhookDeliverer(options: WebhookDelivererOptions): WebhookDeliverer {
  const now = options.now ?? Date.now;
  const pollIntervalMs = options.pollIntervalMs ?? 1_000;
  const timeoutMs = options.timeoutMs ?? 5_000;
  const concurrency = options.concurrency ?? 8;
  const capacity = options.capacity ?? 10_000;
  const leaseMs = options.leaseMs ?? timeoutMs + 10_000;
  const retry: WebhookRetrySettings = { ...DEFAULT_WEBHOOK_RETRY, ...options.retry };
  const retentionMs = options.retentionMs ?? 7 * 86_400_000;
  const random = options.random ?? Math.random;
  // why: a lease names its holder, so a late answer after the lease passed to another holder changes nothing
  const leasePrefix = randomUUID();
  let leaseSeq = 0;
  const inFlight = new Set<Promise<void>>();
  let delivered = 0;
  let failedAttempts = 0;
  let givenUp = 0;
  let dropped = 0;
  let pending = 0;
  let waitingEvents = 0;
  let lastSweepMs = -Infinity;
  let closed = false;
  let timer: NodeJS.Timeout | null = null;
  let running: Promise<boolean> | null = null;

  const attempt = async (delivery: WebhookDelivery, endpoint: CompiledWebhookEndpoint, leaseId: string): Promise<void> => {
    const timestampSeconds = Math.floor(now() / 1000);
    const outcome: PostOutcome = await postWebhook(
      endpoint.url,
      {
        "user-agent": "portcullis-webhooks",
        [SIGNATURE_HEADER]: signWebhook(endpoint.secret, timestampSeconds, delivery.body),
        "idempotency-key": delivery.eventId,
        "portcullis-event-id": delivery.eventId,
        "portcullis-event-type": delivery.type,
        "portcullis-delivery-attempt": String(delivery.attempts + 1),
      },
      delivery.body,
      timeoutMs,
    );
    const atMs = now();
    if (outcome.ok) {
      delivered++;
      await options.outbox.complete(delivery.eventId, delivery.endpointId, leaseId, { kind: "delivered", atMs });
      return;
    }
    failedAttempts++;
    const attempts = delivery.attempts + 1;
    if (givesUp(attempts, delivery.createdAtMs, atMs, retry)) {
      givenUp++;
      await options.outbox.complete(delivery.eventId, delivery.endpointId, leaseId, { kind: "failed", atMs, error: `${outcome.error} (gave up after ${attempts} attempts)` });
    } else {
      await options.outbox.complete(delivery.eventId, delivery.endpointId, leaseId, { kind: "retry", atMs, nextAttemptAtMs: atMs + nextRetryDelayMs(attempts, retry, random()), error: outcome.error });
    }
  };

  /** One round; resolves `true` when it filled every free slot (more may be due at once). */
  const round = async (): Promise<boolean> => {
    const endpoints = options.endpoints();
    const nowMs = now();
    const fan = await options.outbox.fanOut(endpoints, { nowMs, capacity, limit: FAN_OUT_BATCH });
    dropped += fan.dropped;
    if (nowMs - lastSweepMs >= SWEEP_INTERVAL_MS) {
      lastSweepMs = nowMs;
      givenUp += await options.outbox.sweep({ nowMs, createdBeforeMs: nowMs - retry.maxAgeMs, finishedBeforeMs: nowMs - retentionMs });
    }
    const free = concurrency - inFlight.size;
    let claimed = 0;
    if (free > 0 && endpoints.length > 0) {
      const leaseId = `${leasePrefix}:${++leaseSeq}`;
      const due = await options.outbox.claim({ endpointIds: endpoints.map((e) => e.id), nowMs, leaseUntilMs: nowMs + leaseMs, leaseId, limit: free });
      claimed = due.length;
      const byId = new Map(endpoints.map((e) => [e.id, e]));
      for (const delivery of due) {
        const endpoint = byId.get(delivery.endpointId);
        // INVARIANT: claim returned only deliveries of the endpoint ids it was given
        if (endpoint === undefined) continue;
        const work: Promise<void> = attempt(delivery, endpoint, leaseId)
          .catch((error: unknown) => options.onError?.(error))
          .finally(() => {
            inFlight.delete(work);
            // why: a freed slot may have due work behind it; look again soon rather than a full interval later
            schedule(0);
          });
        inFlight.add(work);
      }
    }
    const depth = await options.outbox.depth();
    pending = depth.pending;
    waitingEvents = depth.waitingEvents;
    return fan.events === FAN_OUT_BATCH || (free > 0 && claimed === free);
  };

  const runRound = (): Promise<boolean> => {
    if (running !== null) return running;
    running = round()
      .catch((error: unknown) => {
        options.onError?.(error);
        return false;
      })
      .finally(() => (running = null));
    return running;
  };

  function schedule(delayMs: number): void {
    if (closed) return;
    if (timer !== null) {
      if (delayMs > 0) return;
      clearTimeout(timer);
    }
    timer = setTimeout(() => {
      timer = null;
      void runRound().then((busy) => schedule(busy ? 0 : pollIntervalMs));
    }, delayMs);
    timer.unref();
  }
  schedule(0);

  return {
    stats: () => ({ delivered, failedAttempts, givenUp, dropped, pending, waitingEvents, inFlight: inFlight.size }),
    async runOnce() {
      await runRound();
      await Promise.all([...inFlight]);
    },
    async close() {
      closed = true;
      if (timer !== null) clearTimeout(timer);
      timer = null;
      await running;
      await Promise.all([...inFlight]);
    },
  };
}
