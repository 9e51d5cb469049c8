/**
 * When a failed webhook delivery is tried again: exponential backoff with
 * jitter and a cap, and when it is given up. Pure: the random draw is an input.
 */

/** Retry settings of the deliverer; every duration in ms. */
export interface WebhookRetrySettings {
  /** Wait after the first failure; doubles with each further one. Default 1,000. */
  readonly baseDelayMs: number;
  /** Longest wait between two attempts. Default 300,000 (5 minutes). */
  readonly maxDelayMs: number;
  /** Attempts before a delivery is given up (status `failed`). Default 30 (one to two hours of retrying with the default waits). */
  readonly maxAttempts: number;
  /** Age after which a delivery still not made is given up, whatever its attempts. Default 86,400,000 (24 hours). */
  readonly maxAgeMs: number;
}

/** The defaults: 1 s doubling to 5 minutes, 30 attempts, 24 hours. */
export const DEFAULT_WEBHOOK_RETRY: WebhookRetrySettings = Object.freeze({
  baseDelayMs: 1_000,
  maxDelayMs: 300_000,
  maxAttempts: 30,
  maxAgeMs: 86_400_000,
});

/**
 * The wait before the next attempt after `attempts` failed ones (1 or more):
 * `min(cap, base * 2^(attempts-1))`, of which a random half is jitter
 * ("equal jitter"), so that endpoints failing together do not retry in step
 * and a wait is never shorter than half its step.
 * @param random - a draw in [0, 1)
 */
export function nextRetryDelayMs(attempts: number, settings: WebhookRetrySettings, random: number): number {
  const step = Math.min(settings.maxDelayMs, settings.baseDelayMs * 2 ** Math.min(attempts - 1, 40));
  return Math.round(step / 2 + (step / 2) * random);
}

/** Whether a delivery that has failed `attempts` times and was created at `createdAtMs` is given up at `nowMs`. */
export function givesUp(attempts: number, createdAtMs: number, nowMs: number, settings: WebhookRetrySettings): boolean {
  return attempts >= settings.maxAttempts || nowMs - createdAtMs >= settings.maxAgeMs;
}
