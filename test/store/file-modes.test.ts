/**
 * The store's files hold token hashes and tenant, name and control metadata:
 * they belong to the service account alone (0600), like `secret.key`, whatever
 * the process umask, and files left 0644 by earlier versions are tightened.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { DATABASE_FILE_NAME, TokenStore } from "../../src/store/token-store.js";

let dir: string;
let umask: number;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-modes-"));
  // the usual service umask, under which SQLite's own files come out 0644
  umask = process.umask(0o022);
});

afterEach(() => {
  process.umask(umask);
  fs.rmSync(dir, { recursive: true, force: true });
});

const modeOf = (file: string) => (fs.statSync(file).mode & 0o777).toString(8);
const storeFiles = (data: string) => [DATABASE_FILE_NAME, `${DATABASE_FILE_NAME}-wal`, `${DATABASE_FILE_NAME}-shm`, "secret.key"].map((name) => path.join(data, name));

async function writeSomething(store: TokenStore): Promise<void> {
  await store.create({ tenant: "acme", workspace: "main", environment: "production", prefix: "sk_live_", type: "service", name: "x", role: "tenant_operator" });
}

describe("store file modes", () => {
  it("creates the database, its -wal and -shm 0600, like the secret", async () => {
    const data = path.join(dir, "data");
    const store = TokenStore.open({ dataDir: data });
    await writeSomething(store);
    for (const file of storeFiles(data)) expect([file, modeOf(file)]).toEqual([file, "600"]);
    store.close();
  });

  it("tightens files an earlier version left readable by others", async () => {
    const data = path.join(dir, "data");
    const first = TokenStore.open({ dataDir: data });
    await writeSomething(first);
    first.close();
    fs.chmodSync(path.join(data, DATABASE_FILE_NAME), 0o644);
    const again = TokenStore.open({ dataDir: data });
    await writeSomething(again);
    for (const file of storeFiles(data)) expect([file, modeOf(file)]).toEqual([file, "600"]);
    again.close();
  });
});
