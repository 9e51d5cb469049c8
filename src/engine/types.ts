/**
 * The neutral input and output of a decision. Every transport converts its wire
 * format to {@link AuthzInput} and a {@link Decision} back to its wire format.
 */
import type { CompiledQuota, ControlsSpec } from "../policy/types.js";
import type { AuditEvent, DecisionCode } from "./codes.js";

/**
 * Controls stored with one token (IP allowlist, mTLS, conditional access, quota),
 * as written at `tokens create` / `tokens update`. Each kind given replaces
 * whatever the policy set would apply to the token for that kind.
 */
export type TokenControls = ControlsSpec;

/** Facts about the client certificate, as the TLS terminator reported them. */
export interface ClientCertificateFacts {
  /** SHA-256 of the DER certificate, lower-case hex without colons. */
  readonly sha256Fingerprint: string;
  /** Subject distinguished name, as reported. */
  readonly subject: string;
  /** SHA-256 of the issuing CA certificate, lower-case hex without colons; empty when unknown. */
  readonly issuerSha256Fingerprint: string;
  /** Whether the terminator verified the chain. Unverified certificates never satisfy a pin. */
  readonly verified: boolean;
  /** Expiry, milliseconds since the epoch; `null` when unknown. */
  readonly notAfterMs: number | null;
  /**
   * The certificates themselves, when the terminator sent them (not only
   * fingerprints): what lets the policy set's CA certificates find the issuers.
   */
  readonly presented?: PresentedCertificates;
}

/** A client certificate as sent, with any chain after it. */
export interface PresentedCertificates {
  /** DER, leaf first, then the chain as sent, each certificate once. */
  readonly der: readonly Buffer[];
  /** The certificates' SHA-256 fingerprints joined: names this exact set in caches. */
  readonly key: string;
}

/** One request to judge, in terms every transport can fill. */
export interface AuthzInput {
  /** HTTP method as received; compared exactly (methods are case-sensitive, RFC 9110 §9.1). */
  readonly method: string;
  /** Raw request target: path and query, not decoded. */
  readonly path: string;
  /** Host or authority, possibly with a port. */
  readonly host: string;
  /**
   * Headers with lower-case names. Repeated fields are combined into one value
   * joined by `", "` (RFC 9110 §5.3), which is also how Envoy forwards them.
   */
  readonly headers: ReadonlyMap<string, string>;
  /** The client's address as the enforcement point saw it (after trusted-proxy resolution); empty when unknown. */
  readonly sourceIp: string;
  /** Present when the client presented a certificate. */
  readonly clientCertificate: ClientCertificateFacts | null;
}

/** Who a recognised token belongs to. */
export interface Identity {
  readonly tokenId: string;
  readonly tenant: string;
  readonly workspace: string;
  readonly environment: string;
  readonly tokenType: "user" | "service";
  readonly role: string | null;
  readonly name: string;
  /** Effective scopes after role, key level, explicit scopes and creator role were intersected, sorted. */
  readonly scopes: readonly string[];
}

/** A condition that did not deny but that operators should see. */
export interface Warning {
  readonly code: string;
  readonly message: string;
}

/** One dynamic metadata entry: a key and a string or a list of strings. */
export type MetadataEntry = readonly [key: string, value: string | readonly string[]];

/** One HTTP header field. */
export type HeaderField = readonly [name: string, value: string];

/**
 * The answer to one request. A denial is a value, not an error: every field is
 * filled for allows and denials alike.
 */
export interface Decision {
  readonly allowed: boolean;
  readonly code: DecisionCode;
  readonly httpStatus: number;
  /** Finer reason within the code, e.g. `expired`; `ok` on allow. */
  readonly reason: string;
  /** Human-readable, safe to show to the client. */
  readonly message: string;
  /** Id of the policy rule that decided. */
  readonly ruleId: string;
  /** Audit event raised; `null` on allow. */
  readonly auditEvent: AuditEvent | null;
  /** Structured details of a denial, e.g. `required_scope`. Snake-case keys. */
  readonly details: Readonly<Record<string, string>>;
  /** Headers for the client response besides the body's content type. */
  readonly responseHeaders: readonly HeaderField[];
  /** Headers to add upstream on allow: the fields the policy set forwards. */
  readonly upstreamHeaders: readonly HeaderField[];
  /**
   * The identity entries of Envoy's `Check` dynamic metadata, as the policy set
   * chose them; filled whenever the token is known (allows and later denials alike), `[]` otherwise.
   */
  readonly upstreamMetadata: readonly MetadataEntry[];
  readonly identity: Identity | null;
  readonly warnings: readonly Warning[];
  /**
   * On an allow: the quota that applies to the token, which the authorizer
   * charges after the engine (`src/service/charge-quota.ts`); `null` when none
   * applies and on every denial. Transports do not read it.
   */
  readonly quota: CompiledQuota | null;
}

/**
 * A stored token as the engine sees it. The store owns persistence; the engine
 * only reads these fields.
 */
export interface TokenRecord {
  /** Public id, e.g. `tok_2Xk…`; safe to log and show. */
  readonly id: string;
  readonly tenant: string;
  readonly workspace: string;
  /** Environment the token was issued for; always the one its prefix names. */
  readonly environment: string;
  readonly type: "user" | "service";
  readonly name: string;
  /** Role name from the policy set, or `null` for a scopes-only token. */
  readonly role: string | null;
  /** Key level name from the policy set (`read_only`, `read_write`, `admin`), or `null` for no cap. */
  readonly keyLevel: string | null;
  /** Explicit scopes that narrow the role further, or `null` when the role alone decides. */
  readonly scopes: readonly string[] | null;
  /** For user tokens: the creator's role, intersected with the token's own permission. */
  readonly creatorRole: string | null;
  readonly createdAtMs: number;
  /** `null` for tokens that never expire. */
  readonly expiresAtMs: number | null;
  /** `null` unless revoked. Revocation is final. */
  readonly revokedAtMs: number | null;
  /** Service label policy `controls` selectors can name (`selector.service`); `null` when unlabelled. */
  readonly service: string | null;
  /** The token's own controls; `{}` when it has none. */
  readonly controls: TokenControls;
  /** Id of the first token of its rotation lineage; its own id when it was never rotated from another. */
  readonly lineageId: string;
  /** Id of the token it was rotated to; `null` unless rotated. */
  readonly successorId: string | null;
  /**
   * End of the rotation overlap window, ms since the epoch; `null` unless rotated.
   * From this instant on the token answers `unauthenticated`, reason `rotated`;
   * before it, decisions on it carry a `token_rotating` warning.
   */
  readonly overlapEndsAtMs: number | null;
}

/** Why a stage denied: everything the decision needs besides the code, which the stage implies. */
export interface Denial {
  /** Finer reason within the code, e.g. `not_allowed`. */
  readonly reason: string;
  readonly message: string;
  /** Id of the rule (policy entry, `token:<id>`, …) whose control denied. */
  readonly ruleId: string;
  readonly details: Readonly<Record<string, string>>;
  /** Overrides the code's usual audit event (the mTLS CA case). */
  readonly auditEvent?: AuditEvent;
}

/** What a check stage returns: pass, or the denial. */
export type StageResult = { readonly ok: true } | { readonly ok: false; readonly denial: Denial };
