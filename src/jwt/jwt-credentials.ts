/**
 * JWTs as bearer credentials: from a compact JWT to the token record the
 * engine judges, as fast as an opaque token once the JWT was seen.
 *
 * - **Verified once.** A JWT whose signature and claims verified is kept in a
 *   bounded LRU until its `exp` plus the clock skew, indexed by its signature
 *   and matched on the whole compact JWT: a JWT differing in any byte (a
 *   tampered header or payload under a copied signature) is not a hit and is
 *   verified afresh, and only a JWT that verified is ever stored. (The index
 *   is the signature rather than the whole JWT because hashing a kilobyte of
 *   fresh string on every request costs more than the rest of the look-up.)
 *   A repeated JWT is then
 *   judged without a signature check: the claim times, issuer and audience
 *   and the key's trust are re-checked from memory. Verification itself is
 *   synchronous too (verify-jwt.ts): only a key id not loaded yet waits.
 * - **Bound to its token.** The JWT stands for the API token it was exchanged
 *   for (`sub`): that token's record is looked up by id through a token cache
 *   (1 s entries, evicted at once by changes made in this process), and the
 *   engine then judges that record with its scopes narrowed to the JWT's. So a
 *   revoked, expired or rotated-out token stops its JWTs within the same
 *   second as itself, and every control on it (tenant suspension, IP
 *   allowlist, mTLS, conditional access, quota) applies to its JWTs, with no
 *   store read per request in the common case (one per token per second).
 */
import { LRUCache } from "lru-cache";
import type { AuthFailure } from "../engine/authenticate.js";
import type { TokenRecord } from "../engine/types.js";
import type { CompiledPolicySet, CompiledTokenExchange } from "../policy/types.js";
import { isPromise, type MaybePromise } from "../service/maybe-promise.js";
import type { TokenLookup } from "../service/token-cache.js";
import { JWT_CLOCK_SKEW_SECONDS, judgeClaims, type JwtClaims } from "./claims.js";
import type { KeyRing } from "./key-ring.js";
import { rejectionOf, verifyJwt, type JwtVerdict } from "./verify-jwt.js";

/** The token a JWT stands for (its scopes narrowed to the JWT's), `undefined` when no longer stored; or why the JWT is refused. */
export type JwtResolution = { readonly ok: true; readonly token: TokenRecord | undefined } | { readonly ok: false; readonly failure: AuthFailure };

export interface JwtCredentials {
  /** Resolves a JWT presented at `nowMs` under `policy` (whose `tokenExchange` is set). */
  find(compact: string, policy: CompiledPolicySet, nowMs: number): MaybePromise<JwtResolution>;
  /** Forgets every verified JWT, e.g. when the policy set changes. */
  clear(): void;
}

export interface JwtCredentialsOptions {
  readonly ring: KeyRing;
  /** Token records by token id, cached (a `createTokenCache` over the store's read by id). */
  readonly tokensById: TokenLookup;
  /** Verified JWTs kept; default 10,000 (about 1 KB each). */
  readonly maxEntries?: number;
}

/** Verified JWTs kept when the caller names no size. */
export const DEFAULT_MAX_VERIFIED_JWTS = 10_000;

interface VerifiedJwt {
  /** The whole compact JWT that verified; a hit must equal it. */
  readonly compact: string;
  readonly claims: JwtClaims;
  readonly kid: string;
  /** The settings the claims were last judged under; re-judged when the policy set changes. */
  settings: CompiledTokenExchange;
  /** The parent record the derived record was built from: the same object while the token is unchanged. */
  parent: TokenRecord | undefined;
  derived: TokenRecord | undefined;
}

