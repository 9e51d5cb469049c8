/**
 * Revocation across processes: another process sharing the store file revokes
 * a token while this server keeps deciding on it. The server must deny within
 * one second of the other process's commit (the token cache's trust bound),
 * measured, not slept.
 */
import { spawn } from "node:child_process";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DATABASE_FILE_NAME } from "../../src/store/token-store.js";
import { REPO_ROOT } from "../support/fixtures.js";
import { seedToken, startLoggedServer, type LoggedServer } from "./helpers.js";

const CHILD = path.join(REPO_ROOT, "test", "fixtures", "revoke-in-other-process.mjs");
/** The bound the token cache promises. */
const BOUND_MS = 1_000;
/** lru-cache reads its clock at 1 ms resolution, and Date.now and performance.now tick apart. */
const CLOCK_SLACK_MS = 5;

let t: LoggedServer;

beforeAll(async () => {
  t = await startLoggedServer();
});

afterAll(async () => {
  await t?.stop();
});

async function allowed(token: string): Promise<boolean> {
  const response = await fetch(`${t.httpUrl}/portcullis.v1.AuthorizationService/Authorize`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ method: "GET", path: "/api/payouts", host: "api.example.com", headers: [{ name: "authorization", value: `Bearer ${token}` }] }),
  });
  const json = (await response.json()) as { allowed?: boolean; reason?: string };
  if (json.allowed !== true && json.reason !== "revoked") throw new Error(`unexpected decision ${JSON.stringify(json)}`);
  return json.allowed === true;
}

function runChild(tokenId: string): Promise<{ changes: number; committedAtMs: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD, path.join(t.dataDir, DATABASE_FILE_NAME), tokenId], { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (err += chunk.toString()));
    child.on("error", reject);
    child.on("exit", (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`child exited ${code}: ${err}`))));
  });
}

describe("revocation by another process", () => {
  it("is seen by this server within one second of the other process's commit", async () => {
    const { token, id } = await seedToken(t.server, { name: "shared", role: "tenant_operator", keyLevel: "read_write" });
    expect(await allowed(token)).toBe(true);

    // Keep deciding (so the cache stays warm) while the other process revokes.
    // A request's send time is a lower bound on when the server decided it, so
    // "every request sent after commit + 1 s is denied" states the bound exactly,
    // however slow the machine makes the round trips.
    let stop = false;
    const decisions: { sentAtMs: number; allowed: boolean }[] = [];
    const loop = (async () => {
      while (!stop) {
        const sentAtMs = Date.now();
        decisions.push({ sentAtMs, allowed: await allowed(token) });
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    })();
    const { changes, committedAtMs } = await runChild(id);
    expect(changes).toBe(1);

    const boundAtMs = committedAtMs + BOUND_MS + CLOCK_SLACK_MS;
    const afterBound = () => decisions.filter((decision) => decision.sentAtMs > boundAtMs);
    // Bounded wait: until a few requests were sent past the bound, at most 10 s.
    const giveUpAtMs = Date.now() + 10_000;
    while (afterBound().length < 3 && Date.now() < giveUpAtMs) await new Promise((resolve) => setTimeout(resolve, 20));
    stop = true;
    await loop;

    expect(afterBound().length, "no request was sent after the bound").toBeGreaterThan(0);
    expect(afterBound().filter((decision) => decision.allowed), "allowed after the 1 s bound").toEqual([]);
    const firstDenial = decisions.findIndex((decision) => !decision.allowed);
    // Once denied, denied for good.
    expect(decisions.slice(firstDenial).every((decision) => !decision.allowed)).toBe(true);
    // The server's own store sees the other process's audit row too.
    expect((await t.server.store.listAudit({ tenant: "acme" }))[0]).toMatchObject({ event: "api_token.revoked", actor: "other-process", tokenId: id });
  });
});
