/**
 * OpenTelemetry spans for decisions, through `@opentelemetry/api` only: the
 * operator brings the SDK and exporter (`node --import`, see docs/operations.md).
 * Without one registered, tracing costs a counter decrement per decision: the
 * tracer provider is checked once per {@link RECHECK_EVERY} decisions, and
 * nothing is read, started or allocated in between.
 *
 * A span continues the trace of the request being judged: the `traceparent`
 * header Envoy forwards in the `CheckRequest` (or the HTTP modes' request),
 * read by the propagator the SDK registered, or by the W3C Trace Context
 * parser below when none is (the API package's default propagator reads nothing).
 */
import {
  context,
  propagation,
  createTraceState,
  ProxyTracerProvider,
  SpanKind,
  SpanStatusCode,
  trace,
  TraceFlags,
  type Attributes,
  type Context,
  type Span,
  type TextMapGetter,
  type Tracer,
} from "@opentelemetry/api";
import type { AuthzInput } from "../engine/types.js";
import type { AuthorizeResult } from "../service/authorize.js";

/** The span name of a decision. Low-cardinality, as span names must be; the transport is an attribute. */
export const DECISION_SPAN_NAME = "portcullis.authorize";

/** The instrumentation scope spans are reported under. */
export const TRACER_NAME = "portcullis";

/** Decisions between two looks at the tracer provider, so that an SDK registered after start is picked up. */
export const RECHECK_EVERY = 1024;

/** Starts and ends decision spans; {@link DecisionTracer.enabled} is false while no SDK is registered. */
export interface DecisionTracer {
  /** Whether spans are recorded: an SDK tracer provider is registered. */
  enabled(): boolean;
  /** A span for one decision, child of the request's `traceparent` when it carries one, and the context to run the decision in. */
  start(input: AuthzInput, transport: string): { span: Span; context: Context };
  /** Sets the decision's attributes and ends the span. */
  end(span: Span, result: AuthorizeResult): void;
}

const NOOP_TRACER_PROVIDER = new ProxyTracerProvider().getDelegate();

/** Whether the global tracer provider is the API's no-op one, i.e. no SDK registered. */
export function tracerProviderIsNoop(): boolean {
  const provider = trace.getTracerProvider();
  // A provider from another copy of the API is not a ProxyTracerProvider of ours: treat it as real.
  return provider instanceof ProxyTracerProvider && provider.getDelegate() === NOOP_TRACER_PROVIDER;
}

/** Reads header values from {@link AuthzInput.headers} (lower-case names) for propagators. */
const HEADER_GETTER: TextMapGetter<ReadonlyMap<string, string>> = {
  keys: (carrier) => [...carrier.keys()],
  get: (carrier, key) => carrier.get(key.toLowerCase()),
};

/** Creates the tracer; `version` names the instrumentation scope's version. */
export function createDecisionTracer(version?: string): DecisionTracer {
  let tracer: Tracer | null = null;
  let untilRecheck = 0;
  const look = (): boolean => {
    untilRecheck = RECHECK_EVERY;
    tracer = tracerProviderIsNoop() ? null : trace.getTracer(TRACER_NAME, version);
    return tracer !== null;
  };
  return {
    enabled() {
      if (--untilRecheck <= 0) return look();
      return tracer !== null;
    },
    start(input, transport) {
      const parent = parentContext(input.headers);
      const active = tracer ?? trace.getTracer(TRACER_NAME, version);
      const span = active.startSpan(DECISION_SPAN_NAME, { kind: SpanKind.SERVER, attributes: { "portcullis.transport": transport, "http.request.method": input.method } }, parent);
      return { span, context: trace.setSpan(parent, span) };
    },
    end(span, result) {
      const { decision } = result;
      const attributes: Attributes = {
        "portcullis.decision.allowed": decision.allowed,
        "portcullis.decision.code": decision.code,
        "portcullis.decision.reason": decision.reason,
        "portcullis.rule_id": decision.ruleId,
        "portcullis.policy_revision": result.policyRevision,
        "portcullis.request_id": result.requestId,
        "http.response.status_code": result.response.httpStatus,
      };
      if (decision.auditEvent !== null) attributes["portcullis.audit_event"] = decision.auditEvent;
      // The token's public id and owner, never the token itself.
      if (decision.identity !== null) {
        attributes["portcullis.token_id"] = decision.identity.tokenId;
        attributes["portcullis.tenant"] = decision.identity.tenant;
        attributes["portcullis.workspace"] = decision.identity.workspace;
      }
      span.setAttributes(attributes);
      // A denial is an answer, not an error; only a decision that could not be made is.
      if (decision.code === "unavailable") span.setStatus({ code: SpanStatusCode.ERROR, message: decision.message });
      span.end();
    },
  };
}

/** The context a decision span is a child of: the registered propagator's reading of the headers, else their `traceparent`. */
function parentContext(headers: ReadonlyMap<string, string>): Context {
  const base = context.active();
  if (propagation.fields().length > 0) return propagation.extract(base, headers, HEADER_GETTER);
  const parsed = parseTraceparent(headers.get("traceparent"));
  if (parsed === null) return base;
  const traceState = headers.get("tracestate");
  return trace.setSpanContext(base, { ...parsed, isRemote: true, ...(traceState === undefined ? {} : { traceState: createTraceState(traceState) }) });
}

/**
 * A W3C Trace Context `traceparent` (https://www.w3.org/TR/trace-context/#traceparent-header):
 * `version-traceid-parentid-flags` in lower-case hex; `null` when absent or
 * invalid (all-zero ids, version `ff`, wrong lengths). Later versions may
 * append fields after the flags, which are ignored as the spec says.
 */
export function parseTraceparent(value: string | undefined): { traceId: string; spanId: string; traceFlags: number } | null {
  if (value === undefined) return null;
  const match = TRACEPARENT.exec(value.trim());
  if (match === null) return null;
  const [, version, traceId, spanId, flags, rest] = match as unknown as [string, string, string, string, string, string | undefined];
  if (version === "ff" || (version === "00" && rest !== undefined && rest !== "")) return null;
  if (/^0+$/.test(traceId) || /^0+$/.test(spanId)) return null;
  return { traceId, spanId, traceFlags: Number.parseInt(flags, 16) & TraceFlags.SAMPLED };
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;
