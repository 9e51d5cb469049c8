/**
 * The decision log's queue, modes and sinks: a slow or failing sink drops and
 * counts records instead of holding decisions; the file sink rotates by size;
 * records mask what the policy set names and never hold a token.
 */
import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { unavailable } from "../../src/engine/decide.js";
import { createDecisionLog, type DecisionLogMode } from "../../src/observe/decision-log.js";
import { resolveDecisionLogSettings } from "../../src/observe/decision-log-settings.js";
import { createFdSink, createFileSink, type DecisionLogSink } from "../../src/observe/decision-log-sink.js";
import { formatDecisionRecord, loggedTarget, type DecisionLogEntry } from "../../src/observe/decision-record.js";
import { compileDecisionLogMasking } from "../../src/policy/decision-log-masking.js";
import type { CompiledPolicySet } from "../../src/policy/types.js";
import { createAuthorizer, type AuthorizeResult } from "../../src/service/authorize.js";
import { settledNow } from "../../src/service/maybe-promise.js";
import { loadExamplePolicy, makeToken, request as input } from "../support/fixtures.js";

const tempDirs: string[] = [];
afterEach(() => {
  for (const dir of tempDirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-dlog-"));
  tempDirs.push(dir);
  return dir;
}

const policy = loadExamplePolicy();
const { token, record } = makeToken();
const authorize = createAuthorizer({
  policy: () => policy,
  tokens: { find: (given) => (given === token ? record : undefined) },
  tenantState: { tenantSuspended: () => false, workspaceRestricted: () => false },
  now: () => Date.UTC(2026, 10, 23, 10, 0, 0),
  onError: () => undefined,
});

function decide(fields: Parameters<typeof input>[0]): AuthorizeResult {
  return settledNow(authorize(input(fields)));
}

function entry(result: AuthorizeResult, target = "/api/payouts", withPolicy: CompiledPolicySet | null = policy): DecisionLogEntry {
  return { timeMs: Date.UTC(2026, 10, 23, 10, 0, 0), transport: "envoy_grpc", input: input({ path: target, headers: { authorization: `Bearer ${token}`, "user-agent": "curl/8" } }), result, latencySeconds: 0.000012, policy: withPolicy };
}

const allow = () => decide({ path: "/api/payouts", headers: { authorization: `Bearer ${token}` } });
const deny = () => decide({ path: "/api/payouts" });

/** A sink that holds every write until `release` is called, and records what it got. */
function heldSink(): DecisionLogSink & { lines: string[]; writes: number; release(): void } {
  let releases: (() => void)[] = [];
  const sink = {
    lines: [] as string[],
    writes: 0,
    write(bytes: Buffer) {
      sink.writes++;
      // why: the log reuses a page's bytes once its write settled, so they are read now
      const lines = bytes.toString();
      return new Promise<void>((resolve) => {
        releases.push(() => {
          sink.lines.push(...lines.split("\n").filter((line) => line !== ""));
          resolve();
        });
      });
    },
    async close() {},
    release() {
      const pending = releases;
      releases = [];
      for (const release of pending) release();
    },
  };
  return sink;
}

describe("decision log: modes", () => {
  const cases: { mode: DecisionLogMode; random: number; allow: boolean; deny: boolean }[] = [
    { mode: "all", random: 0.99, allow: true, deny: true },
    { mode: "denials", random: 0, allow: false, deny: true },
    { mode: "sampled", random: 0.05, allow: true, deny: true },
    { mode: "sampled", random: 0.5, allow: false, deny: true },
  ];
  it.each(cases)("$mode with a draw of $random: allow recorded $allow, deny recorded $deny", ({ mode, random, ...expected }) => {
    const log = createDecisionLog({ mode, sampleRate: 0.1, random: () => random, sink: heldSink() });
    expect(log.wants(true)).toBe(expected.allow);
    expect(log.wants(false)).toBe(expected.deny);
  });
});

describe("decision log: a slow or failing sink never holds decisions", () => {
  it("drops and counts records past the queue's capacity while a write hangs, and writes what it kept once the sink is back", async () => {
    const sink = heldSink();
    const log = createDecisionLog({ mode: "all", sink, capacity: 100, pageBytes: 4096, flushDelayMs: 1 });
    const started = performance.now();
    for (let i = 0; i < 1_000; i++) log.offer(entry(deny()));
    // 1,000 offers against a sink that never answers return at once
    expect(performance.now() - started).toBeLessThan(500);
    expect(log.stats()).toMatchObject({ queued: 100, droppedQueueFull: 900, written: 0 });
    expect(sink.writes).toBe(1);
    for (let round = 0; round < 20 && log.stats().queued > 0; round++) {
      sink.release();
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    expect(log.stats()).toMatchObject({ queued: 0, written: 100, droppedQueueFull: 900, droppedWriteFailed: 0 });
    expect(sink.lines).toHaveLength(100);
  });

  it("counts the records of a batch the sink refuses, tells once per batch, and keeps writing later batches", async () => {
    let fail = true;
    const written: string[] = [];
    const errors: number[] = [];
    const log = createDecisionLog({
      mode: "all",
      flushDelayMs: 1,
      sink: { write: async (bytes) => (fail ? Promise.reject(new Error("disk full")) : void written.push(bytes.toString())), close: async () => {} },
      onWriteError: (_error, records) => errors.push(records),
    });
    for (let i = 0; i < 3; i++) log.offer(entry(deny()));
    await log.flush();
    expect(log.stats()).toMatchObject({ droppedWriteFailed: 3, written: 0, queued: 0 });
    expect(errors).toEqual([3]);
    fail = false;
    log.offer(entry(allow()));
    await log.flush();
    expect(log.stats()).toMatchObject({ droppedWriteFailed: 3, written: 1 });
    expect(written.join("")).toContain('"code":"ok"');
  });

  it("writes what is queued on close, and drops what comes after", async () => {
    const lines: string[] = [];
    const log = createDecisionLog({ mode: "all", flushDelayMs: 60_000, sink: { write: async (bytes) => void lines.push(bytes.toString()), close: async () => {} } });
    log.offer(entry(deny()));
    await log.close();
    expect(lines.join("")).toContain('"code":"unauthenticated"');
    log.offer(entry(deny()));
    expect(log.stats().droppedQueueFull).toBe(1);
  });
});

describe("decision log: records", () => {
  it("holds the decision's fields and the token's id, never the token", () => {
    const line = formatDecisionRecord(entry(allow(), "/api/payouts?page=2"));
    expect(line.endsWith("\n")).toBe(true);
    const parsed = JSON.parse(line);
    expect(parsed).toMatchObject({
      time: "2026-11-23T10:00:00.000Z",
      service: "portcullis",
      msg: "decision",
      transport: "envoy_grpc",
      allowed: true,
      code: "ok",
      reason: "ok",
      http_status: 200,
      rule_id: "group:/api/payouts",
      policy_revision: policy.revision,
      audit_event: null,
      token_id: record.id,
      tenant: "acme",
      workspace: "main",
      environment: "production",
      method: "GET",
      path: "/api/payouts",
      warnings: [],
      latency_ms: 0.012,
    });
    expect(parsed).not.toHaveProperty("headers");
    expect(line).not.toContain(token);
  });

  it("a decision made with no policy set is recorded with nothing masked but the query", () => {
    const result: AuthorizeResult = { decision: unavailable("no valid policy set is loaded"), response: { httpStatus: 503, headers: [], body: "" }, requestId: "r1", stripCredential: true, policyRevision: "" };
    expect(JSON.parse(formatDecisionRecord(entry(result, "/x?a=1", null)))).toMatchObject({ code: "unavailable", http_status: 503, path: "/x", policy_revision: "" });
  });

  const masking = compileDecisionLogMasking({ query: "mask", maskQueryParameters: ["signature", "api key"] });
  const prefixes = ["sk_live_", "sk_test_"];
  it.each([
    { name: "drops the query by default", target: "/a?signature=x&page=2", rules: compileDecisionLogMasking(undefined), logged: "/a" },
    { name: "masks a named parameter, keeps the rest", target: "/a?page=2&signature=abc&x", rules: masking, logged: "/a?page=2&signature=***&x" },
    { name: "compares percent-decoded names", target: "/a?api%20key=1&api+key=2", rules: masking, logged: "/a?api%20key=***&api+key=***" },
    { name: "masks any value holding a token prefix, raw or encoded", target: "/a?t=sk_live_abc&u=sk%5Flive%5Fabc", rules: masking, logged: "/a?t=***&u=***" },
    { name: "masks a parameter name holding a token prefix", target: "/a?sk_live_abc", rules: masking, logged: "/a?***" },
    { name: "masks a path segment holding a token prefix", target: "/tokens/sk_test_abc/usage", rules: masking, logged: "/tokens/***/usage" },
    { name: "keeps a target without query as it is", target: "/a/b", rules: masking, logged: "/a/b" },
  ])("$name", ({ target, rules, logged }) => {
    expect(loggedTarget(target, rules, prefixes)).toBe(logged);
  });

  it("writes the headers the policy set names, masks the ones it masks and always masks the credential headers", () => {
    const rules = compileDecisionLogMasking({ headers: ["User-Agent", "authorization", "cookie", "x-absent", "x-forwarded-for"], maskHeaders: ["x-api-key"] });
    expect(rules).toMatchObject({ headers: ["user-agent", "x-absent", "x-forwarded-for"], maskHeaders: ["x-api-key", "authorization", "cookie"] });
    const withRules = { ...policy, decisionLog: rules } as CompiledPolicySet;
    const base = entry(allow());
    const headers = new Map([
      ["user-agent", "curl/8"],
      ["authorization", `Bearer ${token}`],
      ["x-api-key", "k"],
      ["x-forwarded-for", `${token}`],
    ]);
    const parsed = JSON.parse(formatDecisionRecord({ ...base, input: { ...base.input, headers }, policy: withRules }));
    expect(parsed.headers).toEqual({ "user-agent": "curl/8", authorization: "***", "x-api-key": "***", "x-forwarded-for": "***" });
  });
});

describe("decision log: sinks", () => {
  it("the file sink appends, rotates past its size and keeps only the newest files", async () => {
    const file = path.join(tempDir(), "decisions.jsonl");
    const sink = createFileSink(file, { maxFileBytes: 100, maxFiles: 2 });
    const line = (n: number) => `${JSON.stringify({ n, pad: "x".repeat(40) })}\n`;
    for (let n = 1; n <= 7; n++) await sink.write(Buffer.from(line(n)));
    await sink.close();
    const read = (name: string) => fs.readFileSync(name, "utf8").trim().split("\n").map((text) => JSON.parse(text).n);
    // each line is 58 bytes: a file takes one line, the next passes 100 bytes and rotates
    expect(read(file)).toEqual([7]);
    expect(read(`${file}.1`)).toEqual([6]);
    expect(read(`${file}.2`)).toEqual([5]);
    expect(fs.existsSync(`${file}.3`)).toBe(false);
  });

  it("the file sink fails a batch it cannot write and opens the file again for the next", async () => {
    const dir = tempDir();
    const file = path.join(dir, "sub", "decisions.jsonl");
    const sink = createFileSink(file);
    await expect(sink.write(Buffer.from("{}\n"))).rejects.toThrow(/ENOENT/);
    fs.mkdirSync(path.join(dir, "sub"));
    await sink.write(Buffer.from('{"a":1}\n'));
    await sink.close();
    expect(fs.readFileSync(file, "utf8")).toBe('{"a":1}\n');
  });

  it("the descriptor sink writes a whole page, however long", async () => {
    const file = path.join(tempDir(), "out.jsonl");
    const fd = fs.openSync(file, "a");
    try {
      const sink = createFdSink(fd);
      const lines = Array.from({ length: 3000 }, (_, n) => `${JSON.stringify({ n, pad: "y".repeat(n % 50) })}\n`).join("");
      await sink.write(Buffer.from(lines));
      expect(fs.readFileSync(file, "utf8")).toBe(lines);
    } finally {
      fs.closeSync(fd);
    }
  });

  it("two sinks on one pipe whose reader lags never split each other's lines (as workers sharing stdout)", async () => {
    const dir = tempDir();
    const fifo = path.join(dir, "stdout.fifo");
    execFileSync("mkfifo", [fifo]);
    // Read-write, so that opening does not wait for a reader; nobody reads until `cat` starts, so the pipe fills.
    const fd = fs.openSync(fifo, fs.constants.O_RDWR);
    const out = path.join(dir, "read.jsonl");
    try {
      const sinks = [createFdSink(fd), createFdSink(fd)];
      const page = (writer: number, n: number) => Buffer.from(Array.from({ length: 400 }, (_, i) => `${JSON.stringify({ writer, n, i, pad: "z".repeat(100 + ((n * 7 + i) % 60)) })}\n`).join(""));
      const writing = sinks.map(async (sink, writer) => {
        for (let n = 0; n < 8; n++) await sink.write(page(writer, n));
      });
      await new Promise((resolve) => setTimeout(resolve, 200));
      const reader = spawn("sh", ["-c", `cat "${fifo}" > "${out}"`]);
      await Promise.all(writing);
      fs.closeSync(fd);
      await new Promise((resolve) => reader.on("exit", resolve));
      for (const sink of sinks) await sink.close();
      const lines = fs.readFileSync(out, "utf8").split("\n").filter((line) => line !== "");
      expect(lines).toHaveLength(2 * 8 * 400);
      const broken = lines.filter((line) => {
        try {
          JSON.parse(line);
          return false;
        } catch {
          return true;
        }
      });
      expect(broken).toEqual([]);
    } finally {
      try {
        fs.closeSync(fd);
      } catch {
        // closed above
      }
    }
  });

  it("writes every record of a burst offered 64 a turn through the descriptor sink, whole", async () => {
    // The queue holds the whole burst, so that a writer thread starved by a busy machine drops nothing here.
    const file = path.join(tempDir(), "stdout.jsonl");
    const fd = fs.openSync(file, "a");
    try {
      const log = createDecisionLog({ mode: "denials", sink: createFdSink(fd), capacity: 30_000 });
      const denial = entry(deny());
      for (let sent = 0; sent < 30_000; ) {
        for (let i = 0; i < 64 && sent < 30_000; i++, sent++) log.offer(denial);
        await new Promise((resolve) => setImmediate(resolve));
      }
      await log.flush();
      expect(log.stats()).toMatchObject({ written: 30_000, droppedQueueFull: 0, droppedWriteFailed: 0, queued: 0 });
      const lines = fs.readFileSync(file, "utf8").split("\n");
      expect(lines).toHaveLength(30_001);
      expect(lines.slice(0, -1).every((line) => JSON.parse(line).code === "unauthenticated")).toBe(true);
      await log.close();
    } finally {
      fs.closeSync(fd);
    }
  });

  it("writes a trickle of records a page at a time, after the flush delay, not a write per record", async () => {
    const writes: number[] = [];
    const log = createDecisionLog({ mode: "denials", flushDelayMs: 50, sink: { write: async (bytes) => void writes.push(bytes.toString().split("\n").length - 1), close: async () => {} } });
    const started = performance.now();
    for (let i = 0; i < 20; i++) {
      log.offer(entry(deny()));
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    const offeringMs = performance.now() - started;
    await new Promise((resolve) => setTimeout(resolve, 120));
    expect(writes.reduce((a, b) => a + b, 0)).toBe(20);
    // One write per 50 ms of offering at most (plus the last page), however slowly the timers ran.
    expect(writes.length).toBeLessThanOrEqual(Math.ceil(offeringMs / 50) + 1);
    expect(writes.length).toBeLessThan(20);
    await log.close();
  });

  it("gives a record longer than a page a page of its own, whole", async () => {
    const pages: string[] = [];
    const log = createDecisionLog({ mode: "all", pageBytes: 256, sink: { write: async (bytes) => void pages.push(bytes.toString()), close: async () => {} } });
    log.offer(entry(deny()));
    log.offer(entry(deny(), `/api/payouts/${"é".repeat(300)}`));
    log.offer(entry(deny()));
    await log.flush();
    const lines = pages.join("").split("\n").filter((line) => line !== "");
    expect(lines.map((line) => JSON.parse(line).path)).toEqual(["/api/payouts", `/api/payouts/${"é".repeat(300)}`, "/api/payouts"]);
  });
});

describe("decision log: serve settings", () => {
  it.each([
    { name: "every denial on stdout by default, as the contract says", flags: {}, env: {}, expected: { decisionLog: { sink: { kind: "stdout" }, mode: "denials" } } },
    { name: "off when asked", flags: {}, env: { PORTCULLIS_DECISION_LOG_MODE: "off" }, expected: {} },
    { name: "a named sink turns on denials", flags: { decisionLog: "file:/tmp/d.jsonl" }, env: {}, expected: { decisionLog: { sink: { kind: "file", path: "/tmp/d.jsonl" }, mode: "denials", sampleRate: 0.01, maxFileBytes: 104857600, maxFiles: 5, capacity: 10000 } } },
    { name: "a mode alone writes to stdout", flags: { decisionLogMode: "all" }, env: {}, expected: { decisionLog: { sink: { kind: "stdout" }, mode: "all" } } },
    { name: "environment variables", flags: {}, env: { PORTCULLIS_DECISION_LOG_MODE: "sampled", PORTCULLIS_DECISION_LOG_SAMPLE_RATE: "0.25", PORTCULLIS_DECISION_LOG_MAX_FILE_BYTES: "10M", PORTCULLIS_DECISION_LOG_MAX_FILES: "0", PORTCULLIS_DECISION_LOG_BUFFER: "50" }, expected: { decisionLog: { mode: "sampled", sampleRate: 0.25, maxFileBytes: 10485760, maxFiles: 0, capacity: 50 } } },
    { name: "mode off wins over a sink", flags: { decisionLog: "stdout", decisionLogMode: "off" }, env: {}, expected: {} },
  ])("$name", ({ flags, env, expected }) => {
    const resolved = resolveDecisionLogSettings(flags, env);
    if (Object.keys(expected).length === 0) expect(resolved).toEqual({});
    else expect(resolved).toMatchObject(expected);
  });

  it.each([
    { flags: { decisionLog: "syslog" }, message: /--decision-log \(PORTCULLIS_DECISION_LOG\) `syslog`: expected stdout or file:PATH/ },
    { flags: { decisionLogMode: "some" }, message: /--decision-log-mode .*`some`/ },
    { flags: { decisionLogMode: "sampled", decisionLogSampleRate: "2" }, message: /--decision-log-sample-rate .*from 0 to 1/ },
    { flags: { decisionLogMode: "all", decisionLogMaxFileBytes: "12" }, message: /--decision-log-max-file-bytes .*at least 1024/ },
    { flags: { decisionLogMode: "all", decisionLogBuffer: "0" }, message: /--decision-log-buffer .*at least 1/ },
  ])("refuses $flags", ({ flags, message }) => {
    expect(() => resolveDecisionLogSettings(flags, {})).toThrow(message);
  });
});
