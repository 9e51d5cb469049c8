/**
 * What the benchmarks judge: request inputs, generated policy folders, and
 * token stores filled in bulk. Nothing here is timed.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import type { AuthzInput, TokenRecord } from "../src/engine/types.js";
import { loadPolicySet } from "../src/policy/load.js";
import type { CompiledPolicySet } from "../src/policy/types.js";
import { DATABASE_FILE_NAME, TokenStore } from "../src/store/token-store.js";
import { generateToken, hashToken } from "../src/token/index.js";

/** The repository root, whether this runs from `bench/` or `dist/bench/`. */
export const REPO_ROOT = (() => {
  const here = path.dirname(fileURLToPath(import.meta.url));
  return path.basename(path.dirname(here)) === "dist" ? path.resolve(here, "../..") : path.resolve(here, "..");
})();

export const BUNDLED_POLICY_DIR = path.join(REPO_ROOT, "policies");

/** The server secret every bench store uses (hex, as `PORTCULLIS_TOKEN_SECRET` takes it). */
export const BENCH_SECRET_HEX = "5e".repeat(32);
export const BENCH_SECRET = Buffer.from(BENCH_SECRET_HEX, "hex");

/** A fixed instant for in-process decisions: Monday 2026-11-23 10:00:00 UTC. */
export const NOW_MS = Date.UTC(2026, 10, 23, 10, 0, 0);

/** A fresh temporary folder; the caller removes it. */
export function tempDir(label: string): string {
  return mkdtempSync(path.join(os.tmpdir(), `portcullis-bench-${label}-`));
}

/** Loads a policy folder or throws with its errors. */
export function loadPolicyOrThrow(dir: string): CompiledPolicySet {
  const loaded = loadPolicySet(dir);
  if (!loaded.ok) throw new Error(`policy set ${dir} does not load: ${JSON.stringify(loaded.errors.slice(0, 3))}`);
  return loaded.policy;
}

/** A request as a transport would hand it over: raw strings, lower-case header names. */
export function input(fields: { method?: string; path?: string; host?: string; token?: string | null; sourceIp?: string }): AuthzInput {
  const headers = new Map<string, string>([
    ["user-agent", "bench/1.0"],
    ["accept", "application/json"],
  ]);
  if (fields.token != null) headers.set("authorization", `Bearer ${fields.token}`);
  return {
    method: fields.method ?? "GET",
    path: fields.path ?? "/api/payouts/po_123?page=2",
    host: fields.host ?? "api.example.com",
    headers,
    sourceIp: fields.sourceIp ?? "203.0.113.10",
    clientCertificate: null,
  };
}

/** A token record of the bundled set's production environment. */
export function tokenRecord(overrides: Partial<TokenRecord> = {}): TokenRecord {
  return {
    id: "tok_bench",
    tenant: "acme",
    workspace: "main",
    environment: "production",
    type: "service",
    name: "bench token",
    role: "tenant_operator",
    keyLevel: null,
    scopes: null,
    creatorRole: null,
    createdAtMs: NOW_MS - 86_400_000,
    expiresAtMs: null,
    revokedAtMs: null,
    service: null,
    controls: {},
    lineageId: overrides.id ?? "tok_bench",
    successorId: null,
    overlapEndsAtMs: null,
    ...overrides,
  };
}

/** Flips the last checksum character, so the token fails its checksum. */
export function breakChecksum(token: string): string {
  const last = token.at(-1)!;
  return token.slice(0, -1) + (last === "a" ? "b" : "a");
}

/**
 * Writes a policy folder with about `routes` routes: half endpoint groups
 * (`/api/m<i>/r<j>`), half operations under them, over 100 scope modules,
 * and one `admin` role. Returns the folder and a path in the middle of the set.
 */
