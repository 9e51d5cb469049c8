/**
 * The `unauthenticated` stages: reading the bearer credential from the request
 * (pure, before any store look-up) and judging the stored token it names.
 */
import type { CompiledPolicySet } from "../policy/types.js";
import { parseToken } from "../token/index.js";
import type { UnauthenticatedReason } from "./codes.js";
import type { PreparedRequest } from "./request.js";
import type { TokenRecord } from "./types.js";

/** A well-formed token for the environment the request targets, not yet looked up. */
export interface Credential {
  readonly token: string;
  /** The token prefix; `""` for a JWT. */
  readonly prefix: string;
  readonly environment: string;
  /**
   * Set when the credential has the shape of a compact JWT (and the policy set
   * accepts exchanged JWTs): nothing about it is verified yet; the authorizer
   * verifies it and finds the token it was exchanged for (src/jwt/).
   */
  readonly jwt?: true;
}

/** An authentication failure, with the reason DESIGN.md's `unauthenticated` row lists. */
export interface AuthFailure {
  readonly reason: UnauthenticatedReason;
  readonly message: string;
  /** Whether a token was presented at all: RFC 6750 §3 sends no error code when none was. */
  readonly presented: boolean;
}

// Query parameters that by convention carry credentials; their presence alone is a leak.
const CREDENTIAL_PARAMS: ReadonlySet<string> = new Set(["access_token", "api_key", "apikey", "api_token", "bearer_token"]);

/**
 * Reads the token from `Authorization: Bearer <token>` and checks its format,
 * checksum and environment. A token anywhere in the query is refused even when
 * the header is fine: it has already leaked into access logs.
 */
export function readCredential(request: PreparedRequest, policy: CompiledPolicySet): { ok: true; credential: Credential } | { ok: false; failure: AuthFailure } {
  if (request.target.query !== "" && queryCarriesToken(request.target.query, policy.tokenPrefixes)) {
    return fail("token_in_query", "bearer tokens belong in the authorization header, never in the url query", true);
  }
  const header = request.input.headers.get("authorization");
  if (header === undefined || header.trim() === "") return fail("missing", "missing bearer token", false);
  // A bearer token never contains a comma, so a comma means two headers were combined (RFC 9110 §5.3).
  if (header.includes(",")) return fail("duplicate_header", "more than one authorization header", true);

  const raw = bearerToken(header);
  if (raw === null) return fail("malformed", "authorization header must be `Bearer <token>`", true);
  // why: environment is the request's; the JWT's parent token must be of it, which decide() checks like any token's
  if (policy.tokenExchange !== null && looksLikeJwt(raw)) return { ok: true, credential: { token: raw, prefix: "", environment: request.environment, jwt: true } };
  const parsed = parseToken(raw, policy.tokenPrefixes);
  if (!parsed.ok) {
    return parsed.reason === "bad_checksum"
      ? fail("bad_checksum", "bearer token checksum does not match: check for a typo", true)
      : fail("malformed", "bearer token is not a token of this service", true);
  }
  // INVARIANT: parseToken only accepts prefixes from policy.tokenPrefixes, which all have an environment.
  const environment = policy.environmentByPrefix.get(parsed.prefix)!;
  if (environment !== request.environment) {
    return fail("wrong_environment", `token is for the \`${environment}\` environment, not \`${request.environment}\``, true);
  }
  return { ok: true, credential: { token: raw, prefix: parsed.prefix, environment } };
}

/**
 * Judges a looked-up token: unknown, revoked, expired, rotated out (its overlap
 * window ended at `overlapEndsAtMs`, inclusive), or issued for another
 * environment than its prefix names (a store that disagrees with itself fails closed).
 */
export function checkToken(record: TokenRecord | undefined, credential: Credential, nowMs: number): AuthFailure | null {
  if (record === undefined) return { reason: "unknown", message: "unknown bearer token", presented: true };
  if (record.revokedAtMs !== null) return { reason: "revoked", message: "bearer token was revoked", presented: true };
  if (record.expiresAtMs !== null && nowMs >= record.expiresAtMs) {
    return { reason: "expired", message: "bearer token expired", presented: true };
  }
  if (record.overlapEndsAtMs !== null && nowMs >= record.overlapEndsAtMs) {
    return { reason: "rotated", message: "bearer token was rotated and its overlap window has ended: use its successor", presented: true };
  }
  if (record.environment !== credential.environment) {
    return { reason: "wrong_environment", message: `token is for the \`${record.environment}\` environment`, presented: true };
  }
  return null;
}

/** Longest JWT read: ours carry the scope list, about 2 KB with 40 scopes; a far longer value is not ours and is not worth hashing. */
const MAX_JWT_LENGTH = 8_192;

/**
 * Whether a bearer value has the shape of a compact JWT (RFC 7515 §7.1): three
 * parts, the first a JSON object (`{"` encodes as `eyJ`). No character scan:
 * the verifier decodes the parts strictly, and a cached JWT matched exactly.
 */
export function looksLikeJwt(raw: string): boolean {
  if (raw.length > MAX_JWT_LENGTH || !raw.startsWith("eyJ")) return false;
  const first = raw.indexOf(".");
  const second = first === -1 ? -1 : raw.indexOf(".", first + 1);
  return second !== -1 && raw.indexOf(".", second + 1) === -1;
}

function fail(reason: UnauthenticatedReason, message: string, presented: boolean): { ok: false; failure: AuthFailure } {
  return { ok: false, failure: { reason, message, presented } };
}

/** `Bearer <token>` with a case-insensitive scheme and any run of spaces or tabs (RFC 9110 §11.4). */
function bearerToken(header: string): string | null {
  const value = header.trim();
  if (value.length < 8 || value.slice(0, 6).toLowerCase() !== "bearer") return null;
  const separator = value.charCodeAt(6);
  if (separator !== 32 && separator !== 9) return null;
  const token = value.slice(7).trimStart();
  // why: two character searches rather than a regex: a JWT is over a kilobyte, and every other whitespace fails the token's own format
  return token === "" || token.includes(" ") || token.includes("\t") ? null : token;
}

function queryCarriesToken(query: string, prefixes: readonly string[]): boolean {
  // Most queries hold no escape, no credential-like name and no token prefix: answer those without parsing.
  if (!query.includes("%") && !prefixes.some((prefix) => query.includes(prefix))) {
    const lower = query.toLowerCase();
    let named = false;
    for (const name of CREDENTIAL_PARAMS) if (lower.includes(name)) named = true;
    if (!named) return false;
  }
  for (const [name, value] of new URLSearchParams(query)) {
    if (CREDENTIAL_PARAMS.has(name.toLowerCase())) return true;
    const trimmed = value.trim();
    const bare = trimmed.slice(0, 7).toLowerCase() === "bearer " ? trimmed.slice(7).trimStart() : trimmed;
    for (const prefix of prefixes) if (bare.startsWith(prefix)) return true;
  }
  return false;
}
