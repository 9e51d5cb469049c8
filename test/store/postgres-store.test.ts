/**
 * What only the PostgreSQL store has to prove beyond the shared contract:
 * several stores (replicas) on one database, its change feed between them,
 * locks that hold across connections, and the secret's fingerprint.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { PostgresStore } from "../../src/store/postgres/postgres-store.js";
import { StoreError } from "../../src/store/store-error.js";
import type { StoredToken } from "../../src/store/store-interfaces.js";
import { createTestDatabase, postgresUnavailableReason, type TestDatabase } from "../support/postgres.js";

const unavailable = await postgresUnavailableReason();

let counter = 0;
function storedToken(overrides: Partial<StoredToken> = {}): StoredToken {
  counter++;
  const id = overrides.id ?? `tok_test${String(counter).padStart(22, "0")}`;
  return {
    id,
    hash: `hash-${id}`,
    prefix: "sk_live_",
    tenant: "acme",
    workspace: "main",
    environment: "live",
    type: "service",
    name: `token ${counter}`,
    role: "billing_reader",
    keyLevel: null,
    scopes: null,
    creator: null,
    creatorRole: null,
    createdAtMs: 1_700_000_000_000 + counter,
    expiresAtMs: null,
    revokedAtMs: null,
    service: null,
    controls: {},
    lineageId: id,
    successorId: null,
    overlapEndsAtMs: null,
    revokedBy: null,
    lastUsedAtMs: null,
    useCount: 0,
    predecessorId: null,
    rotatedAtMs: null,
    revokedReason: null,
    ...overrides,
  };
}

async function eventually(check: () => boolean, timeoutMs: number): Promise<number> {
  const started = Date.now();
  while (!check()) {
    if (Date.now() - started > timeoutMs) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return Date.now() - started;
}

describe.skipIf(unavailable !== null)("PostgreSQL store across replicas", () => {
  let database: TestDatabase;
  let a: PostgresStore;
  let b: PostgresStore;
  const secret = randomBytes(32);
  beforeAll(async () => {
    database = await createTestDatabase();
    [a, b] = await Promise.all([
      PostgresStore.open({ url: database.url, secret, changeFeed: true }),
      PostgresStore.open({ url: database.url, secret, changeFeed: true }),
    ]);
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
    await database?.drop();
  });

  it("shows a token written through one replica to the other, with every field", async () => {
    const token = storedToken({ scopes: ["invoices:read"], controls: { ipAllowlist: ["10.0.0.0/8"] }, expiresAtMs: 1_900_000_000_000, service: "billing" });
    await a.transaction((tx) => tx.tokens.insert(token));
    const { hash: _hash, ...listing } = token;
    expect(await b.tokens.byId(token.id)).toEqual(listing);
    const record = await b.tokens.findByHash(token.hash);
    expect(record?.scopes).toEqual(["invoices:read"]);
    expect(record?.controls).toEqual({ ipAllowlist: ["10.0.0.0/8"] });
    const clash = await b.transaction((tx) => tx.tokens.insert({ ...storedToken(), hash: token.hash })).catch((error: unknown) => error);
    expect((clash as StoreError).kind).toBe("conflict");
  });

  it("tells the other replica which tokens changed, after commit and never on rollback", async () => {
    const token = storedToken();
    await a.transaction((tx) => tx.tokens.insert(token));
    const heard: string[][] = [];
    const stop = b.onTokensChanged((ids) => heard.push([...ids]));
    try {
      await a
        .transaction(async (tx) => {
          await tx.tokens.revoke(token.id, { atMs: 1, by: "ops", reason: null });
          tx.tokensChanged([token.id]);
          throw new Error("changed my mind");
        })
        .catch(() => undefined);
      expect((await b.tokens.byId(token.id))?.revokedAtMs).toBeNull();
      await a.transaction(async (tx) => {
        expect(await tx.tokens.revoke(token.id, { atMs: 2, by: "ops", reason: "leaked" })).toBe(true);
        tx.tokensChanged([token.id, token.id]);
      });
      const waitedMs = await eventually(() => heard.some((ids) => ids.includes(token.id)), 1_000);
      expect(heard.filter((ids) => ids.includes(token.id))).toEqual([[token.id]]);
      expect(waitedMs).toBeLessThan(1_000);
      expect((await b.tokens.findByHash(token.hash))?.revokedAtMs).toBe(2);
    } finally {
      stop();
    }
  });

  it("moves the other replica's administrative version when a tenant is suspended", async () => {
    const before = b.administrativeStateVersion;
    await a.transaction(async (tx) => {
      await tx.tenantState.suspendTenant({ tenant: "globex", suspendedAtMs: 5, suspendedBy: "ops", reason: null });
      tx.administrativeStateChanged();
    });
    await eventually(() => b.administrativeStateVersion > before, 1_000);
    const state = await b.tenantState.readAdministrativeState();
    expect([...state.suspendedTenants]).toContain("globex");
  });

  it("keeps a cap under concurrent creation from two replicas, with the lock the lifecycle takes", async () => {
    const cap = 5;
    const attempt = (store: PostgresStore) =>
      store.transaction(async (tx) => {
        await tx.lock("tenant:capped");
        const active = await tx.tokens.countActive({ tenant: "capped", type: "service" }, Date.now());
        if (active >= cap) return false;
        // why: widen the window between count and insert, where a missing lock would let both through
        await new Promise((resolve) => setTimeout(resolve, 5));
        await tx.tokens.insert(storedToken({ tenant: "capped" }));
        return true;
      });
    const results = await Promise.all(Array.from({ length: 20 }, (_, index) => attempt(index % 2 === 0 ? a : b)));
    expect(results.filter(Boolean)).toHaveLength(cap);
    expect(await a.tokens.countActive({ tenant: "capped", type: "service" }, Date.now())).toBe(cap);
  });

  it("adds use stamps from both replicas without losing counts or deadlocking", async () => {
    const tokens = Array.from({ length: 20 }, () => storedToken());
    await a.transaction(async (tx) => {
      for (const token of tokens) await tx.tokens.insert(token);
    });
    const forward = new Map(tokens.map((token, index) => [token.id, { lastUsedAtMs: 1_000 + index, count: 1 }]));
    const backward = new Map([...tokens].reverse().map((token, index) => [token.id, { lastUsedAtMs: 500 + index, count: 2 }]));
    await Promise.all(Array.from({ length: 10 }, (_, index) => (index % 2 === 0 ? a.tokens.recordUse(forward) : b.tokens.recordUse(backward))));
    const listed = await a.tokens.list({ tenant: "acme", includeRevoked: true });
    for (const [index, token] of tokens.entries()) {
      const row = listed.find((listing) => listing.id === token.id)!;
      expect(row.useCount).toBe(5 * 1 + 5 * 2);
      expect(row.lastUsedAtMs).toBe(1_000 + index);
    }
  });

  it("shares JWT signing keys between replicas; a retirement is kept from the first time", async () => {
    const key = { kid: "k1", algorithm: "EdDSA" as const, publicJwk: { kty: "OKP", crv: "Ed25519", x: "abc" } as never, sealedPrivateKey: "sealed", createdAtMs: 10, retiredAtMs: null };
    await a.signingKeys.addKey(key);
    expect(await b.signingKeys.listKeys()).toEqual([key]);
    await b.signingKeys.retireKey("k1", 20);
    await a.signingKeys.retireKey("k1", 30);
    expect(await a.signingKeys.listKeys()).toEqual([{ ...key, retiredAtMs: 20 }]);
  });

  it("refuses a replica whose token secret differs from the store's", async () => {
    const error = await PostgresStore.open({ url: database.url, secret: randomBytes(32) }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(StoreError);
    expect((error as StoreError).kind).toBe("secret");
    expect((error as StoreError).message).toMatch(/PORTCULLIS_TOKEN_SECRET/);
  });

  it("answers unavailable, not a crash, when the server cannot be reached", async () => {
    const error = await PostgresStore.open({ url: "postgres://postgres@127.0.0.1:1/none", timeoutMs: 1_000 }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(StoreError);
    expect((error as StoreError).kind).toBe("unavailable");
  });
});