export function writeGeneratedPolicy(routes: number): { dir: string; allowPath: string } {
  const dir = tempDir(`routes${routes}`);
  const modules = 100;
  const groups = Math.max(1, Math.ceil(routes / 2));
  const operations = Math.max(0, routes - groups);
  const scopes = Array.from({ length: modules }, (_, m) => ({ module: `m${m}`, scopes: [{ scope: `m${m}:read` }, { scope: `m${m}:write` }] }));
  const endpointGroups = Array.from({ length: groups }, (_, i) => ({
    basePath: `/api/m${i % modules}/r${i}`,
    readScope: `m${i % modules}:read`,
    writeScope: `m${i % modules}:write`,
  }));
  const operationSpecs = Array.from({ length: operations }, (_, i) => ({
    method: "POST",
    path: `/api/m${i % modules}/r${i % groups}/items/{itemId}/op${i}`,
    scope: `m${i % modules}:write`,
  }));
  const file = {
    policySet: { name: `generated-${routes}`, defaultEnvironment: "production" },
    environments: [{ name: "production", tokenPrefix: "sk_live_", hosts: ["api.example.com"] }],
    scopes,
    endpointGroups,
    operations: operationSpecs,
    // The allowed module only: the identity (and its scope header) stays as small as the bundled allow's.
    roles: [{ name: "admin", scopes: [`m${Math.floor(groups / 2) % modules}:*`] }],
  };
  writeFileSync(path.join(dir, "policy.json"), JSON.stringify(file));
  const middle = Math.floor(groups / 2);
  return { dir, allowPath: `/api/m${middle % modules}/r${middle}/items/it_42?page=2` };
}

/** Tokens of a bench store whose plaintext the bench kept, for look-ups and request bodies. */
export interface FilledStore {
  readonly dataDir: string;
  readonly total: number;
  /** Plaintext tokens of `role`/`keyLevel` kinds, stored like every other. */
  readonly known: Readonly<Record<string, readonly string[]>>;
  readonly insertMs: number;
}

/** A kind of token the bench keeps plaintexts of. */
export interface KnownTokenKind {
  readonly name: string;
  readonly count: number;
  readonly role: string;
  readonly keyLevel: string | null;
}

/**
 * Creates a store in `dataDir` holding `total` production tokens. The schema
 * comes from {@link TokenStore.open}; the rows go in through a second
 * connection in one transaction, because `create` (one audit row and one
 * transaction per token) would take minutes for a million. Fillers are hashes
 * of throw-away strings: the store only ever sees hashes.
 */
export function fillStore(dataDir: string, total: number, kinds: readonly KnownTokenKind[]): FilledStore {
  mkdirSync(dataDir, { recursive: true });
  TokenStore.open({ dataDir, secret: BENCH_SECRET }).close();
  const started = performance.now();
  const db = new Database(path.join(dataDir, DATABASE_FILE_NAME));
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = OFF");
  // Random hashes land all over the hash-keyed table: keep it in memory while it grows.
  db.pragma("cache_size = -512000");
  const insert = db.prepare(`
    INSERT INTO tokens (id, hash, seq, prefix, tenant, workspace, environment, type, name, role, key_level, created_at)
    VALUES (?, ?, ?, 'sk_live_', ?, 'main', 'production', 'service', 'bench', ?, ?, ?)`);
  const known: Record<string, string[]> = {};
  const createdAt = Date.now() - 86_400_000;
  let n = 0;
  db.transaction(() => {
    for (const kind of kinds) {
      const tokens: string[] = [];
      for (let i = 0; i < kind.count; i++, n++) {
        const token = generateToken("sk_live_");
        tokens.push(token);
        insert.run(`tok_b${n}`, hashToken(BENCH_SECRET, token), n + 1, `tenant${n % 1000}`, kind.role, kind.keyLevel, createdAt);
      }
      known[kind.name] = tokens;
    }
    for (; n < total; n++) {
      insert.run(`tok_b${n}`, hashToken(BENCH_SECRET, `filler-${n}`), n + 1, `tenant${n % 1000}`, "tenant_operator", null, createdAt);
    }
  })();
  db.pragma("wal_checkpoint(TRUNCATE)");
  db.close();
  return { dataDir, total: n, known, insertMs: performance.now() - started };
}

/**
 * V8 flags the server runs with, as `npm start` and the Dockerfile start it: a
 * young generation of at most 2 × 8 MB instead of V8's default 2 × 16 MB keeps
 * the heap V8 reserves, and so RSS, about 30 MB lower under load.
 */
export const SERVER_NODE_FLAGS: readonly string[] = ["--max-semi-space-size=8"];
