/**
 * Decision -> the HTTP response an enforcement point sends, in the policy set's
 * error dialect. Shared by every transport so that all of them answer alike.
 */
import { assertNever, type DecisionCode } from "../engine/codes.js";
import type { Decision, HeaderField } from "../engine/types.js";
import type { ErrorDialect } from "../policy/types.js";

/** What the enforcement point sends to the client. */
export interface RenderedResponse {
  readonly httpStatus: number;
  /** Response headers, `content-type` included on denials. */
  readonly headers: readonly HeaderField[];
  /** Error body; `""` on allow. */
  readonly body: string;
}

const JSON_CONTENT_TYPE: HeaderField = ["content-type", "application/json"];

/**
 * Renders a decision. Allows carry no body: the upstream answers them. Denials
 * carry the body of `dialect` and the decision's headers.
 */
export function renderDecision(decision: Decision, dialect: ErrorDialect, requestId: string): RenderedResponse {
  if (decision.allowed) return { httpStatus: 200, headers: decision.responseHeaders, body: "" };
  const shared = Object.isFrozen(decision) ? sharedDenial(decision, dialect) : null;
  if (shared !== null) {
    return { httpStatus: decision.httpStatus, headers: shared.headers, body: shared.bodyBefore === null ? shared.bodyAfter : `${shared.bodyBefore}${JSON.stringify(requestId)}${shared.bodyAfter}` };
  }
  return {
    httpStatus: decision.httpStatus,
    headers: [JSON_CONTENT_TYPE, ...decision.responseHeaders],
    body: JSON.stringify(errorBody(decision, dialect, requestId)),
  };
}

/**
 * A shared (frozen) denial rendered once per dialect: its headers, and its
 * body cut where the request id goes (`bodyBefore` is `null` when the dialect
 * carries none), so a denial costs a concatenation rather than a stringify.
 */
interface SharedRendering {
  readonly dialect: ErrorDialect;
  readonly headers: readonly HeaderField[];
  readonly bodyBefore: string | null;
  readonly bodyAfter: string;
}

const sharedRenderings = new WeakMap<Decision, SharedRendering[]>();

// Not a valid request id (those are plain ASCII), so it cannot be confused with one.
const REQUEST_ID_MARK = "\u0000request-id\u0000";

/** `null` when the body cannot be cut safely; the caller then renders it whole. */
function sharedDenial(decision: Decision, dialect: ErrorDialect): SharedRendering | null {
  let renderings = sharedRenderings.get(decision);
  const found = renderings?.find((r) => r.dialect === dialect);
  if (found !== undefined) return found;
  const whole = JSON.stringify(errorBody(decision, dialect, REQUEST_ID_MARK));
  let bodyBefore: string | null = null;
  let bodyAfter = whole;
  if (dialect !== "error_object") {
    // The request id is the last field of the canonical and envelope bodies: only closing braces may follow it.
    const quoted = JSON.stringify(REQUEST_ID_MARK);
    const mark = whole.lastIndexOf(quoted);
    bodyAfter = mark === -1 ? "" : whole.slice(mark + quoted.length);
    if (mark === -1 || !/^}+$/.test(bodyAfter)) return null;
    bodyBefore = whole.slice(0, mark);
  }
  const rendering: SharedRendering = Object.freeze({ dialect, headers: Object.freeze([JSON_CONTENT_TYPE, ...decision.responseHeaders]), bodyBefore, bodyAfter });
  if (renderings === undefined) sharedRenderings.set(decision, (renderings = []));
  renderings.push(rendering);
  return rendering;
}

/** The JSON error body of a denial in one dialect. */
export function errorBody(decision: Decision, dialect: ErrorDialect, requestId: string): unknown {
  switch (dialect) {
    case "canonical":
      return {
        message: decision.message,
        code: decision.code,
        // the developer portal's 429 body names the spent quota under `quota`
        ...(decision.code === "quota_exceeded" ? { quota: quotaOf(decision) } : {}),
        errors: { reason: decision.reason, ...decision.details },
        request_id: requestId,
      };
    case "envelope":
      return { ok: false, error: { code: envelopeCode(decision.code, decision.reason), message: decision.message, requestId } };
    case "error_object":
      return { error: { code: errorObjectCode(decision.httpStatus), message: decision.message, details: { reason: decision.reason, ...decision.details } } };
    default:
      return assertNever(dialect);
  }
}

/** The `quota` object of a canonical 429 body: which window is spent, its limit, and when to retry. */
function quotaOf(decision: Decision): { window: string; limit: number; retry_after_seconds: number } {
  const { quota = "", limit = "0", retry_after_seconds = "0" } = decision.details;
  return { window: quota, limit: Number(limit), retry_after_seconds: Number(retry_after_seconds) };
}

/** Upper-case codes of the `{ok:false, error}` envelope that token-API clients already parse. */
export function envelopeCode(code: DecisionCode, reason: string): string {
  switch (code) {
    case "ok":
      return "OK";
    case "invalid_request":
      return "INVALID_REQUEST";
    case "unauthenticated":
      return reason === "missing" ? "AUTH_REQUIRED" : "AUTH_INVALID";
    case "tenant_suspended":
      return "AUTH_TENANT_SUSPENDED";
    case "ip_allowlist_blocked":
      return "AUTH_IP_NOT_ALLOWED";
    case "mtls_required":
      return "AUTH_MTLS_REQUIRED";
    case "conditional_access_blocked":
      return "AUTH_CONDITIONAL_ACCESS_BLOCKED";
    case "scope_denied":
      return "AUTH_SCOPE_INSUFFICIENT";
    case "workspace_restricted":
      return "WORKSPACE_RESTRICTED";
    case "quota_exceeded":
      return "RATE_LIMITED";
    case "unavailable":
      return "SERVICE_UNAVAILABLE";
    default:
      return assertNever(code);
  }
}

/** Lower-case codes of the `{error:{code,message,details}}` dialect, by HTTP status. */
export function errorObjectCode(httpStatus: number): string {
  switch (httpStatus) {
    case 400:
      return "bad_request";
    case 401:
      return "unauthorized";
    case 403:
      return "forbidden";
    case 423:
      return "locked";
    case 429:
      return "rate_limited";
    default:
      return "unavailable";
  }
}
