/**
 * The `keys` commands: JWT signing keys (docs/jwt.md). Registered by
 * `main.ts`, which owns the program and error handling.
 */
import type { Command } from "commander";
import { resolvePaths } from "../config/config.js";
import { RETIRED_KEY_VERIFIES_MS, rotateSigningKey } from "../jwt/key-ring.js";
import type { StoredSigningKey } from "../jwt/signing-key-store.js";
import { openSqliteSigningKeyStore, type SqliteSigningKeyStore } from "../jwt/sqlite-signing-key-store.js";
import { resolveSecret } from "../store/resolve-secret.js";
import { TokenStore } from "../store/token-store.js";

/** Adds `keys rotate` and `keys list`. */
export function registerKeyCommands(program: Command): void {
  const keys = program.command("keys").description("jwt signing keys: rotate, list");
  keys
    .command("rotate")
    .description("add a new signing key and retire the current one; jwts it signed verify until they expire. Prints the new key id (stdout)")
    .option("--data-dir <dir>", "store folder (env PORTCULLIS_DATA_DIR, default data)")
    .action(async (flags: { dataDir?: string }) => {
      const dataDir = resolvePaths(flags).dataDir;
      await withKeyStore(dataDir, async (store) => {
        const nowMs = Date.now();
        const { added, retired } = await rotateSigningKey(store, resolveSecret(dataDir), nowMs);
        process.stdout.write(`${added.kid}\n`);
        const until = new Date(nowMs + RETIRED_KEY_VERIFIES_MS).toISOString();
        for (const kid of retired) process.stderr.write(`retired ${kid}: jwts it signed verify until they expire, and it leaves the jwks at ${until}\n`);
        process.stderr.write("servers sign with the new key within 10 s (at once when they see a jwt it signed)\n");
      });
    });
  keys
    .command("list")
    .description("list signing keys: id, created, retired, and whether each signs, still verifies, or is gone from the jwks")
    .option("--data-dir <dir>", "store folder (env PORTCULLIS_DATA_DIR, default data)")
    .option("--json", "print the keys as json (public keys only)")
    .action(async (flags: { dataDir?: string; json?: boolean }) => {
      await withKeyStore(resolvePaths(flags).dataDir, async (store) => {
        const nowMs = Date.now();
        const rows = (await store.listKeys()).map((key) => ({ kid: key.kid, algorithm: key.algorithm, createdAt: iso(key.createdAtMs), retiredAt: key.retiredAtMs === null ? null : iso(key.retiredAtMs), status: statusOf(key, nowMs), publicJwk: key.publicJwk }));
        if (flags.json === true) process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
        else for (const row of rows) process.stdout.write(`${row.kid}  ${row.status.padEnd(9)}  created ${row.createdAt}${row.retiredAt === null ? "" : `  retired ${row.retiredAt}`}\n`);
      });
    });
}

function statusOf(key: StoredSigningKey, nowMs: number): "signing" | "verifying" | "retired" {
  if (key.retiredAtMs === null) return "signing";
  return nowMs < key.retiredAtMs + RETIRED_KEY_VERIFIES_MS ? "verifying" : "retired";
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

/** Opens the key table of an existing store (never creates a store: a mistyped `--data-dir` is an error). */
async function withKeyStore(dataDir: string, run: (store: SqliteSigningKeyStore) => Promise<void>): Promise<void> {
  // Opening the token store first checks the folder, migrates the file and checks the secret.
  TokenStore.open({ dataDir, mustExist: true }).close();
  const store = openSqliteSigningKeyStore(dataDir);
  try {
    await run(store);
  } finally {
    store.close();
  }
}
