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
/** Slack for one poll interval and one local round trip. */
const POLL_SLACK_MS = 150;

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
    const { token, id } = seedToken(t.server, { name: "shared", role: "tenant_operator", keyLevel: "read_write" });
    expect(await allowed(token)).toBe(true);

    // Keep deciding (so the cache stays warm) while the other process revokes.
    let stop = false;
    const decisions: { atMs: number; allowed: boolean }[] = [];
    const loop = (async () => {
      while (!stop) {
        decisions.push({ allowed: await allowed(token), atMs: Date.now() });
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    })();
    const { changes, committedAtMs } = await runChild(id);
    expect(changes).toBe(1);

    const deadline = committedAtMs + BOUND_MS + POLL_SLACK_MS;
    while (Date.now() < deadline && !decisions.some((decision) => decision.atMs > committedAtMs && !decision.allowed)) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    stop = true;
    await loop;

    const firstDenial = decisions.find((decision) => decision.atMs > committedAtMs && !decision.allowed);
    expect(firstDenial, "no denial within the bound").toBeDefined();
    expect(firstDenial!.atMs - committedAtMs).toBeLessThanOrEqual(BOUND_MS + POLL_SLACK_MS);
    // Once denied, denied for good: no decision after the first denial allowed it.
    expect(decisions.filter((decision) => decision.atMs > firstDenial!.atMs).every((decision) => !decision.allowed)).toBe(true);
    // The server's own store sees the other process's audit row too.
    expect(t.server.store.listAudit({ tenant: "acme" })[0]).toMatchObject({ event: "api_token.revoked", actor: "other-process", tokenId: id });
  });
});
