/**
 * The store contract: what every implementation of `store-interfaces.ts`
 * (SQLite, PostgreSQL) must do, tested through its interfaces and the token
 * lifecycle over them. Each implementation's test file calls
 * {@link runStoreContract} with a target that makes a fresh, empty database.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createTokenLifecycle, type TokenLifecycle } from "../../src/lifecycle/token-lifecycle.js";
import type { CreateTokenSpec } from "../../src/lifecycle/create-spec.js";
import { StoreError } from "../../src/store/store-error.js";
import type { Store } from "../../src/store/store-interfaces.js";
import { hashToken } from "../../src/token/hash.js";

/** One fresh database; every {@link open} is a separate store object (its own connection), as another process would have. */
export interface ContractDatabase {
  open(): Promise<Store>;
  /** Closes nothing it did not open; drops the database. */
  drop(): Promise<void>;
}

/** What an implementation's test file hands to {@link runStoreContract}. */
export interface ContractTarget {
  /** Makes a new, empty, migrated database for one test. */
  create(): Promise<ContractDatabase>;
}

const SECRET = Buffer.alloc(32, 7);
const T0 = 1_750_000_000_000;

const SERVICE: CreateTokenSpec = {
  tenant: "acme",
  workspace: "main",
  environment: "live",
  prefix: "sk_live_",
  type: "service",
  name: "billing",
  role: "reader",
  actor: "test",
};

async function rejection(promise: Promise<unknown>): Promise<StoreError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof StoreError) return error;
    throw error;
  }
  throw new Error("expected a StoreError, got success");
}

