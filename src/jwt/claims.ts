/**
 * The claims of an exchanged JWT: what the exchange writes and what
 * verification reads back. Pure: no keys, no clock reads.
 *
 * Header `{"alg":"EdDSA","kid":…,"typ":"at+jwt"}` (RFC 9068 §2.1, so that no
 * other kind of JWT signed by the same key passes for an access token).
 * Payload: `iss`, `aud`, `sub` (the token id), `tenant`, `workspace`,
 * `environment`, `scope` (space-separated, RFC 9068 §2.2.3), `iat`, `nbf`,
 * `exp` and `jti`.
 */
import { randomUUID } from "node:crypto";
import type { Identity } from "../engine/types.js";
import type { CompiledTokenExchange } from "../policy/types.js";

/** The `typ` header of every exchanged JWT. */
export const JWT_TYPE = "at+jwt";

/** The one signing algorithm: Ed25519 (RFC 8037). */
export const JWT_ALGORITHM = "EdDSA";

/**
 * Clock skew allowed when judging `exp`, `nbf` and `iat`, seconds: replicas'
 * clocks may differ by this much. A JWT is accepted up to this long after its
 * `exp`, and from this long before its `nbf`.
 */
export const JWT_CLOCK_SKEW_SECONDS = 30;

/** What a verified JWT tells the authorizer. */
export interface JwtClaims {
  /** The id of the API token it was exchanged for (`sub`). */
  readonly tokenId: string;
  readonly tenant: string;
  readonly workspace: string;
  readonly environment: string;
  /** The scopes it carries, sorted: never more than its token held at the exchange. */
  readonly scopes: readonly string[];
  readonly issuer: string;
  readonly audiences: readonly string[];
  readonly issuedAtSeconds: number;
  readonly notBeforeSeconds: number;
  readonly expiresAtSeconds: number;
  readonly jti: string;
}

/** The payload written for an exchange: everything a JWT says, in JWT claim names. */
export interface JwtPayloadOut {
  readonly iss: string;
  readonly aud: string | readonly string[];
  readonly sub: string;
  readonly tenant: string;
  readonly workspace: string;
  readonly environment: string;
  readonly scope: string;
  readonly iat: number;
  readonly nbf: number;
  readonly exp: number;
  readonly jti: string;
}

/**
 * The payload for a JWT exchanged by `identity` at `nowMs`, carrying `scopes`
 * (already narrowed: a subset of the identity's) for `lifetimeSeconds`.
 */
export function buildPayload(identity: Identity, scopes: readonly string[], settings: CompiledTokenExchange, nowMs: number, lifetimeSeconds: number): JwtPayloadOut {
  const iat = Math.floor(nowMs / 1_000);
  return {
    iss: settings.issuer,
    aud: settings.audiences.length === 1 ? settings.audiences[0]! : settings.audiences,
    sub: identity.tokenId,
    tenant: identity.tenant,
    workspace: identity.workspace,
    environment: identity.environment,
    scope: scopes.join(" "),
    iat,
    nbf: iat,
    exp: iat + lifetimeSeconds,
    jti: randomUUID(),
  };
}

/**
 * Reads the claims of a payload whose signature, issuer, audience and times
 * were already verified; `null` when a claim this service writes is missing
 * or of the wrong type (a JWT from another issuer sharing the key would be).
 */
export function readClaims(payload: Readonly<Record<string, unknown>>): JwtClaims | null {
  const { sub, tenant, workspace, environment, scope, iss, aud, iat, nbf, exp, jti } = payload;
  if (typeof sub !== "string" || typeof tenant !== "string" || typeof workspace !== "string" || typeof environment !== "string") return null;
  if (typeof scope !== "string" || typeof iss !== "string" || typeof jti !== "string") return null;
  if (!isSeconds(iat) || !isSeconds(exp) || (nbf !== undefined && !isSeconds(nbf))) return null;
  const audiences = typeof aud === "string" ? [aud] : Array.isArray(aud) && aud.every((a) => typeof a === "string") ? (aud as string[]) : null;
  if (audiences === null) return null;
  return {
    tokenId: sub,
    tenant,
    workspace,
    environment,
    scopes: Object.freeze(scope === "" ? [] : scope.split(" ").sort()),
    issuer: iss,
    audiences: Object.freeze(audiences),
    issuedAtSeconds: iat,
    notBeforeSeconds: (nbf as number | undefined) ?? iat,
    expiresAtSeconds: exp,
    jti,
  };
}

/** Whether a JWT of `claims` may be used at `nowMs` under `settings`: the claim checks repeated on every cache hit. */
export function judgeClaims(claims: JwtClaims, settings: CompiledTokenExchange, nowMs: number): "ok" | "expired" | "not_yet_valid" | "wrong_issuer" | "wrong_audience" {
  const now = nowMs / 1_000;
  if (now >= claims.expiresAtSeconds + JWT_CLOCK_SKEW_SECONDS) return "expired";
  if (now < claims.notBeforeSeconds - JWT_CLOCK_SKEW_SECONDS || now < claims.issuedAtSeconds - JWT_CLOCK_SKEW_SECONDS) return "not_yet_valid";
  if (claims.issuer !== settings.issuer) return "wrong_issuer";
  if (!claims.audiences.some((audience) => settings.audiences.includes(audience))) return "wrong_audience";
  return "ok";
}

function isSeconds(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}
