/**
 * A store that cannot be written (disk full, a file size limit, an I/O error)
 * answers the management API with `unavailable` (retryable), never `internal`,
 * while decisions keep working from reads. The write failure is real: this
 * process's file size limit (RLIMIT_FSIZE, set with util-linux `prlimit`) is
 * lowered so that SQLite's next WAL append fails in the kernel, as it does on
 * a full disk.
 */
import { execFileSync } from "node:child_process";
import path from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DATABASE_FILE_NAME } from "../../src/store/token-store.js";
import { generateToken } from "../../src/token/index.js";
import { seedToken, startLoggedServer, tokenServiceClient, type LoggedServer } from "../lifecycle/helpers.js";

let t: LoggedServer;

beforeAll(async () => {
  t = await startLoggedServer();
});

afterAll(async () => {
  await t?.stop();
});

/** Sets this process's soft file size limit; `unlimited` restores it. */
function fileSizeLimit(value: string): void {
  execFileSync("prlimit", ["--pid", String(process.pid), `--fsize=${value}:`]);
}

async function decide(token: string): Promise<string> {
  const response = await fetch(`${t.httpUrl}/portcullis.v1.AuthorizationService/Authorize`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ method: "GET", path: "/api/payouts", host: "api.example.com", headers: [{ name: "authorization", value: `Bearer ${token}` }] }),
  });
  return ((await response.json()) as { code: string }).code;
}

describe("a store that cannot be written", () => {
  it("answers token management with unavailable and keeps deciding", async () => {
    const admin = await seedToken(t.server, { name: "full-disk admin" });
    const user = await seedToken(t.server, { name: "full-disk user", role: "tenant_operator" });
    // an empty WAL, so that the next commit must grow a file
    const other = new Database(path.join(t.dataDir, DATABASE_FILE_NAME));
    other.pragma("wal_checkpoint(TRUNCATE)");
    other.close();

    const client = tokenServiceClient(t.httpUrl, admin.token);
    let outcome: unknown;
    let decisions: string[];
    fileSizeLimit("1");
    try {
      outcome = await client.createToken({ workspace: "main", name: "no room", role: "tenant_brand" }).catch((error: unknown) => ConnectError.from(error));
      decisions = [await decide(user.token), await decide(generateToken("sk_live_"))];
    } finally {
      fileSizeLimit("unlimited");
    }
    expect(outcome).toBeInstanceOf(ConnectError);
    expect({ code: (outcome as ConnectError).code, message: (outcome as ConnectError).rawMessage }).toEqual({ code: Code.Unavailable, message: "the token store cannot be used right now; retry" });
    expect(decisions).toEqual(["ok", "unauthenticated"]);

    const created = await client.createToken({ workspace: "main", name: "room again", role: "tenant_brand" });
    expect(created.token?.name).toBe("room again");
  });
});
