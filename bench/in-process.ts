/**
 * In-process figures: the engine called directly (no transport), the service
 * path with rendering, route and CIDR scaling, and token look-ups against
 * stores of 1,000 and 1,000,000 tokens.
 *
 * Each call is timed in batches with `process.hrtime.bigint()` around the
 * batch, so the timer's own cost (tens of ns) stays far below the figure.
 */
import { postgresLookupRows } from "./postgres-lookup.js";
import { spawn } from "node:child_process";
import { rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { decide, readRequest, type StoredFacts } from "../src/engine/decide.js";
import type { DecisionCode } from "../src/engine/codes.js";
import type { AuthzInput, TokenRecord } from "../src/engine/types.js";
import { AuthorizeRequestSchema, AuthorizeResponseSchema } from "../src/gen/portcullis/v1/authorization_pb.js";
import type { CompiledPolicySet } from "../src/policy/types.js";
import { createAuthorizer } from "../src/service/authorize.js";
import { settledNow } from "../src/service/maybe-promise.js";
import { createTokenCache } from "../src/service/token-cache.js";
import { TokenStore } from "../src/store/token-store.js";
import { authzInputFromMessage, messageFromResult } from "../src/transport/authorize-messages.js";
import { installFastTextEncoding } from "../src/transport/text-encoding.js";
import { createEnvoyCheck } from "../src/transport/envoy.js";
import { buildTrustedProxyMatcher } from "../src/transport/trusted-proxies.js";
import { loadCheckCodec } from "./envoy-check.js";
import { buildIpAllowlistMatcher } from "../src/policy/ip-allowlist-matcher.js";
import { generateToken, hashToken } from "../src/token/index.js";
import {
  BENCH_SECRET,
  BENCH_SECRET_HEX,
  BUNDLED_POLICY_DIR,
  NOW_MS,
  REPO_ROOT,
  breakChecksum,
  fillStore,
  input,
  loadPolicyOrThrow,
  SERVER_NODE_FLAGS,
  tempDir,
  tokenRecord,
  writeGeneratedPolicy,
} from "./fixtures.js";
import type { Budget, Figure, Row } from "./report.js";
import { percentile, spread } from "./stats.js";

export interface InProcessOptions {
  readonly quick: boolean;
  readonly log: (line: string) => void;
}

/** How long to time one function: `runs` runs of `batches` batches of `batchSize` calls. */
interface Plan {
  readonly runs: number;
  readonly batches: number;
  readonly batchSize: number;
}

/**
 * Per-call time in µs. The median comes from batches (`batchSize` calls
 * between two timer reads, so the timer costs nothing next to the call), the
 * p99 from single calls timed one by one, less the timer's own median cost:
 * batch means would smear a tail over the batch.
 */
function timePerCall(fn: (i: number) => number, plan: Plan): { median: Figure["value"]; p99: Figure["value"] } {
  let sink = 0;
  const warm = Math.min(20_000, plan.batches * plan.batchSize);
  for (let i = 0; i < warm; i++) sink += fn(i);
  const timerNs: number[] = [];
  for (let k = 0; k < 1_000; k++) {
    const start = process.hrtime.bigint();
    timerNs.push(Number(process.hrtime.bigint() - start));
  }
  const timerCostUs = percentile(timerNs, 50) / 1000;
  const runMedians: number[] = [];
  const runP99s: number[] = [];
  let i = 0;
  for (let run = 0; run < plan.runs; run++) {
    (globalThis as { gc?: () => void }).gc?.();
    const perBatch: number[] = [];
    for (let b = 0; b < plan.batches; b++) {
      const start = process.hrtime.bigint();
      for (let k = 0; k < plan.batchSize; k++) sink += fn(i++);
      perBatch.push(Number(process.hrtime.bigint() - start) / 1000 / plan.batchSize);
    }
    const single: number[] = [];
    for (let k = 0; k < plan.batches * 5; k++) {
      const start = process.hrtime.bigint();
      sink += fn(i++);
      single.push(Number(process.hrtime.bigint() - start) / 1000 - timerCostUs);
    }
    runMedians.push(percentile(perBatch, 50));
    runP99s.push(percentile(single, 99));
  }
  if (sink === Number.MIN_VALUE) console.log("unreachable");
  return { median: spread(runMedians), p99: spread(runP99s) };
}

function timingFigures(fn: (i: number) => number, plan: Plan, budget?: Budget): Figure[] {
  const { median, p99 } = timePerCall(fn, plan);
  const figures: Figure[] = [{ label: "median per call", unit: "µs", value: median, ...(budget === undefined ? {} : { budget }) }];
  figures.push({ label: "p99 per call", unit: "µs", value: p99 });
  return figures;
}

/** The service's authorizer over an in-memory token table, no tenant suspended, at {@link NOW_MS}. */
export function benchAuthorizer(policy: CompiledPolicySet, tokens: ReadonlyMap<string, TokenRecord>) {
  return createAuthorizer({
    policy: () => policy,
    tokens: { find: (token) => tokens.get(token) },
    tenantState: { tenantSuspended: () => false, workspaceRestricted: () => false },
    now: () => NOW_MS,
    onError: () => undefined,
  });
}

/** Tenant and workspace state the service reads next to the token. */
type StoreState = Partial<Pick<StoredFacts, "tenantSuspended" | "workspaceRestricted">>;

/** One request through both halves of the engine, with the token from an in-memory table. */
function judge(request: AuthzInput, policy: CompiledPolicySet, tokens: ReadonlyMap<string, TokenRecord>, state: StoreState = {}): DecisionCode {
  const reading = readRequest(request, policy);
  if (reading.done) return reading.decision.code;
  const facts: StoredFacts = {
    token: tokens.get(reading.credential.token),
    tenantSuspended: state.tenantSuspended ?? false,
    workspaceRestricted: state.workspaceRestricted ?? false,
  };
  return decide(reading.request, reading.credential, policy, facts, NOW_MS).code;
}

/**
 * A decision to time: the request, the token table the engine sees, and the
 * code it must produce (checked once before timing, so a row can never time
 * the wrong path). A new stage is one more line in {@link stageCases}.
 */
interface StageCase {
  readonly name: string;
  readonly expect: DecisionCode;
  readonly request: AuthzInput;
  readonly token?: TokenRecord;
  readonly state?: StoreState;
}

function stageCases(): StageCase[] {
  const live = generateToken("sk_live_");
  const operator = tokenRecord({ role: "tenant_operator" });
  const readOnly = tokenRecord({ role: "tenant_operator", keyLevel: "read_only" });
  return [
    { name: "allow (GET /api/payouts/po_123?page=2)", expect: "ok", request: input({ token: live }), token: operator },
    { name: "invalid_request (encoded slash)", expect: "invalid_request", request: input({ token: live, path: "/api/payouts%2F..%2Fadmin" }) },
    { name: "unauthenticated (missing token)", expect: "unauthenticated", request: input({ token: null }) },
    { name: "unauthenticated (bad checksum)", expect: "unauthenticated", request: input({ token: breakChecksum(live) }) },
    { name: "unauthenticated (unknown token)", expect: "unauthenticated", request: input({ token: live }) },
    { name: "tenant_suspended", expect: "tenant_suspended", request: input({ token: live }), token: operator, state: { tenantSuspended: true } },
    { name: "ip_allowlist_blocked (1 CIDR)", expect: "ip_allowlist_blocked", request: input({ token: live, sourceIp: "198.51.100.7" }), token: withCidrs(operator, 1) },
    { name: "mtls_required (no certificate)", expect: "mtls_required", request: input({ token: live }), token: tokenRecord({ controls: { mtls: { required: true } } }) },
    { name: "conditional_access_blocked (read-only, POST)", expect: "conditional_access_blocked", request: input({ token: live, method: "POST", path: "/api/payouts" }), token: tokenRecord({ controls: { conditionalAccess: { readOnly: true } } }) },
    { name: "scope_denied (read_only key, POST)", expect: "scope_denied", request: input({ token: live, method: "POST", path: "/api/payouts" }), token: readOnly },
    { name: "workspace_restricted (POST)", expect: "workspace_restricted", request: input({ token: live, method: "POST", path: "/api/payouts" }), token: operator, state: { workspaceRestricted: true } },
    // A new stage is one line here: name, expected code, request, token and store state.
  ];
}

/**
 * Where the engine reads a token's CIDR allowlist: `controls.ipAllowlist`.
 * The CIDR rows first check that the engine honours it (a source outside the
 * list must be blocked) and report themselves pending when it does not.
 */
const CIDR_FIELD = "controls.ipAllowlist";

/** `count` CIDRs: /24s carved out of 10.0.0.0/8 (none holds 203.0.113.10), then the one that does. */
function withCidrs(token: TokenRecord, count: number): TokenRecord {
  const cidrs = Array.from({ length: count - 1 }, (_, i) => `10.${(i >> 8) & 255}.${i & 255}.0/24`);
  cidrs.push("203.0.113.0/24");
  return { ...token, controls: { ...token.controls, ipAllowlist: cidrs } };
}

function decisionCode(request: AuthzInput, policy: CompiledPolicySet, token: TokenRecord | undefined): DecisionCode {
  const tokens = new Map<string, TokenRecord>();
  const reading = readRequest(request, policy);
  if (!reading.done && token !== undefined) tokens.set(reading.credential.token, token);
  return judge(request, policy, tokens);
}

export async function runInProcess(options: InProcessOptions): Promise<Row[]> {
  const plan: Plan = options.quick ? { runs: 3, batches: 300, batchSize: 20 } : { runs: 11, batches: 1000, batchSize: 20 };
  const rows: Row[] = [];
  const policy = loadPolicyOrThrow(BUNDLED_POLICY_DIR);
  const decideBudget: Budget = { limit: 3, atMost: true, text: "≤ 3 µs (allow)" };

  // Stages, on the bundled policy set.
  for (const stage of stageCases()) {
    const tokens = new Map<string, TokenRecord>();
    const reading = readRequest(stage.request, policy);
    if (!reading.done && stage.token !== undefined) tokens.set(reading.credential.token, stage.token);
    const got = judge(stage.request, policy, tokens, stage.state);
    const name = `readRequest + decide: ${stage.name}`;
    if (got !== stage.expect) {
      rows.push({ section: "in-process", name, status: "error", note: `expected \`${stage.expect}\`, the engine answered \`${got}\``, figures: [] });
      continue;
    }
    options.log(`in-process: ${name}`);
    rows.push({ section: "in-process", name, status: "ok", figures: timingFigures(() => judge(stage.request, policy, tokens, stage.state).length, plan, stage.expect === "ok" ? decideBudget : undefined) });
  }

  // The service path a transport calls: request id, engine, render; token from a cache hit.
  {
    const live = generateToken("sk_live_");
    const tokens = new Map([[live, tokenRecord()]]);
    const authorize = benchAuthorizer(policy, tokens);
    const request = input({ token: live });
    options.log("in-process: authorize() allow");
    rows.push({
      section: "in-process",
      name: "authorize(): allow incl. request id and render (token from a map)",
      status: settledNow(authorize(request)).decision.code === "ok" ? "ok" : "error",
      figures: timingFigures(() => settledNow(authorize(request)).response.httpStatus, plan),
    });
  }

  // What the gRPC and Connect-binary transports add around authorize(): protobuf decode, build and encode.
  {
    const live = generateToken("sk_live_");
    const tokens = new Map([[live, tokenRecord()]]);
    const authorize = benchAuthorizer(policy, tokens);
    const request = input({ token: live });
    const wire = toBinary(
      AuthorizeRequestSchema,
      create(AuthorizeRequestSchema, { method: request.method, path: request.path, host: request.host, sourceIp: request.sourceIp, headers: [...request.headers].map(([name, value]) => ({ name, value })) }),
    );
    // As the server runs it: protobuf-es with the short-ASCII text codec, the token's part copied as bytes.
    installFastTextEncoding();
    const roundTrip = () => toBinary(AuthorizeResponseSchema, messageFromResult(settledNow(authorize(authzInputFromMessage(fromBinary(AuthorizeRequestSchema, wire)))), "binary")).length;
    options.log("in-process: Authorize message round trip");
    rows.push({
      section: "in-process",
      name: "Authorize bytes -> bytes: fromBinary + authorize() + messageFromResult + toBinary, allow",
      status: "ok",
      note: `the per-request work of the gRPC transport besides HTTP/2 and framing; the response is ${roundTrip()} bytes`,
      figures: timingFigures(roundTrip, plan),
    });
  }

  // What Envoy's Check costs around authorize(): CheckRequest decode and CheckResponse encode, with the
  // bundled policy set's upstream choice (no scope list; see docs/upstream.md and bench/check-upstream-ab.ts).
  {
    const live = generateToken("sk_live_");
    const authorize = benchAuthorizer(policy, new Map([[live, tokenRecord()]]));
    const request = input({ token: live });
    const wire = loadCheckCodec().encode({ method: request.method, path: request.path, host: request.host, headers: Object.fromEntries(request.headers), sourceIp: request.sourceIp });
    const envoyCheck = createEnvoyCheck({ authorize, trustedProxies: buildTrustedProxyMatcher([]) });
    const check = (bytes: Buffer) => settledNow(envoyCheck(bytes));
    options.log("in-process: Envoy Check bytes round trip");
    rows.push({
      section: "in-process",
      name: "Envoy Check bytes -> bytes: decode + authorize() + encode, allow",
      status: "ok",
      note: `a tenant_operator token; the CheckResponse is ${check(wire).length - 5} bytes`,
      figures: timingFigures(() => check(wire).length, plan),
    });
  }

  // Route scaling: generated policy sets, a GET in the middle of the set.
  {
    const live = generateToken("sk_live_");
    const admin = tokenRecord({ role: "admin" });
    let smallest = Number.NaN;
    for (const routes of [10, 1_000, 10_000]) {
      const generated = writeGeneratedPolicy(routes);
      try {
        const loadStart = performance.now();
        const scaled = loadPolicyOrThrow(generated.dir);
        const loadMs = performance.now() - loadStart;
        const request = input({ token: live, path: generated.allowPath });
        const tokens = new Map([[live, admin]]);
        const name = `readRequest + decide: allow, ${routes.toLocaleString("en-US")} routes`;
        if (judge(request, scaled, tokens) !== "ok") {
          rows.push({ section: "in-process", name, status: "error", note: "the generated allow was not allowed", figures: [] });
          continue;
        }
        options.log(`in-process: ${name}`);
        const { median, p99 } = timePerCall(() => judge(request, scaled, tokens).length, plan);
        if (routes === 10) smallest = median.median;
        const figures: Figure[] = [
          { label: "median per call", unit: "µs", value: median },
          { label: "p99 per call", unit: "µs", value: p99 },
          { label: "policy load + compile", unit: "ms", value: { median: loadMs, min: loadMs, max: loadMs, runs: 1 } },
        ];
        if (routes === 10_000) {
          const ratio = median.median / smallest;
          figures.push({ label: "ratio to 10 routes", unit: "×", value: { median: ratio, min: ratio, max: ratio, runs: 1 }, budget: { limit: 1.3, atMost: true, text: "≤ 1.3×" } });
        }
        rows.push({ section: "in-process", name, status: "ok", figures });
      } finally {
        rmSync(generated.dir, { recursive: true, force: true });
      }
    }
  }

  // CIDR scaling: pending until the engine reads an allowlist from the token.
  {
    const live = generateToken("sk_live_");
    const outside = input({ token: live, sourceIp: "198.51.100.7" });
    const honoured = decisionCode(outside, policy, withCidrs(tokenRecord(), 1)) === "ip_allowlist_blocked";
    let smallest = Number.NaN;
    for (const count of [1, 100, 10_000]) {
      const name = `readRequest + decide: allow, ${count.toLocaleString("en-US")} CIDRs on the token`;
      if (!honoured) {
        rows.push({
          section: "in-process",
          name,
          status: "pending",
          note: `the engine has no IP allowlist yet: a token with \`${CIDR_FIELD}\` did not block a source outside it (see CIDR_FIELD in bench/in-process.ts)`,
          figures: [],
        });
        continue;
      }
      const token = withCidrs(tokenRecord(), count);
      const request = input({ token: live });
      const tokens = new Map([[live, token]]);
      options.log(`in-process: ${name}`);
      const { median, p99 } = timePerCall(() => judge(request, policy, tokens).length, plan);
      if (count === 1) smallest = median.median;
      const figures: Figure[] = [
        { label: "median per call", unit: "µs", value: median },
        { label: "p99 per call", unit: "µs", value: p99 },
      ];
      if (count === 10_000) {
        const ratio = median.median / smallest;
        figures.push({ label: "ratio to 1 CIDR", unit: "×", value: { median: ratio, min: ratio, max: ratio, runs: 1 }, budget: { limit: 1.3, atMost: true, text: "≤ 1.3×" } });
      }
      rows.push({ section: "in-process", name, status: "ok", figures });
      if (count === 10_000) {
        // A token record fresh from the store (a cache miss or a changed row) is a new object with an equal list.
        const fresh = `readRequest + decide: allow, ${count.toLocaleString("en-US")} CIDRs, token record fresh from the store`;
        options.log(`in-process: ${fresh}`);
        const coldPlan: Plan = { runs: Math.min(plan.runs, 5), batches: 4, batchSize: 2 };
        judge(request, policy, tokens); // this record version's list compiled once
        const clones = Array.from({ length: 8 + coldPlan.runs * coldPlan.batches * (coldPlan.batchSize + 5) }, () => structuredClone(token));
        rows.push({
          section: "in-process",
          name: fresh,
          status: "ok",
          note: "a new TokenRecord (structuredClone, made before timing) per call, as a store read returns it: the allowlist compiled for this record version is found by token id and compared entry by entry, not compiled again",
          figures: timingFigures((i) => judge(request, policy, new Map([[live, clones[i % clones.length]!]])).length, coldPlan),
        });
        rows.push(await firstDecisionRow(policy, token, options));
      }
    }
  }

  // The keyed hash alone: the floor of every cache miss.
  {
    const live = generateToken("sk_live_");
    options.log("in-process: hashToken");
    rows.push({ section: "in-process", name: "hashToken (HMAC-SHA-256, part of every miss)", status: "ok", figures: timingFigures(() => hashToken(BENCH_SECRET, live).length, plan) });
  }

  // Token look-ups against real stores.
  for (const total of options.quick ? [1_000, 100_000] : [1_000, 1_000_000]) {
    rows.push(...(await lookupRows(total, plan, options)));
  }
  rows.push(...(await postgresLookupRows(options)));
  return rows;
}

/**
 * The first decision for a new version of a token with 10,000 CIDRs, through
 * the service (`authorize()`): its allowlist is compiled in slices before it
 * is decided. Meanwhile a loop on `setImmediate` decides for a token without
 * controls on every turn, as other in-flight requests would be; the longest
 * gap between two of its turns is the stall the compile causes them. Beside
 * it, the same list compiled at once: what every other decision waited for
 * before.
 */
async function firstDecisionRow(policy: CompiledPolicySet, token: TokenRecord, options: InProcessOptions): Promise<Row> {
  const live = generateToken("sk_live_");
  const other = generateToken("sk_live_");
  const runs = options.quick ? 3 : 7;
  const firstMs: number[] = [];
  const stallMs: number[] = [];
  const answered: number[] = [];
  const atOnceMs: number[] = [];
  options.log("in-process: 10,000 CIDRs, first decision of a new record version");
  for (let run = 0; run < runs; run++) {
    // A new token id each run: a record version never seen, as after the list changed.
    const version = { ...structuredClone(token), id: `tok_bench_first_${run}_${Date.now()}` };
    const tokens = new Map([
      [live, version],
      [other, tokenRecord()],
    ]);
    const authorize = benchAuthorizer(policy, tokens);
    settledNow(authorize(input({ token: other })));
    let done = false;
    let turns = 0;
    let longest = 0;
    let last = performance.now();
    const started = performance.now();
    const first = Promise.resolve(authorize(input({ token: live }))).then((result) => {
      if (result.decision.code !== "ok") throw new Error(`first decision for the 10,000-CIDR token answered ${result.decision.code}`);
      done = true;
      return performance.now() - started;
    });
    await new Promise<void>((resolve) => {
      const turn = (): void => {
        const now = performance.now();
        longest = Math.max(longest, now - last);
        last = now;
        if (done) return resolve();
        if (settledNow(authorize(input({ token: other }))).decision.code !== "ok") throw new Error("the other token was not allowed");
        turns++;
        setImmediate(turn);
      };
      setImmediate(turn);
    });
    firstMs.push(await first);
    stallMs.push(longest);
    answered.push(turns);
    const entries = token.controls.ipAllowlist!;
    const t = performance.now();
    if (!buildIpAllowlistMatcher(entries, "token:bench").ok) throw new Error("the bench's list does not compile");
    atOnceMs.push(performance.now() - t);
  }
  return {
    section: "in-process",
    name: "authorize(): 10,000 CIDRs, first decision of a new record version, compiled in slices",
    status: "ok",
    note: `${runs} runs, each a token id never seen; other decisions: one per turn of the event loop (setImmediate) while the first is pending; the longest gap between two turns is the stall they saw`,
    figures: [
      { label: "first decision", unit: "ms", value: spread(firstMs) },
      { label: "longest stall of other decisions meanwhile", unit: "ms", value: spread(stallMs) },
      { label: "other decisions answered meanwhile", unit: "", value: spread(answered) },
      { label: "the same list compiled at once (the stall without slices)", unit: "ms", value: spread(atOnceMs) },
    ],
  };
}

async function lookupRows(total: number, plan: Plan, options: InProcessOptions): Promise<Row[]> {
  const label = total.toLocaleString("en-US");
  const dataDir = tempDir(`store${total}`);
  const rows: Row[] = [];
  const isMillion = total >= 1_000_000;
  const probeTokens = isMillion ? 100_000 : 0;
  try {
    options.log(`in-process: filling a store with ${label} tokens`);
    const filled = fillStore(dataDir, total, [
      { name: "sample", count: Math.min(total, 1_000), role: "tenant_operator", keyLevel: null },
      { name: "probe", count: probeTokens, role: "tenant_operator", keyLevel: null },
    ]);
    const insertUsPerToken = (filled.insertMs * 1000) / filled.total;
    rows.push({
      section: "in-process",
      name: `store fill: ${label} tokens, one transaction`,
      status: "ok",
      note: "bench-only bulk insert through a second connection (hash + insert per row), not `TokenStore.create`",
      figures: [
        { label: "total", unit: "s", value: { median: filled.insertMs / 1000, min: filled.insertMs / 1000, max: filled.insertMs / 1000, runs: 1 } },
        { label: "per token", unit: "µs", value: { median: insertUsPerToken, min: insertUsPerToken, max: insertUsPerToken, runs: 1 } },
      ],
    });

    const store = TokenStore.open({ dataDir, secret: BENCH_SECRET });
    try {
      const sample = filled.known.sample!;
      const unknown = Array.from({ length: 1_000 }, () => generateToken("sk_live_"));
      if (store.findByToken(sample[0]!) === undefined) throw new Error("a bulk-inserted token was not found");
      const cache = createTokenCache({ find: (token) => store.findByToken(token) });
      for (const token of sample) cache.find(token);
      const lookupPlan: Plan = { ...plan, batches: Math.max(50, Math.floor(plan.batches / 4)) };

      options.log(`in-process: look-ups with ${label} tokens`);
      rows.push({
        section: "in-process",
        name: `token look-up, ${label} stored: cache hit`,
        status: "ok",
        note: "1,000 hot tokens cycled; entries live 1 s, so about one look-up in 1,000 is a refresh",
        figures: timingFigures((i) => (cache.find(sample[i % sample.length]!) === undefined ? 0 : 1), lookupPlan),
      });
      rows.push({
        section: "in-process",
        name: `token look-up, ${label} stored: cache miss, stored token, hot pages`,
        status: "ok",
        note: "1,000 tokens cycled: after the first round their B-tree pages sit in SQLite's page cache",
        figures: timingFigures((i) => (store.findByToken(sample[(i * 7919) % sample.length]!) === undefined ? 0 : 1), lookupPlan),
      });
      if (isMillion) {
        const probe = filled.known.probe!;
        rows.push({
          section: "in-process",
          name: `token look-up, ${label} stored: cache miss, stored token, cold pages`,
          status: "ok",
          note: "100,000 distinct tokens, each looked up about once: the leaf pages come from the OS, as for a token not seen lately",
          figures: timingFigures(
            (i) => (store.findByToken(probe[i % probe.length]!) === undefined ? 0 : 1),
            lookupPlan,
            { limit: 20, atMost: true, text: "≤ 20 µs (1M tokens)" },
          ),
        });
      }
      rows.push({
        section: "in-process",
        name: `token look-up, ${label} stored: cache miss, unknown token`,
        status: "ok",
        figures: timingFigures((i) => (store.findByToken(unknown[i % unknown.length]!) === undefined ? 0 : 1), lookupPlan),
      });
    } finally {
      store.close();
    }

    if (isMillion) rows.push(await rssRow(dataDir, filled.known.probe!, options));
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
  return rows;
}

/**
 * Peak RSS of the real server process over a 1,000,000-token store, after
 * 100,000 decisions with distinct tokens fill its token cache (the worst case
 * the cache allows). Runs in a child so the bench's own heap does not count.
 */
async function rssRow(dataDir: string, probeTokens: readonly string[], options: InProcessOptions): Promise<Row> {
  const tokensFile = path.join(dataDir, "probe-tokens.txt");
  writeFileSync(tokensFile, probeTokens.join("\n"));
  options.log("in-process: RSS probe (server over 1,000,000 tokens)");
  const script = path.join(REPO_ROOT, "dist", "bench", "rss-probe.js");
  const child = spawn(process.execPath, [...SERVER_NODE_FLAGS, "--expose-gc", script, dataDir, tokensFile, BUNDLED_POLICY_DIR], {
    env: { ...process.env, PORTCULLIS_TOKEN_SECRET: BENCH_SECRET_HEX },
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
  if (code !== 0) return { section: "in-process", name: "server RSS, 1,000,000 tokens stored", status: "error", note: `rss probe exited with ${code}`, figures: [] };
  const result = JSON.parse(out.trim().split("\n").at(-1)!) as { startedMiB: number; afterMiB: number; settledMiB: number; peakMiB: number; allowed: number; decisions: number };
  const one = (value: number) => ({ median: value, min: value, max: value, runs: 1 });
  return {
    section: "in-process",
    name: "server RSS, 1,000,000 tokens stored",
    status: result.allowed === result.decisions ? "ok" : "error",
    note: `\`startServer\` in a child; RSS after start, then after ${result.decisions.toLocaleString("en-US")} authorize() calls with distinct tokens (${result.allowed.toLocaleString("en-US")} allowed, yielding every 1,000 as a server does) filled the token cache, then settled after a GC`,
    figures: [
      { label: "RSS after start", unit: "MiB", value: one(result.startedMiB) },
      { label: "RSS, cache full, right after the burst", unit: "MiB", value: one(result.afterMiB) },
      { label: "RSS, cache full, settled (after a GC)", unit: "MiB", value: one(result.settledMiB), budget: { limit: 200e6 / 2 ** 20, atMost: true, text: "≤ 200 MB (190.7 MiB)" } },
      { label: "peak RSS during the burst (VmHWM)", unit: "MiB", value: one(result.peakMiB) },
    ],
  };
}
