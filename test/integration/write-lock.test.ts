/**
 * Another process holding the store's write lock (a CLI command, a backup,
 * `sqlite3`) must never stall decisions: it checkpoints the WAL for a second,
 * then holds `BEGIN IMMEDIATE` for ten while decisions flow over HTTP, with
 * last-used stamps due every second and a token-management write waiting for
 * the lock. The slowest decision stays under 50 ms; the write answers
 * `unavailable` (retryable) and the stamps land once the lock is gone.
 */
import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { createInterface } from "node:readline";
import { setTimeout as delay } from "node:timers/promises";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DATABASE_FILE_NAME } from "../../src/store/token-store.js";
import { generateToken } from "../../src/token/index.js";
import { REPO_ROOT } from "../support/fixtures.js";
import { seedToken, startLoggedServer, tokenServiceClient, type LoggedServer } from "../lifecycle/helpers.js";

const CHECKPOINT_MS = 1_000;
const HOLD_MS = 10_000;
const SLOWEST_DECISION_MS = 50;

let t: LoggedServer;
const children: ChildProcess[] = [];

beforeAll(async () => {
  t = await startLoggedServer();
});

afterAll(async () => {
  for (const child of children) child.kill();
  await t?.stop();
});

/** Runs `script` with `args` and resolves to its stdout lines as they come. */
function run(script: string, args: string[]): { child: ChildProcess; lines: string[]; line(wanted: (line: string) => boolean): Promise<string> } {
  const started = spawn(process.execPath, [path.join(REPO_ROOT, "test", "fixtures", script), ...args], { stdio: ["ignore", "pipe", "inherit"] });
  children.push(started);
  const lines: string[] = [];
  const reader = createInterface({ input: started.stdout! });
  const waiters: Array<[(line: string) => boolean, (line: string) => void]> = [];
  reader.on("line", (line) => {
    lines.push(line);
    for (const [wanted, resolve] of waiters) if (wanted(line)) resolve(line);
  });
  return {
    child: started,
    lines,
    line: (wanted) => new Promise((resolve) => {
      const found = lines.find(wanted);
      if (found !== undefined) resolve(found);
      else waiters.push([wanted, resolve]);
    }),
  };
}

describe("a write lock held by another process", () => {
  // why retry: on a loaded shared machine a decision now and then waits tens of ms for a CPU, at random moments;
  // a lock wait is 5 s at every run (measured: 5,071 ms before the fix), so one retry cannot hide it
  it("never stalls a decision; writes wait off the event loop and are retried", { timeout: 60_000, retry: 1 }, async () => {
    const admin = await seedToken(t.server, { name: "lock admin" });
    const users = await Promise.all(Array.from({ length: 5 }, async (_, i) => await seedToken(t.server, { name: `user ${i}`, role: "tenant_operator" })));
    // known tokens (cached, re-read every second) and an unknown one (a store read every time)
    const tokens = [...users.map((user) => user.token), generateToken("sk_live_")];

    const holder = run("hold-write-lock.mjs", [path.join(t.dataDir, DATABASE_FILE_NAME), String(CHECKPOINT_MS), String(HOLD_MS)]);
    await holder.line((line) => line === "checkpointing");
    // The client is another process too, so that a stalled event loop here cannot pause its clock.
    const client = run("paced-decisions.mjs", [String(t.server.httpPort), String(CHECKPOINT_MS + HOLD_MS), ...tokens]);
    await holder.line((line) => line === "locked");
    const lockedAtMs = performance.now();
    await delay(500);
    // A management write while the lock is held: it must neither stall decisions nor fail as `internal`.
    const outcome = await tokenServiceClient(t.httpUrl, admin.token)
      .createToken({ workspace: "main", name: "during the lock", role: "tenant_brand" })
      .then((value) => value, (error: unknown) => ConnectError.from(error));
    const writeSettledAfterMs = performance.now() - lockedAtMs;

    const report = JSON.parse(await client.line((line) => line.startsWith("{"))) as { count: number; statuses: Record<string, number>; medianMs: number; slowestMs: number };
    await holder.line((line) => line === "released");
    console.log(JSON.stringify(report));
    console.log(`${report.count} decisions during checkpoints and the lock: median ${report.medianMs.toFixed(2)} ms, slowest ${report.slowestMs.toFixed(2)} ms`);
    expect(report.count).toBeGreaterThan(500);
    expect(Object.keys(report.statuses).sort()).toEqual(["200", "401"]);
    expect(report.slowestMs).toBeLessThan(SLOWEST_DECISION_MS);

    expect(outcome).toBeInstanceOf(ConnectError);
    expect((outcome as ConnectError).code).toBe(Code.Unavailable);
    // it retried off the loop for its budget, then answered while the lock was still held
    expect(writeSettledAfterMs).toBeGreaterThan(4_000);
    expect(writeSettledAfterMs).toBeLessThan(HOLD_MS);

    // the stamps that failed while the lock was held are written by a later flush
    await t.server.usage.flush();
    for (const user of users) expect((await t.server.store.getListing(user.id))!.lastUsedAtMs).not.toBeNull();
    expect(t.logs()).toMatch(/last-used stamps not written/);
    // and the management API writes again
    const after = await tokenServiceClient(t.httpUrl, admin.token).createToken({ workspace: "main", name: "after the lock", role: "tenant_brand" });
    expect(after.token?.name).toBe("after the lock");
  });
});
