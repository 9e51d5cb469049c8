/**
 * Decision spans through `@opentelemetry/api`, recorded by the real trace SDK
 * (in-memory exporter) around the real server: Envoy `Check` with the
 * `traceparent` Envoy forwards gives a span in that trace, with the decision's
 * attributes and never the token. Without an SDK the tracer stays off.
 */
import { context, propagation, trace, type Context, type TextMapGetter, type TextMapPropagator } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDecisionTracer, DECISION_SPAN_NAME, parseTraceparent, tracerProviderIsNoop } from "../../src/observe/tracing.js";
import { createToken } from "../../src/service/tokens.js";
import { startTestServer, type TestServer } from "../support/server.js";
import { envoyCheckClient, type EnvoyCheckClient } from "../envoy/envoy-client.js";

const TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN_ID = "00f067aa0ba902b7";

describe("without an SDK", () => {
  it("the tracer provider is the API's no-op and the tracer stays off", () => {
    expect(tracerProviderIsNoop()).toBe(true);
    const tracer = createDecisionTracer();
    for (let i = 0; i < 3; i++) expect(tracer.enabled()).toBe(false);
  });
});

describe("traceparent", () => {
  it.each([
    { value: `00-${TRACE_ID}-${PARENT_SPAN_ID}-01`, parsed: { traceId: TRACE_ID, spanId: PARENT_SPAN_ID, traceFlags: 1 } },
    { value: `00-${TRACE_ID}-${PARENT_SPAN_ID}-00`, parsed: { traceId: TRACE_ID, spanId: PARENT_SPAN_ID, traceFlags: 0 } },
    { value: `01-${TRACE_ID}-${PARENT_SPAN_ID}-03-extra`, parsed: { traceId: TRACE_ID, spanId: PARENT_SPAN_ID, traceFlags: 1 } },
    { value: `00-${TRACE_ID}-${PARENT_SPAN_ID}-01-extra`, parsed: null },
    { value: `ff-${TRACE_ID}-${PARENT_SPAN_ID}-01`, parsed: null },
    { value: `00-${"0".repeat(32)}-${PARENT_SPAN_ID}-01`, parsed: null },
    { value: `00-${TRACE_ID}-${"0".repeat(16)}-01`, parsed: null },
    { value: `00-${TRACE_ID.toUpperCase()}-${PARENT_SPAN_ID}-01`, parsed: null },
    { value: "garbage", parsed: null },
  ])("$value", ({ value, parsed }) => {
    expect(parseTraceparent(value)).toEqual(parsed);
  });
});

describe("with the SDK registered", () => {
  const exporter = new InMemorySpanExporter();
  let t: TestServer;
  let client: EnvoyCheckClient;
  let token: string;
  let tokenId: string;

  beforeAll(async () => {
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }));
    t = await startTestServer();
    client = envoyCheckClient(t.grpcAddress);
    const created = await createToken(t.server.store, t.server.policy(), { tenant: "acme", workspace: "main", environment: "production", type: "service", actor: "test", name: "traced", role: "tenant_operator" }, Date.now());
    token = created.token;
    tokenId = created.record.id;
  });

  afterAll(async () => {
    client?.close();
    await t?.stop();
    trace.disable();
    context.disable();
    propagation.disable();
  });

  const check = (headers: Record<string, string>, method = "GET") =>
    client.check({ attributes: { source: { address: { socket_address: { address: "203.0.113.10", port_value: 1 } } }, request: { http: { method, path: "/api/payouts?page=2", host: "api.example.com", headers: { "x-request-id": "trace-1", ...headers } } } } });

  it("continues the trace of the request's traceparent with a server span carrying the decision, not the token", async () => {
    exporter.reset();
    const response = await check({ authorization: `Bearer ${token}`, traceparent: `00-${TRACE_ID}-${PARENT_SPAN_ID}-01` });
    expect(response.status.code).toBe(0);
    const spans = exporter.getFinishedSpans();
    expect(spans).toHaveLength(1);
    const span = spans[0]!;
    expect(span.name).toBe(DECISION_SPAN_NAME);
    expect(span.kind).toBe(1 /* SERVER */);
    expect(span.spanContext().traceId).toBe(TRACE_ID);
    expect(span.parentSpanContext?.spanId).toBe(PARENT_SPAN_ID);
    expect(span.parentSpanContext?.isRemote).toBe(true);
    expect(span.attributes).toMatchObject({
      "portcullis.transport": "envoy_grpc",
      "portcullis.decision.allowed": true,
      "portcullis.decision.code": "ok",
      "portcullis.decision.reason": "ok",
      "portcullis.rule_id": "group:/api/payouts",
      "portcullis.policy_revision": t.server.policy().revision,
      "portcullis.request_id": "trace-1",
      "portcullis.token_id": tokenId,
      "portcullis.tenant": "acme",
      "http.request.method": "GET",
      "http.response.status_code": 200,
    });
    expect(span.attributes).not.toHaveProperty("portcullis.audit_event");
    expect(JSON.stringify(span.attributes)).not.toContain(token);
    expect(span.status.code).toBe(0 /* UNSET: an allow is no error */);
  });

  it("a denial is a span with its audit event and no error status; without traceparent it starts a trace", async () => {
    exporter.reset();
    await check({});
    const [span] = exporter.getFinishedSpans();
    expect(span!.parentSpanContext).toBeUndefined();
    expect(span!.attributes).toMatchObject({ "portcullis.decision.code": "unauthenticated", "portcullis.audit_event": "auth.api_token_unauthenticated", "http.response.status_code": 401 });
    expect(span!.status.code).toBe(0);
  });

  it("reads the parent with the propagator the SDK registered, when there is one", async () => {
    const otherTrace = "0af7651916cd43dd8448eb211c80319c";
    const propagator: TextMapPropagator = {
      inject: () => undefined,
      extract: (base: Context, carrier: unknown, getter: TextMapGetter) => {
        const value = getter.get(carrier, "x-test-parent");
        const [traceId, spanId] = String(value ?? "").split(":");
        return traceId === undefined || spanId === undefined ? base : trace.setSpanContext(base, { traceId, spanId, traceFlags: 1, isRemote: true });
      },
      fields: () => ["x-test-parent"],
    };
    propagation.setGlobalPropagator(propagator);
    try {
      exporter.reset();
      await check({ authorization: `Bearer ${token}`, "x-test-parent": `${otherTrace}:${PARENT_SPAN_ID}`, traceparent: `00-${TRACE_ID}-${PARENT_SPAN_ID}-01` });
      const [span] = exporter.getFinishedSpans();
      expect(span!.spanContext().traceId).toBe(otherTrace);
    } finally {
      propagation.disable();
    }
  });
});
