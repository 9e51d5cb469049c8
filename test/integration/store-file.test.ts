/**
 * The real server notices, within the same second, that its store file was
 * replaced (a backup moved over it) or deleted: it reads the new file, so a
 * revocation written there is seen; with no file it fails closed (decisions
 * `unavailable`, `/readyz` not ready) until a file is back.
 */
import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DATABASE_FILE_NAME } from "../../src/store/token-store.js";
import { pollUntil, seedToken, startLoggedServer, type LoggedServer } from "../lifecycle/helpers.js";

/** The bound the README promises for seeing another process's change. */
const BOUND_MS = 1_000;

let t: LoggedServer;
let file: string;

beforeAll(async () => {
  t = await startLoggedServer();
  file = path.join(t.dataDir, DATABASE_FILE_NAME);
});

afterAll(async () => {
  await t?.stop();
});

async function decide(token: string): Promise<{ status: number; code: string; reason: string }> {
  const response = await fetch(`${t.httpUrl}/portcullis.v1.AuthorizationService/Authorize`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ method: "GET", path: "/api/payouts", host: "api.example.com", sourceIp: "203.0.113.10", headers: [{ name: "authorization", value: `Bearer ${token}` }] }),
  });
  const json = (await response.json()) as { httpStatus: number; code: string; reason?: string };
  return { status: json.httpStatus, code: json.code, reason: json.reason ?? "" };
}

async function readyz(): Promise<number> {
  return (await fetch(`${t.httpUrl}/readyz`)).status;
}

/** A consistent copy of the live store, as `sqlite3 .backup` or `VACUUM INTO` makes one, changed by `edit`. */
function backupWith(name: string, edit: (db: Database.Database) => void): string {
  const copy = path.join(t.dataDir, name);
  const source = new Database(file, { readonly: true });
  source.exec(`VACUUM INTO '${copy.replace(/'/g, "''")}'`);
  source.close();
  const db = new Database(copy);
  edit(db);
  db.close();
  return copy;
}

function revokeIn(db: Database.Database, id: string): void {
  db.prepare("UPDATE tokens SET revoked_at = ?, revoked_by = 'restore' WHERE id = ?").run(Date.now(), id);
}

describe("the store file changes under the server", () => {
  it("reads a file moved over the store within a second, then sees revocations written to it", async () => {
    const kept = await seedToken(t.server, { name: "kept", role: "tenant_operator" });
    const revokedInBackup = await seedToken(t.server, { name: "revoked in the backup", role: "tenant_operator" });
    const revokedLater = await seedToken(t.server, { name: "revoked later", role: "tenant_operator" });
    for (const token of [kept, revokedInBackup, revokedLater]) expect((await decide(token.token)).code).toBe("ok");

    const backup = backupWith("restore.db", (db) => revokeIn(db, revokedInBackup.id));
    const before = fs.statSync(file).ino;
    fs.renameSync(backup, file);
    expect(fs.statSync(file).ino).not.toBe(before);
    const seenAfterMs = await pollUntil(async () => (await decide(revokedInBackup.token)).reason === "revoked", Date.now() + BOUND_MS);
    expect(seenAfterMs, "the restored file's revocation was not seen within a second").not.toBeNull();
    expect(await decide(kept.token)).toMatchObject({ code: "ok" });

    // A CLI-like process revokes on the new file: seen within the token cache's second.
    const other = new Database(file);
    other.pragma("busy_timeout = 5000");
    revokeIn(other, revokedLater.id);
    other.close();
    const revokedAfterMs = await pollUntil(async () => (await decide(revokedLater.token)).reason === "revoked", Date.now() + BOUND_MS + 100);
    expect(revokedAfterMs, "a revocation on the new file was not seen").not.toBeNull();
    expect(await readyz()).toBe(200);
    expect(t.logs()).toMatch(/token store file was replaced/);
  });

  it("fails closed when the file is deleted, and recovers when one is restored", async () => {
    const token = await seedToken(t.server, { name: "survivor", role: "tenant_operator" });
    expect((await decide(token.token)).code).toBe("ok");
    const backup = backupWith("later.db", () => undefined);

    fs.rmSync(file);
    const failedAfterMs = await pollUntil(async () => (await decide(token.token)).code === "unavailable", Date.now() + BOUND_MS);
    expect(failedAfterMs, "decisions kept answering from a deleted store").not.toBeNull();
    expect(await decide(token.token)).toMatchObject({ status: 503, code: "unavailable" });
    expect(await readyz()).toBe(503);
    // the server never recreates the file itself
    expect(fs.existsSync(file)).toBe(false);

    fs.renameSync(backup, file);
    const backAfterMs = await pollUntil(async () => (await decide(token.token)).code === "ok", Date.now() + BOUND_MS);
    expect(backAfterMs, "the restored store was not picked up").not.toBeNull();
    expect(await readyz()).toBe(200);
  });
});
