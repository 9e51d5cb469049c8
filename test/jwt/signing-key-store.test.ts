/**
 * The `SigningKeyStore` contract, run against every implementation (the
 * in-memory reference and SQLite; PostgreSQL joins the table when it exists),
 * and what only SQLite has to show: keys survive a reopen, sealed.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { randomBytes } from "node:crypto";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { ensureSigningKey, openKeyRing, rotateSigningKey } from "../../src/jwt/key-ring.js";
import { generateSigningKey, unsealPrivateKey } from "../../src/jwt/sealed-key.js";
import type { SigningKeyStore } from "../../src/jwt/signing-key-store.js";
import { openSqliteSigningKeyStore } from "../../src/jwt/sqlite-signing-key-store.js";
import { DATABASE_FILE_NAME, TokenStore } from "../../src/store/token-store.js";
import { memorySigningKeyStore } from "./support.js";

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

function sqliteStore(): SigningKeyStore {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-keys-"));
  TokenStore.open({ dataDir, secret: randomBytes(32) }).close();
  const store = openSqliteSigningKeyStore(dataDir);
  cleanups.push(() => {
    store.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });
  return store;
}

const implementations: [string, () => SigningKeyStore][] = [
  ["memory", () => memorySigningKeyStore()],
  ["sqlite", sqliteStore],
];

describe.each(implementations)("SigningKeyStore: %s", (_name, open) => {
  const secret = randomBytes(32);

  it("lists what was added, oldest first, retired keys included", async () => {
    const store = open();
    const a = generateSigningKey(secret, 1_000);
    const b = generateSigningKey(secret, 2_000);
    await store.addKey(b);
    await store.addKey(a);
    await store.retireKey(a.kid, 3_000);
    expect(await store.listKeys()).toEqual([{ ...a, retiredAtMs: 3_000 }, b]);
  });

  it("keeps a key's first retirement", async () => {
    const store = open();
    const a = generateSigningKey(secret, 1_000);
    await store.addKey(a);
    await store.retireKey(a.kid, 2_000);
    await store.retireKey(a.kid, 5_000);
    expect((await store.listKeys())[0]!.retiredAtMs).toBe(2_000);
  });

  it("ensure adds one key only when none signs; rotate adds one and retires the rest", async () => {
    const store = open();
    const first = await ensureSigningKey(store, secret, 1_000);
    expect(first).not.toBeNull();
    expect(await ensureSigningKey(store, secret, 1_500)).toBeNull();
    const { added, retired } = await rotateSigningKey(store, secret, 2_000);
    expect(retired).toEqual([first!.kid]);
    const keys = await store.listKeys();
    expect(keys.map((key) => [key.kid, key.retiredAtMs])).toEqual([
      [first!.kid, 2_000],
      [added.kid, null],
    ]);
    const ring = await openKeyRing({ store, secret, now: () => 2_000, refreshEveryMs: 0 });
    expect(ring.signingKey()?.kid).toBe(added.kid);
    ring.close();
  });
});

describe("SQLite signing keys", () => {
  it("persist across reopening, with the private key sealed in the file", async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-keys-"));
    cleanups.push(() => fs.rmSync(dataDir, { recursive: true, force: true }));
    const secret = randomBytes(32);
    TokenStore.open({ dataDir, secret }).close();
    const first = openSqliteSigningKeyStore(dataDir);
    const key = (await ensureSigningKey(first, secret, 1_000))!;
    first.close();
    const reopened = openSqliteSigningKeyStore(dataDir);
    expect(reopened.listKeys()).toEqual([key]);
    reopened.close();
    const db = new Database(path.join(dataDir, DATABASE_FILE_NAME), { readonly: true });
    const row = db.prepare("SELECT sealed_private_key FROM signing_keys").get() as { sealed_private_key: string };
    db.close();
    const pkcs8 = unsealPrivateKey(secret, key).export({ format: "der", type: "pkcs8" });
    expect(Buffer.from(row.sealed_private_key, "base64url").includes(pkcs8.subarray(-32))).toBe(false);
  });

  it("refuses a folder without a token store", () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-keys-"));
    cleanups.push(() => fs.rmSync(dataDir, { recursive: true, force: true }));
    expect(() => openSqliteSigningKeyStore(dataDir)).toThrow();
  });
});
