/**
 * Shared test fixtures: the bundled policy set, tokens made with the real token
 * format, and requests built from a few fields.
 */
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { AuthzInput, TokenRecord } from "../../src/engine/types.js";
import { loadPolicySet } from "../../src/policy/load.js";
import type { CompiledPolicySet } from "../../src/policy/types.js";
import { generateToken } from "../../src/token/index.js";

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const EXAMPLE_POLICY_DIR = path.join(REPO_ROOT, "policies");

/** A fixed instant: Monday 2026-11-23 10:00:00 UTC. */
export const NOW_MS = Date.UTC(2026, 10, 23, 10, 0, 0);

let examplePolicy: CompiledPolicySet | undefined;

/** The bundled example policy set, loaded once per test file. */
export function loadExamplePolicy(): CompiledPolicySet {
  if (examplePolicy !== undefined) return examplePolicy;
  const loaded = loadPolicySet(EXAMPLE_POLICY_DIR);
  if (!loaded.ok) throw new Error(`example policy set does not load: ${JSON.stringify(loaded.errors)}`);
  examplePolicy = loaded.policy;
  return examplePolicy;
}

let nextId = 1;

/** A token string with the environment's prefix and a record for it. */
export function makeToken(overrides: Partial<TokenRecord> = {}, prefix = "sk_live_"): { token: string; record: TokenRecord } {
  const id = overrides.id ?? `tok_test${nextId++}`;
  const record: TokenRecord = {
    id,
    tenant: "acme",
    workspace: "main",
    environment: "production",
    type: "service",
    name: "test token",
    role: "tenant_operator",
    keyLevel: null,
    scopes: null,
    creatorRole: null,
    createdAtMs: NOW_MS - 86_400_000,
    expiresAtMs: null,
    revokedAtMs: null,
    service: null,
    controls: {},
    lineageId: id,
    successorId: null,
    overlapEndsAtMs: null,
    ...overrides,
  };
  return { token: generateToken(prefix), record };
}

/** A request to `api.example.com` (production) from a public address. */
export function request(fields: Partial<Omit<AuthzInput, "headers">> & { headers?: Record<string, string>; token?: string } = {}): AuthzInput {
  const headers = new Map<string, string>(Object.entries(fields.headers ?? {}).map(([name, value]) => [name.toLowerCase(), value]));
  if (fields.token !== undefined) headers.set("authorization", `Bearer ${fields.token}`);
  return {
    method: fields.method ?? "GET",
    path: fields.path ?? "/api/payouts",
    host: fields.host ?? "api.example.com",
    headers,
    sourceIp: fields.sourceIp ?? "203.0.113.10",
    clientCertificate: fields.clientCertificate ?? null,
  };
}