/** Registers the contract tests for one implementation. */
export function runStoreContract(name: string, target: ContractTarget): void {
  describe(`store contract: ${name}`, () => {
    let database: ContractDatabase;
    let store: Store;
    let lifecycle: TokenLifecycle;
    let nowMs: number;
    const opened: Store[] = [];
    const open = async (): Promise<{ store: Store; lifecycle: TokenLifecycle }> => {
      const s = await database.open();
      opened.push(s);
      return { store: s, lifecycle: createTokenLifecycle({ store: s, secret: SECRET, now: () => nowMs }) };
    };

    beforeEach(async () => {
      nowMs = T0;
      database = await target.create();
      ({ store, lifecycle } = await open());
    });

    afterEach(async () => {
      for (const s of opened.splice(0)) await s.close();
      await database.drop();
    });

    it("creates a token that reads back by id and by hash, and only its hash finds it", async () => {
      const { token, record } = await lifecycle.create({ ...SERVICE, scopes: ["billing:read"], controls: { ipAllowlist: ["10.0.0.0/8"] }, service: "sync" });
      const listing = await store.tokens.byId(record.id);
      expect(listing).toMatchObject({ ...record, prefix: "sk_live_", creator: null, useCount: 0, lastUsedAtMs: null, predecessorId: null });
      expect(await store.tokens.findByHash(hashToken(SECRET, token))).toEqual(record);
      expect(await store.tokens.findByHash(hashToken(SECRET, `${token}x`))).toBeUndefined();
      expect(await store.tokens.byId("tok_unknown")).toBeUndefined();
      expect(record).toMatchObject({ lineageId: record.id, successorId: null, overlapEndsAtMs: null, createdAtMs: T0, scopes: ["billing:read"], service: "sync" });
    });

    it("refuses a duplicate id or hash with conflict", async () => {
      const { record } = await lifecycle.create(SERVICE);
      const listing = (await store.tokens.byId(record.id))!;
      const error = await rejection(store.tokens.insert({ ...listing, hash: "another-hash" }));
      expect(error.kind).toBe("conflict");
    });

    it("lists in creation order, filtered by tenant and workspace, revoked ones only when asked", async () => {
      const a = (await lifecycle.create({ ...SERVICE, name: "a" })).record;
      nowMs += 1;
      const b = (await lifecycle.create({ ...SERVICE, name: "b", workspace: "ops" })).record;
      const c = (await lifecycle.create({ ...SERVICE, name: "c", tenant: "other" })).record;
      await lifecycle.revoke(a.id, "test");
      const ids = async (filter: Parameters<Store["tokens"]["list"]>[0]) => (await store.tokens.list(filter)).map((row) => row.id);
      expect(await ids({})).toEqual([b.id, c.id]);
      expect(await ids({ includeRevoked: true })).toEqual([a.id, b.id, c.id]);
      expect(await ids({ tenant: "acme", includeRevoked: true })).toEqual([a.id, b.id]);
      expect(await ids({ tenant: "acme", workspace: "ops" })).toEqual([b.id]);
    });

    it("counts active tokens: not revoked, not expired, not rotated away", async () => {
      const a = (await lifecycle.create({ ...SERVICE, name: "a" })).record;
      await lifecycle.create({ ...SERVICE, name: "b", expiresAtMs: T0 + 1_000 });
      await lifecycle.create({ ...SERVICE, name: "c", type: "user", creator: "ann", creatorRole: "admin" });
      await lifecycle.rotate(a.id, { overlapMs: 60_000, actor: "test" });
      expect(await store.tokens.countActive({ tenant: "acme", type: "service" }, nowMs)).toBe(2);
      expect(await store.tokens.countActive({ tenant: "acme", type: "service" }, T0 + 1_000)).toBe(1);
      expect(await store.tokens.countActive({ tenant: "acme", type: "user", creator: "ann" }, nowMs)).toBe(1);
      expect(await store.tokens.countActive({ tenant: "acme", type: "user", creator: "bob" }, nowMs)).toBe(0);
    });

    it("lets exactly one of two concurrent creations at the cap win, within one store object and across two", async () => {
      const limits = { serviceTokensPerTenant: 1, userTokensPerCreator: null };
      const one = await Promise.allSettled([lifecycle.create({ ...SERVICE, limits }), lifecycle.create({ ...SERVICE, limits })]);
      expect(one.filter((r) => r.status === "fulfilled")).toHaveLength(1);
      const other = await open();
      const spec = { ...SERVICE, tenant: "beta", limits };
      const two = await Promise.allSettled([lifecycle.create(spec), other.lifecycle.create(spec), lifecycle.create(spec), other.lifecycle.create(spec)]);
      expect(two.filter((r) => r.status === "fulfilled")).toHaveLength(1);
      for (const r of [...one, ...two]) {
        if (r.status === "rejected") {
          expect(r.reason).toBeInstanceOf(StoreError);
          expect((r.reason as StoreError).kind).toBe("conflict");
          expect((r.reason as StoreError).message).toMatch(/already has 1 active service token, the policy set's limit/);
        }
      }
      expect(await store.tokens.countActive({ tenant: "beta", type: "service" }, nowMs)).toBe(1);
    });

    it("rotates: a successor that inherits, the predecessor's window, older windows capped, never extended", async () => {
      const a = (await lifecycle.create({ ...SERVICE, scopes: ["x:read"], service: "svc", controls: { ipAllowlist: ["10.0.0.0/8"] } })).record;
      const first = await lifecycle.rotate(a.id, { overlapMs: 60_000, actor: "ops" });
      expect(first.record).toMatchObject({ lineageId: a.id, tenant: "acme", scopes: ["x:read"], service: "svc", controls: { ipAllowlist: ["10.0.0.0/8"] } });
      expect(first.predecessor).toMatchObject({ id: a.id, successorId: first.record.id, overlapEndsAtMs: T0 + 60_000 });
      expect(await store.tokens.byId(first.record.id)).toMatchObject({ predecessorId: a.id, useCount: 0 });
      nowMs += 10_000;
      const second = await lifecycle.rotate(first.record.id, { overlapMs: 30_000, actor: "ops" });
      // a's window (T0+60s) is capped to the new end (T0+40s); a later, shorter rotation never lengthens it
      expect((await store.tokens.byId(a.id))!.overlapEndsAtMs).toBe(T0 + 40_000);
      expect((await store.tokens.byId(first.record.id))!.overlapEndsAtMs).toBe(T0 + 40_000);
      expect((await lifecycle.lineageOf(a.id)).map((row) => row.id)).toEqual([a.id, first.record.id, second.record.id]);
      const events = (await store.audit.list({ limit: 10 })).map((row) => [row.event, row.tokenId]);
      expect(events.slice(0, 2)).toEqual([["api_token.created", second.record.id], ["api_token.rotated", first.record.id]]);
    });

    it("refuses rotations with advice: unknown, revoked, expired, already rotated", async () => {
      expect((await rejection(lifecycle.rotate("tok_nope", { overlapMs: 0, actor: "t" }))).kind).toBe("not_found");
      const a = (await lifecycle.create({ ...SERVICE, expiresAtMs: T0 + 5_000 })).record;
      const b = (await lifecycle.create(SERVICE)).record;
      await lifecycle.revoke(b.id, "t");
      expect((await rejection(lifecycle.rotate(b.id, { overlapMs: 0, actor: "t" }))).message).toMatch(/is revoked; a revoked token cannot be rotated/);
      const next = await lifecycle.rotate(a.id, { overlapMs: 1_000, actor: "t" });
      const again = await rejection(lifecycle.rotate(a.id, { overlapMs: 0, actor: "t" }));
      expect([again.kind, again.message]).toEqual(["conflict", `token \`${a.id}\` was already rotated to \`${next.record.id}\`; rotate that one instead`]);
      nowMs = T0 + 5_000;
      expect((await rejection(lifecycle.rotate(next.record.id, { overlapMs: 0, actor: "t" }))).message).toMatch(/has expired/);
      expect((await rejection(lifecycle.rotate(a.id, { overlapMs: -1, actor: "t" }))).kind).toBe("invalid");
    });

    it("revokes once: a second revoke changes nothing and writes no second audit row", async () => {
      const a = (await lifecycle.create(SERVICE)).record;
      nowMs += 5;
      const first = await lifecycle.revoke(a.id, "ann", "leaked");
      nowMs += 5;
      const second = await lifecycle.revoke(a.id, "bob", "again");
      expect(first.revokedAtMs).toBe(T0 + 5);
      expect(second.revokedAtMs).toBe(T0 + 5);
      expect(await store.tokens.byId(a.id)).toMatchObject({ revokedBy: "ann", revokedReason: "leaked" });
      const rows = (await store.audit.list({ limit: 10 })).filter((row) => row.event === "api_token.revoked");
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ actor: "ann", tokenId: a.id, tenant: "acme", data: { name: "billing", reason: "leaked" } });
      expect(await store.tokens.revoke(a.id, { atMs: 1, by: "x", reason: null })).toBe(false);
      expect((await rejection(lifecycle.revoke("tok_nope", "t"))).kind).toBe("not_found");
    });

    it("emergency-revokes a lineage or ids, within the tenant when one is named", async () => {
      const a = (await lifecycle.create(SERVICE)).record;
      const b = (await lifecycle.rotate(a.id, { overlapMs: 60_000, actor: "t" })).record;
      const other = (await lifecycle.create({ ...SERVICE, tenant: "other" })).record;
      expect((await rejection(lifecycle.emergencyRevoke({ lineageOf: a.id }, { tenant: "other", actor: "t", reason: "emergency" }))).kind).toBe("not_found");
      expect(await lifecycle.emergencyRevoke({ lineageOf: b.id }, { tenant: "acme", actor: "t", reason: "emergency: leak" })).toEqual([a.id, b.id]);
      expect(await lifecycle.emergencyRevoke({ lineageOf: a.id }, { actor: "t", reason: "emergency" })).toEqual([]);
      const c = (await lifecycle.create(SERVICE)).record;
      expect(await lifecycle.emergencyRevoke({ ids: [c.id, other.id, "tok_unknown", c.id] }, { tenant: "acme", actor: "t", reason: "emergency" })).toEqual([c.id]);
      expect((await store.tokens.byId(other.id))!.revokedAtMs).toBeNull();
      expect(await store.tokens.byId(a.id)).toMatchObject({ revokedReason: "emergency: leak", revokedBy: "t" });
      const rows = (await store.audit.list({ limit: 20 })).filter((row) => row.event === "api_token.emergency_revoked");
      expect(rows.map((row) => row.tokenId)).toEqual([c.id, b.id, a.id]);
      expect(rows[2]!.data).toEqual({ name: "billing", reason: "emergency: leak", lineageId: a.id });
    });

    it("replaces a token's controls and clears them with {}", async () => {
      const a = (await lifecycle.create(SERVICE)).record;
      const updated = await lifecycle.updateControls(a.id, { ipAllowlist: ["192.0.2.0/24"] }, "t");
      expect(updated.controls).toEqual({ ipAllowlist: ["192.0.2.0/24"] });
      expect((await store.tokens.byId(a.id))!.controls).toEqual({ ipAllowlist: ["192.0.2.0/24"] });
      await lifecycle.updateControls(a.id, null, "t");
      expect((await store.tokens.byId(a.id))!.controls).toEqual({});
      expect(await store.tokens.updateControls("tok_nope", {})).toBe(false);
      expect((await rejection(lifecycle.updateControls(a.id, { ipAllowlist: ["10.0.0.1/8"] }, "t"))).kind).toBe("invalid");
    });

    it("records use forward-only: an older batch never moves the stamp back, counts add up", async () => {
      const a = (await lifecycle.create(SERVICE)).record;
      await store.tokens.recordUse(new Map([[a.id, { lastUsedAtMs: T0 + 100, count: 3 }], ["tok_gone", { lastUsedAtMs: T0, count: 1 }]]));
      await store.tokens.recordUse(new Map([[a.id, { lastUsedAtMs: T0 + 50, count: 2 }]]));
      expect(await store.tokens.byId(a.id)).toMatchObject({ lastUsedAtMs: T0 + 100, useCount: 5 });
    });

    it("lists audit rows newest first, by tenant, at most `limit`", async () => {
      const a = (await lifecycle.create(SERVICE)).record;
      await lifecycle.create({ ...SERVICE, tenant: "other" });
      await lifecycle.revoke(a.id, "t");
      const all = await store.audit.list({ limit: 10 });
      expect(all.map((row) => row.event)).toEqual(["api_token.revoked", "api_token.created", "api_token.created"]);
      expect(all[0]!.id).toBeGreaterThan(all[1]!.id);
      expect((await store.audit.list({ limit: 1 })).map((row) => row.event)).toEqual(["api_token.revoked"]);
      expect((await store.audit.list({ tenant: "other", limit: 10 })).map((row) => row.tenant)).toEqual(["other"]);
      expect(all[2]!.data).toMatchObject({ name: "billing", type: "service", prefix: "sk_live_", role: "reader", controls: {} });
    });

    it("aggregates security events per (token, event, minute), summing batches and across store objects", async () => {
      const minute = 1_750_000_020_000 - (1_750_000_020_000 % 60_000);
      const blocked = "auth.api_token_ip_allowlist_blocked" as const;
      await store.securityEvents.record([
        { minuteMs: minute, event: blocked, tokenId: "tok_a", tenant: "acme", count: 20, lastAtMs: minute + 5_000 },
        { minuteMs: minute, event: blocked, tokenId: "tok_a", tenant: "acme", count: 10, lastAtMs: minute + 7_000 },
        { minuteMs: minute, event: "auth.api_token_unauthenticated", tokenId: null, tenant: null, count: 3, lastAtMs: minute + 1_000 },
      ]);
      const other = (await open()).store;
      await other.securityEvents.record([{ minuteMs: minute, event: blocked, tokenId: "tok_a", tenant: "acme", count: 20, lastAtMs: minute + 6_000 }]);
      await store.securityEvents.record([
        { minuteMs: minute + 60_000, event: blocked, tokenId: "tok_a", tenant: "acme", count: 1, lastAtMs: minute + 61_000 },
        { minuteMs: minute, event: "auth.api_token_quota_exceeded", tokenId: "tok_b", tenant: "globex", count: 4, lastAtMs: minute + 2_000 },
      ]);
      await store.securityEvents.record([]);

      expect(await store.securityEvents.list({ limit: 10 })).toEqual([
        { minuteMs: minute + 60_000, event: blocked, tokenId: "tok_a", tenant: "acme", count: 1, lastAtMs: minute + 61_000 },
        { minuteMs: minute, event: blocked, tokenId: "tok_a", tenant: "acme", count: 50, lastAtMs: minute + 7_000 },
        { minuteMs: minute, event: "auth.api_token_quota_exceeded", tokenId: "tok_b", tenant: "globex", count: 4, lastAtMs: minute + 2_000 },
        { minuteMs: minute, event: "auth.api_token_unauthenticated", tokenId: null, tenant: null, count: 3, lastAtMs: minute + 1_000 },
      ]);
      expect((await store.securityEvents.list({ event: blocked, limit: 10 })).map((row) => row.count)).toEqual([1, 50]);
      expect((await store.securityEvents.list({ event: blocked, sinceMs: minute + 60_000, limit: 10 })).map((row) => row.count)).toEqual([1]);
      expect((await store.securityEvents.list({ sinceMs: minute + 6_500, limit: 10 })).map((row) => row.count)).toEqual([1, 50]);
      expect((await store.securityEvents.list({ tenant: "globex", limit: 10 })).map((row) => row.tokenId)).toEqual(["tok_b"]);
      expect(await other.securityEvents.list({ limit: 2 })).toHaveLength(2);
    });

    it("prunes security event rows of minutes before a bound, at most a batch at a time, once across store objects", async () => {
      const minute = 1_750_000_020_000 - (1_750_000_020_000 % 60_000);
      const rows = Array.from({ length: 7 }, (_, i) => ({
        minuteMs: minute + i * 60_000,
        event: "auth.api_token_ip_allowlist_blocked" as const,
        tokenId: `tok_${i}`,
        tenant: "acme",
        count: 1,
        lastAtMs: minute + i * 60_000 + 59_000,
      }));
      await store.securityEvents.record(rows);
      const other = (await open()).store;
      // the bound is on the minute: rows of the first five minutes are older than minute + 5 min
      const bound = minute + 5 * 60_000;
      expect(await store.securityEvents.prune(bound, 2)).toBe(2);
      expect((await store.securityEvents.list({ limit: 10 })).map((row) => row.tokenId)).toEqual(["tok_6", "tok_5", "tok_4", "tok_3", "tok_2"]);
      const [a, b] = await Promise.all([store.securityEvents.prune(bound, 2), other.securityEvents.prune(bound, 2)]);
      expect(a + b).toBe(3);
      expect(await other.securityEvents.prune(bound, 2)).toBe(0);
      expect((await store.securityEvents.list({ limit: 10 })).map((row) => row.tokenId)).toEqual(["tok_6", "tok_5"]);
    });

    it("keeps tenant and workspace state, with one audit row per change", async () => {
      expect(await lifecycle.suspendTenant("acme", { actor: "ops", reason: "unpaid" })).toBe(true);
      expect(await lifecycle.suspendTenant("acme", { actor: "ops" })).toBe(false);
      expect(await lifecycle.restrictWorkspace("acme", "main", { actor: "ops" })).toBe(true);
      expect(await lifecycle.restrictWorkspace("acme", "main", { actor: "ops" })).toBe(false);
      expect(await lifecycle.restrictWorkspace("acme", "main", { actor: "ops", mode: "all", reason: "incident" })).toBe(true);
      expect(await lifecycle.restrictWorkspace("beta", "x", { actor: "ops" })).toBe(true);
      const state = await store.tenantState.readAdministrativeState();
      expect([...state.suspendedTenants]).toEqual(["acme"]);
      expect(new Map(state.restrictedWorkspaces)).toEqual(new Map([["acme/main", "all"], ["beta/x", "writes"]]));
      expect(await store.tenantState.listSuspendedTenants()).toEqual([{ tenant: "acme", suspendedAtMs: T0, suspendedBy: "ops", reason: "unpaid" }]);
      expect(await store.tenantState.listRestrictedWorkspaces({ tenant: "acme" })).toEqual([
        { tenant: "acme", workspace: "main", restrictedAtMs: T0, restrictedBy: "ops", reason: "incident", mode: "all" },
      ]);
      expect(await lifecycle.resumeTenant("acme", { actor: "ops" })).toBe(true);
      expect(await lifecycle.resumeTenant("acme", { actor: "ops" })).toBe(false);
      expect(await lifecycle.unrestrictWorkspace("acme", "main", { actor: "ops" })).toBe(true);
      expect(await store.tenantState.workspaceMode("acme", "main")).toBeUndefined();
      const events = (await store.audit.list({ limit: 10 })).map((row) => [row.event, row.data]).reverse();
      expect(events).toEqual([
        ["tenant.suspended", { reason: "unpaid" }],
        ["workspace.restricted", { workspace: "main", mode: "writes", reason: null }],
        ["workspace.restricted", { workspace: "main", mode: "all", reason: "incident", previousMode: "writes" }],
        ["workspace.restricted", { workspace: "x", mode: "writes", reason: null }],
        ["tenant.resumed", {}],
        ["workspace.unrestricted", { workspace: "main" }],
      ]);
    });

    it("announces changes after the commit and never after a rollback, which undoes every write", async () => {
      const a = (await lifecycle.create(SERVICE)).record;
      const tokens: string[][] = [];
      let administrative = 0;
      store.onTokensChanged((ids) => tokens.push([...ids]));
      store.onAdministrativeStateChanged(() => administrative++);
      const version = store.administrativeStateVersion;
      const listing = (await store.tokens.byId(a.id))!;
      await store.transaction(async (tx) => {
        tx.tokensChanged([a.id, "tok_b", a.id]);
        tx.administrativeStateChanged();
        expect(tokens).toEqual([]);
        expect(administrative).toBe(0);
      });
      expect(tokens).toEqual([[a.id, "tok_b"]]);
      expect(administrative).toBe(1);
      expect(store.administrativeStateVersion).not.toBe(version);
      const failure = new Error("rolled back");
      await expect(store.transaction(async (tx) => {
        await tx.tokens.insert({ ...listing, id: "tok_rolledback", hash: "h-rolledback" });
        await tx.tokens.revoke(a.id, { atMs: T0, by: "t", reason: null });
        await tx.audit.append({ atMs: T0, event: "api_token.revoked", actor: "t", tokenId: a.id, tenant: "acme", data: {} });
        tx.tokensChanged(["tok_rolledback"]);
        tx.administrativeStateChanged();
        throw failure;
      })).rejects.toBe(failure);
      expect(tokens).toHaveLength(1);
      expect(administrative).toBe(1);
      expect(await store.tokens.byId("tok_rolledback")).toBeUndefined();
      expect((await store.tokens.byId(a.id))!.revokedAtMs).toBeNull();
      expect((await store.audit.list({ limit: 10 })).map((row) => row.event)).toEqual(["api_token.created"]);
      // The lifecycle names what it changed.
      const b = (await lifecycle.rotate(a.id, { overlapMs: 1_000, actor: "t" })).record;
      await lifecycle.revoke(b.id, "t");
      expect(tokens.slice(1)).toEqual([[a.id, b.id], [b.id]]);
    });

    it("is read-your-writes across store objects once a transaction committed", async () => {
      const other = await open();
      const a = (await lifecycle.create(SERVICE)).record;
      expect((await other.store.tokens.byId(a.id))?.id).toBe(a.id);
      await other.lifecycle.suspendTenant("acme", { actor: "t" });
      expect((await store.tenantState.readAdministrativeState()).suspendedTenants.has("acme")).toBe(true);
    });
  });
}
