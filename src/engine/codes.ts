/**
 * Decision codes, their HTTP statuses, precedence and audit events, as DESIGN.md
 * spells them. Every table keyed by a code lives here, so that adding a code is
 * one edit the compiler then walks you through.
 */

/** What a decision says, one code per outcome. */
export type DecisionCode =
  /** Every check passed. */
  | "ok"
  /** The request itself cannot be judged: unparseable source IP, malformed path encoding. */
  | "invalid_request"
  /** No usable token: missing, malformed, unknown, revoked, expired, wrong environment and the like. */
  | "unauthenticated"
  /** The token's tenant is administratively paused. */
  | "tenant_suspended"
  /** The source IP is outside every CIDR on the token's allowlist. */
  | "ip_allowlist_blocked"
  /** mTLS is required and no verified, pinned, unexpired certificate was presented. */
  | "mtls_required"
  /** A route, method, environment, time, read-only or idempotency condition failed. */
  | "conditional_access_blocked"
  /** The token lacks the scope the route and method need. */
  | "scope_denied"
  /** The workspace is temporarily restricted for protected operations. */
  | "workspace_restricted"
  /** A quota policy matched and is spent. */
  | "quota_exceeded"
  /** Portcullis cannot decide (store unreachable, no valid policy): it fails closed. */
  | "unavailable";

/** Every code, in DESIGN.md's precedence order: when several checks fail, the earliest wins. */
export const DECISION_CODES_BY_PRECEDENCE: readonly DecisionCode[] = [
  "invalid_request",
  "unauthenticated",
  "tenant_suspended",
  "ip_allowlist_blocked",
  "mtls_required",
  "conditional_access_blocked",
  "scope_denied",
  "workspace_restricted",
  "quota_exceeded",
  "unavailable",
  "ok",
];

/** HTTP status the enforcement point answers with, per code. */
export function httpStatusOf(code: DecisionCode): number {
  switch (code) {
    case "ok":
      return 200;
    case "invalid_request":
      return 400;
    case "unauthenticated":
      return 401;
    case "tenant_suspended":
    case "ip_allowlist_blocked":
    case "mtls_required":
    case "conditional_access_blocked":
    case "scope_denied":
      return 403;
    case "workspace_restricted":
      return 423;
    case "quota_exceeded":
      return 429;
    case "unavailable":
      return 503;
    default:
      return assertNever(code);
  }
}

/** Audit events a decision can raise. */
export type AuditEvent =
  | "auth.api_token_invalid_request"
  | "auth.api_token_unauthenticated"
  | "auth.api_token_tenant_suspended"
  | "auth.api_token_ip_allowlist_blocked"
  | "auth.api_token_mtls_required"
  | "auth.api_token_mtls_ca_required"
  | "auth.api_token_conditional_access_blocked"
  | "auth.api_token_ability_rejected"
  | "auth.api_token_workspace_restricted"
  | "auth.api_token_quota_exceeded"
  | "auth.api_token_unavailable";

/** Token lifecycle events, raised by the store rather than by decisions. */
export type LifecycleEvent =
  | "api_token.created"
  | "api_token.rotated"
  | "api_token.revoked"
  | "api_token.emergency_revoked"
  /** A token's own controls (IP allowlist, mTLS, conditional access) were replaced. */
  | "api_token.controls_updated";

/** Administrative events on tenants and workspaces, raised by the store. */
export type AdministrativeEvent =
  /** Every token of the tenant now gets `tenant_suspended`. */
  | "tenant.suspended"
  | "tenant.resumed"
  /** The workspace is restricted, or its mode changed: what the mode covers (writes, or everything) now gets `workspace_restricted`. */
  | "workspace.restricted"
  | "workspace.unrestricted";

/**
 * The audit event a denial with this code raises. The mTLS CA case raises
 * `auth.api_token_mtls_ca_required` instead; its stage says so explicitly.
 */
export function auditEventOf(code: Exclude<DecisionCode, "ok">): AuditEvent {
  switch (code) {
    case "invalid_request":
      return "auth.api_token_invalid_request";
    case "unauthenticated":
      return "auth.api_token_unauthenticated";
    case "tenant_suspended":
      return "auth.api_token_tenant_suspended";
    case "ip_allowlist_blocked":
      return "auth.api_token_ip_allowlist_blocked";
    case "mtls_required":
      return "auth.api_token_mtls_required";
    case "conditional_access_blocked":
      return "auth.api_token_conditional_access_blocked";
    case "scope_denied":
      return "auth.api_token_ability_rejected";
    case "workspace_restricted":
      return "auth.api_token_workspace_restricted";
    case "quota_exceeded":
      return "auth.api_token_quota_exceeded";
    case "unavailable":
      return "auth.api_token_unavailable";
    default:
      return assertNever(code);
  }
}

/** Reasons within `unauthenticated`, one per way a credential can fail. */
export type UnauthenticatedReason =
  /** No `Authorization` header at all. */
  | "missing"
  /** The header is not `Bearer <token>`, or the token is not of the token format. */
  | "malformed"
  /** The token has the format but its checksum does not match: a typo or a forgery. */
  | "bad_checksum"
  /** No token with this hash is in the store. */
  | "unknown"
  /** The token was revoked. */
  | "revoked"
  /** The token is past its expiry. */
  | "expired"
  /** The token was rotated and its overlap window has ended. */
  | "rotated"
  /** The token belongs to another environment than the one this request targets. */
  | "wrong_environment"
  /** A token was passed in the URL query, where it leaks into logs. */
  | "token_in_query"
  /** The request carries more than one `Authorization` header. */
  | "duplicate_header"
  /** A JWT whose signature, algorithm, key, issuer, audience or claims do not verify. */
  | "jwt_invalid"
  /** A JWT used before its `nbf` or `iat`, beyond the allowed clock skew. */
  | "jwt_not_yet_valid";

/** Compile-time exhaustiveness check for switches over unions. */
export function assertNever(value: never): never {
  throw new Error(`unhandled case: ${String(value)}`);
}
