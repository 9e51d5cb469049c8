/**
 * What happens around each decision besides the answer: metrics by transport,
 * the decision log, and a trace span. One wrapper per transport, so that every
 * observer knows who asked without the authorizer or the transports knowing
 * about observers.
 *
 * The path with the log off and no tracing SDK costs what the authorizer's own
 * timing did: two clock reads, two counters and a histogram; no closure, no
 * Promise and no object per synchronous decision. A deny costs what an allow
 * costs, except that the `denials` and `sampled` log modes record it.
 */
import type { CompiledPolicySet } from "../policy/types.js";
import type { AuthorizeResult, Authorizer } from "../service/authorize.js";
import type { Decision } from "../engine/types.js";
import type { AuthzInput } from "../engine/types.js";
import { isPromise } from "../service/maybe-promise.js";
import { context } from "@opentelemetry/api";
import type { Span } from "@opentelemetry/api";
import type { DecisionLog } from "./decision-log.js";
import type { SecurityEventRecorder } from "./security-events.js";
import type { DecisionTracer } from "./tracing.js";

/** The transports, as metrics label them and the decision log names them. */
export type Transport =
  /** `Authorize` on the gRPC port. */
  | "grpc"
  /** `Authorize` over Connect or gRPC-Web on the HTTP port. */
  | "connect"
  /** Envoy's `Authorization/Check` over gRPC. */
  | "envoy_grpc"
  /** Envoy's HTTP ext_authz service (`<prefix>/envoy/…`). */
  | "envoy_http"
  /** nginx `auth_request` (`<prefix>/nginx`). */
  | "nginx"
  /** Traefik ForwardAuth (`<prefix>/traefik`). */
  | "traefik"
  /** The token service judging its caller's token. */
  | "token_service";

export interface DecisionObservers {
  /** Counts and times one decision of this transport; see `ServerMetrics.decisionsOf`. */
  readonly metricsOf?: (transport: Transport) => (decision: Decision, seconds: number) => void;
  /** `null` when the decision log is off. */
  readonly log: DecisionLog | null;
  /** `null` when tracing is not wired at all (a test, an embedder); otherwise it turns itself on when an SDK is registered. */
  readonly tracer: DecisionTracer | null;
  /** Counts denials into the store's security events; absent or `null` when not stored. */
  readonly securityEvents?: SecurityEventRecorder | null;
  /** The policy set in force: its masking rules apply to the records queued now. */
  readonly policy: () => CompiledPolicySet | null;
  /** Milliseconds since the epoch, for record times. Default `Date.now`. */
  readonly nowMs?: () => number;
}

/** Wraps an authorizer so that each of its decisions is counted, logged and traced as `transport`. */
export function observeDecisions(authorize: Authorizer, transport: Transport, observers: DecisionObservers): Authorizer {
  const count = observers.metricsOf?.(transport) ?? null;
  const { log, tracer, policy } = observers;
  const nowMs = observers.nowMs ?? Date.now;
  const security = observers.securityEvents ?? null;
  if (count === null && log === null && tracer === null && security === null) return authorize;

  const observe = (input: AuthzInput, result: AuthorizeResult, startMs: number): void => {
    const seconds = (performance.now() - startMs) / 1_000;
    count?.(result.decision, seconds);
    if (log !== null && log.wants(result.decision.allowed)) {
      log.offer({ timeMs: nowMs(), transport, input, result, latencySeconds: seconds, policy: policy() });
    }
    if (security !== null && !result.decision.allowed) security.offer(result.decision, nowMs());
  };

  // why: a span needs a closure and a context per decision, so it is taken only when an SDK records spans
  const traced = (input: AuthzInput, startMs: number, active: DecisionTracer): ReturnType<Authorizer> => {
    const { span, context: spanContext } = active.start(input, transport);
    let result: ReturnType<Authorizer>;
    try {
      result = context.with(spanContext, authorize, undefined, input);
    } catch (error) {
      span.end();
      throw error;
    }
    if (!isPromise(result)) return finish(input, result, startMs, span, active);
    return result.then((settled) => finish(input, settled, startMs, span, active));
  };
  const finish = (input: AuthzInput, result: AuthorizeResult, startMs: number, span: Span, active: DecisionTracer): AuthorizeResult => {
    active.end(span, result);
    observe(input, result, startMs);
    return result;
  };

  return (input) => {
    const startMs = performance.now();
    if (tracer !== null && tracer.enabled()) return traced(input, startMs, tracer);
    const result = authorize(input);
    if (!isPromise(result)) {
      observe(input, result, startMs);
      return result;
    }
    return result.then((settled) => {
      observe(input, settled, startMs);
      return settled;
    });
  };
}