/** Builds the resolver; see the module comment. */
export function createJwtCredentials(options: JwtCredentialsOptions): JwtCredentials {
  const verified = new LRUCache<string, VerifiedJwt>({ max: options.maxEntries ?? DEFAULT_MAX_VERIFIED_JWTS, ttlAutopurge: false });
  // Only a JWT that verified is stored, so a forged one can never take a genuine one's place.
  const remember = (compact: string, result: JwtVerdict, settings: CompiledTokenExchange, nowMs: number): MaybePromise<JwtResolution> => {
    if (!result.ok) return refuse(result.reason, result.message);
    const entry: VerifiedJwt = { compact, claims: result.claims, kid: result.kid, settings, parent: undefined, derived: undefined };
    const ttl = (result.claims.expiresAtSeconds + JWT_CLOCK_SKEW_SECONDS) * 1_000 - nowMs;
    verified.set(signatureOf(compact), entry, { ttl: Math.max(1, ttl) });
    return withParent(entry);
  };

  const withParent = (entry: VerifiedJwt): MaybePromise<JwtResolution> => {
    const parent = options.tokensById.find(entry.claims.tokenId);
    return isPromise(parent) ? parent.then((found) => bind(entry, found)) : bind(entry, parent);
  };
  const judge = (entry: VerifiedJwt, settings: CompiledTokenExchange, nowMs: number): JwtResolution | null => {
    if (options.ring.verificationKey(entry.kid, nowMs) === undefined) return refuse("jwt_invalid", "jwt is signed by a key this service does not trust");
    const judged = judgeClaims(entry.claims, settings, nowMs);
    if (judged !== "ok") return refuse(...rejectionOf(judged));
    entry.settings = settings;
    return null;
  };

  return {
    find(compact, policy, nowMs) {
      const settings = policy.tokenExchange;
      if (settings === null) return refuse("jwt_invalid", "this service does not accept jwts");
      const hit = verified.get(signatureOf(compact));
      if (hit !== undefined && hit.compact === compact) {
        // The fast path: claim times, key trust and (after a policy change) issuer and audience, all from memory.
        const expiresMs = (hit.claims.expiresAtSeconds + JWT_CLOCK_SKEW_SECONDS) * 1_000;
        if (hit.settings === settings && nowMs < expiresMs && nowMs >= (hit.claims.notBeforeSeconds - JWT_CLOCK_SKEW_SECONDS) * 1_000 && options.ring.verificationKey(hit.kid, nowMs) !== undefined) {
          return withParent(hit);
        }
        return judge(hit, settings, nowMs) ?? withParent(hit);
      }
      const verdict = verifyJwt(compact, options.ring, settings, nowMs);
      return isPromise(verdict) ? verdict.then((result) => remember(compact, result, settings, nowMs)) : remember(compact, verdict, settings, nowMs);
    },
    clear() {
      verified.clear();
    },
  };
}

/** The parent token with its scopes narrowed to the JWT's; rebuilt only when the parent's record changed. */
function bind(entry: VerifiedJwt, parent: TokenRecord | undefined): JwtResolution {
  if (parent === undefined) return { ok: true, token: undefined };
  if (entry.parent === parent && entry.derived !== undefined) return { ok: true, token: entry.derived };
  const { claims } = entry;
  // A signed JWT whose facts disagree with its token's record: the store changed under it, or it was not ours.
  if (parent.tenant !== claims.tenant || parent.workspace !== claims.workspace || parent.environment !== claims.environment) {
    return refuse("jwt_invalid", "jwt does not match the token it was exchanged for");
  }
  // why: the record is rebuilt once per parent change, so the engine's per-record memos (identity, headers, controls) hold across requests
  const derived: TokenRecord = Object.freeze({ ...parent, scopes: claims.scopes });
  entry.parent = parent;
  entry.derived = derived;
  return { ok: true, token: derived };
}

/** The third part of a compact JWT: unique per verified JWT (an Ed25519 signature is a function of key and message). */
function signatureOf(compact: string): string {
  return compact.slice(compact.lastIndexOf(".") + 1);
}

function refuse(reason: AuthFailure["reason"], message: string): JwtResolution {
  return { ok: false, failure: { reason, message, presented: true } };
}
