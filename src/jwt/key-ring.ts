/**
 * The signing keys in memory: the one that signs, the ones whose JWTs still
 * verify, and the JWKS that publishes them. Loaded from a
 * {@link SigningKeyStore} and reloaded on a timer and when a JWT names a key
 * id it does not know (a replica, or `portcullis keys rotate`, added a key).
 *
 * Rotation overlap: a retired key stops signing at once but keeps verifying
 * for the longest JWT lifetime plus the clock skew, so every JWT it signed
 * verifies until it expires, and then leaves the JWKS.
 */
import type { KeyObject } from "node:crypto";
import type { JWK } from "jose";
import { MAX_JWT_LIFETIME_MS } from "../policy/compile.js";
import { JWT_ALGORITHM, JWT_CLOCK_SKEW_SECONDS } from "./claims.js";
import { generateSigningKey, publicKeyOf, unsealPrivateKey } from "./sealed-key.js";
import type { SigningKeyStore, StoredSigningKey } from "./signing-key-store.js";

/** How long a retired key keeps verifying: the longest JWT lifetime plus the clock skew. */
export const RETIRED_KEY_VERIFIES_MS = MAX_JWT_LIFETIME_MS + JWT_CLOCK_SKEW_SECONDS * 1_000;

/** How often a ring reloads its keys when nothing asks it to; default of {@link KeyRingOptions.refreshEveryMs}. */
export const DEFAULT_KEY_REFRESH_MS = 10_000;

/** A JWK as the JWKS publishes it. */
export type PublishedJwk = JWK & { readonly kid: string; readonly alg: string; readonly use: "sig" };

export interface KeyRing {
  /** The key that signs now: the newest unretired key; `null` when there is none. */
  signingKey(): { readonly kid: string; readonly privateKey: KeyObject } | null;
  /** The key to verify a JWT with `kid` at `nowMs`; `undefined` when unknown or retired too long ago. */
  verificationKey(kid: string, nowMs: number): KeyObject | undefined;
  /** The JWKS document (RFC 7517 §5): every key that still verifies at `nowMs`. */
  jwks(nowMs: number): { readonly keys: readonly PublishedJwk[] };
  /** Reloads the keys from the store. */
  refresh(): Promise<void>;
  /** Reloads unless a reload started less than a second ago; for a JWT naming an unknown key id. */
  refreshSoon(): Promise<void>;
  /** Stops the refresh timer. */
  close(): void;
}

export interface KeyRingOptions {
  readonly store: SigningKeyStore;
  /** The server secret the private keys are sealed with. */
  readonly secret: Buffer;
  readonly now: () => number;
  /** Reload interval; default 10 s, `0` for none (tests). */
  readonly refreshEveryMs?: number;
  /** Told about a reload that failed; the keys in memory stay. */
  readonly onError?: (error: unknown) => void;
}

interface LoadedKey {
  readonly stored: StoredSigningKey;
  readonly verify: KeyObject;
  readonly jwk: PublishedJwk;
}

/**
 * Loads the ring; adds a signing key first when the store has none, so a
 * fresh store can exchange at once.
 */
export async function openKeyRing(options: KeyRingOptions): Promise<KeyRing> {
  await ensureSigningKey(options.store, options.secret, options.now());
  const loaded = new Map<string, LoadedKey>();
  let signing: { kid: string; privateKey: KeyObject } | null = null;
  // Reloads asked for by unknown key ids, at most one a second: a flood of JWTs naming made-up ids costs no store reads.
  let lastAskedMs = -Infinity;
  let inFlight: Promise<void> | null = null;

  const load = async (): Promise<void> => {
    const keys = await options.store.listKeys();
    const next = new Map<string, LoadedKey>();
    for (const stored of keys) {
      const known = loaded.get(stored.kid);
      if (known !== undefined && known.stored.retiredAtMs === stored.retiredAtMs) {
        next.set(stored.kid, known);
        continue;
      }
      const jwk: PublishedJwk = { ...stored.publicJwk, kid: stored.kid, alg: JWT_ALGORITHM, use: "sig" };
      next.set(stored.kid, { stored, verify: publicKeyOf(stored), jwk });
    }
    const newest = [...next.values()].filter((key) => key.stored.retiredAtMs === null).sort((a, b) => a.stored.createdAtMs - b.stored.createdAtMs).at(-1);
    if (newest === undefined) signing = null;
    else if (signing?.kid !== newest.stored.kid) signing = { kid: newest.stored.kid, privateKey: unsealPrivateKey(options.secret, newest.stored) };
    loaded.clear();
    for (const [kid, key] of next) loaded.set(kid, key);
  };
  const refresh = (): Promise<void> => {
    inFlight ??= load().finally(() => (inFlight = null));
    return inFlight;
  };
  await refresh();
  const every = options.refreshEveryMs ?? DEFAULT_KEY_REFRESH_MS;
  const timer = every > 0 ? setInterval(() => refresh().catch((error: unknown) => options.onError?.(error)), every) : null;
  timer?.unref();

  const verifies = (key: LoadedKey, nowMs: number): boolean => key.stored.retiredAtMs === null || nowMs < key.stored.retiredAtMs + RETIRED_KEY_VERIFIES_MS;
  return {
    signingKey: () => signing,
    verificationKey(kid, nowMs) {
      const key = loaded.get(kid);
      return key !== undefined && verifies(key, nowMs) ? key.verify : undefined;
    },
    jwks: (nowMs) => ({ keys: [...loaded.values()].filter((key) => verifies(key, nowMs)).map((key) => key.jwk) }),
    refresh,
    refreshSoon() {
      if (inFlight !== null) return inFlight;
      if (performance.now() - lastAskedMs < 1_000) return Promise.resolve();
      lastAskedMs = performance.now();
      return refresh();
    },
    close: () => {
      if (timer !== null) clearInterval(timer);
    },
  };
}

/** Adds a signing key when no unretired key exists; returns the key added, or `null`. */
export async function ensureSigningKey(store: SigningKeyStore, secret: Buffer, nowMs: number): Promise<StoredSigningKey | null> {
  const keys = await store.listKeys();
  if (keys.some((key) => key.retiredAtMs === null)) return null;
  const key = generateSigningKey(secret, nowMs);
  await store.addKey(key);
  return key;
}

/**
 * Rotates: adds a new signing key and retires every other unretired key at
 * `nowMs`. JWTs the retired keys signed verify until they expire
 * ({@link RETIRED_KEY_VERIFIES_MS}); servers sign with the new key from their
 * next reload (at most 10 s, or at once when they see a JWT it signed).
 */
export async function rotateSigningKey(store: SigningKeyStore, secret: Buffer, nowMs: number): Promise<{ added: StoredSigningKey; retired: readonly string[] }> {
  const before = await store.listKeys();
  const added = generateSigningKey(secret, nowMs);
  // why: added first, so that a crash in between leaves two signing keys rather than none
  await store.addKey(added);
  const retired: string[] = [];
  for (const key of before) {
    if (key.retiredAtMs !== null) continue;
    await store.retireKey(key.kid, nowMs);
    retired.push(key.kid);
  }
  return { added, retired };
}
