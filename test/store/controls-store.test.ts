import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createTenantStateCache } from "../../src/service/tenant-state-cache.js";
import { type CreateTokenSpec, TokenStore } from "../../src/store/token-store.js";
import { storeErrorAsync } from "../support/store-error.js";

const T0 = Date.UTC(2026, 0, 15, 12, 0, 0);
const SPEC: CreateTokenSpec = { tenant: "acme", workspace: "main", environment: "live", prefix: "sk_live_", type: "service", name: "robot", role: "tenant_operator" };

let dir: string;
let store: TokenStore;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-controls-store-"));
  store = TokenStore.open({ dataDir: dir, now: () => T0 });
});
afterEach(() => {
  store.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe("token controls in the store", () => {
  it("stores a service label and controls, and reads them back on every look-up", async () => {
    const controls = { ipAllowlist: ["198.51.100.0/24"], mtls: { fingerprints: ["AB:".repeat(31) + "AB"] }, conditionalAccess: { readOnly: true } };
    const { token, record } = await store.create({ ...SPEC, service: "payout-robot", controls });
    expect(record).toMatchObject({ service: "payout-robot", controls });
    expect(store.findByToken(token)).toEqual(record);
    expect((await store.list())[0]).toMatchObject({ service: "payout-robot", controls });
    expect((await store.listAudit())[0]!.data).toMatchObject({ service: "payout-robot", controls });
  });

  it("defaults to no label and no controls", async () => {
    expect((await store.create(SPEC)).record).toMatchObject({ service: null, controls: {} });
  });

  it.each([
    [{ ipAllowlist: ["10.0.0.1/8"] }, "controls /ipAllowlist/0: cidr `10.0.0.1/8` has host bits set (did you mean `10.0.0.0/8`?)"],
    [{ ipAllowlist: ["not-an-ip"] }, "controls /ipAllowlist/0: `not-an-ip` is not an ip address or cidr"],
    [{ ipAllowlist: [] }, "controls /ipAllowlist: expected at least 1 item"],
    [{ mtls: { fingerprints: ["xyz"] } }, "controls /mtls/fingerprints/0: `xyz` is not a sha-256 fingerprint"],
    [{ conditionalAccess: { timeZone: "Mars/Base" } }, "controls /conditionalAccess/timeZone: unknown time zone `Mars/Base`"],
    [{ quota: 5 }, "controls /quota: expected an object, found a number"],
    [{ quota: {} }, "controls /quota: quota must set `limitPerMinute`, `limitPerDay` or both"],
    [{ quota: { limitPerMinute: 0 } }, "controls /quota/limitPerMinute: must be >= 1"],
    [{ quota: { limitPerDay: 1.5 } }, "controls /quota/limitPerDay: expected an integer, found a number"],
    [{ quota: { perMinute: 3 } }, "controls /quota/perMinute: unknown property `perMinute`"],
  ])("refuses %j at create", async (controls, message) => {
    const error = (await storeErrorAsync(async () => await store.create({ ...SPEC, controls: controls as never })));
    expect(error.kind).toBe("invalid");
    expect(error.message).toContain(message);
    expect(await store.list()).toEqual([]);
  });

  it("refuses a service label that is not an identifier", async () => {
    expect((await storeErrorAsync(async () => await store.create({ ...SPEC, service: "has space" }))).message).toContain("service label `has space`");
  });

  it("replaces controls on update, audits it, and clears them with null", async () => {
    const { token, record } = await store.create({ ...SPEC, controls: { ipAllowlist: ["10.0.0.0/8"] } });
    const updated = await store.updateControls(record.id, { mtls: {} }, "cli:ops");
    expect(updated.controls).toEqual({ mtls: {} });
    expect(store.findByToken(token)!.controls).toEqual({ mtls: {} });
    expect((await store.listAudit())[0]).toMatchObject({ event: "api_token.controls_updated", actor: "cli:ops", tokenId: record.id, data: { controls: { mtls: {} } } });
    expect((await store.updateControls(record.id, null, "cli:ops")).controls).toEqual({});
  });

  it("refuses bad controls and unknown ids on update, changing nothing", async () => {
    const { record } = await store.create({ ...SPEC, controls: { ipAllowlist: ["10.0.0.0/8"] } });
    expect((await storeErrorAsync(async () => await store.updateControls(record.id, { ipAllowlist: ["10.0.0.0/33"] }, "x"))).kind).toBe("invalid");
    expect((await storeErrorAsync(async () => await store.updateControls("tok_nope", {}, "x"))).kind).toBe("not_found");
    expect((await store.get(record.id))!.controls).toEqual({ ipAllowlist: ["10.0.0.0/8"] });
  });

  it("fails closed on a damaged controls column", async () => {
    const { token, record } = await store.create(SPEC);
    const db = new Database(path.join(dir, "portcullis.db"));
    db.prepare("UPDATE tokens SET controls = '{oops' WHERE id = ?").run(record.id);
    db.close();
    expect(store.findByToken(token)!.controls).toEqual({ ipAllowlist: [] });
  });
});

describe("tenant suspension and workspace restriction in the store", () => {
  it("suspends and resumes a tenant, idempotently, with audit rows", async () => {
    expect(await store.suspendTenant("acme", { actor: "cli:ops", reason: "unpaid invoice" })).toBe(true);
    expect(await store.suspendTenant("acme", { actor: "cli:ops" })).toBe(false);
    expect(await store.listSuspendedTenants()).toEqual([{ tenant: "acme", suspendedAtMs: T0, suspendedBy: "cli:ops", reason: "unpaid invoice" }]);
    expect(store.readAdministrativeState().suspendedTenants).toEqual(new Set(["acme"]));
    expect(await store.resumeTenant("acme", { actor: "cli:ops" })).toBe(true);
    expect(await store.resumeTenant("acme", { actor: "cli:ops" })).toBe(false);
    expect(await store.listSuspendedTenants()).toEqual([]);
    expect((await store.listAudit({ tenant: "acme" })).map((a) => a.event)).toEqual(["tenant.resumed", "tenant.suspended"]);
  });

  it("restricts and unrestricts a workspace", async () => {
    expect(await store.restrictWorkspace("acme", "main", { actor: "cli:ops", reason: "incident 42" })).toBe(true);
    await store.restrictWorkspace("globex", "main", { actor: "cli:ops" });
    expect(await store.listRestrictedWorkspaces({ tenant: "acme" })).toEqual([
      { tenant: "acme", workspace: "main", restrictedAtMs: T0, restrictedBy: "cli:ops", reason: "incident 42", mode: "writes" },
    ]);
    expect(store.readAdministrativeState().restrictedWorkspaces).toEqual(new Map([["acme/main", "writes"], ["globex/main", "writes"]]));
    expect(await store.unrestrictWorkspace("acme", "main", { actor: "cli:ops" })).toBe(true);
    expect((await store.listRestrictedWorkspaces()).map((w) => w.tenant)).toEqual(["globex"]);
    expect((await store.listAudit({ tenant: "acme" })).map((a) => a.event)).toEqual(["workspace.unrestricted", "workspace.restricted"]);
  });

  it("stores each workspace's mode, lists it, and audits it; both modes live at once", async () => {
    expect(await store.restrictWorkspace("acme", "main", { actor: "cli:ops", reason: "incident 42", mode: "all" })).toBe(true);
    expect(await store.restrictWorkspace("acme", "ops", { actor: "cli:ops", mode: "writes" })).toBe(true);
    expect(await store.restrictWorkspace("acme", "ops", { actor: "cli:ops", mode: "writes" })).toBe(false);
    expect((await store.listRestrictedWorkspaces()).map((w) => [w.workspace, w.mode, w.reason])).toEqual([
      ["main", "all", "incident 42"],
      ["ops", "writes", null],
    ]);
    expect(store.readAdministrativeState().restrictedWorkspaces).toEqual(new Map([["acme/main", "all"], ["acme/ops", "writes"]]));
    expect((await store.listAudit({ tenant: "acme" })).map((a) => [a.event, a.data])).toEqual([
      ["workspace.restricted", { workspace: "ops", mode: "writes", reason: null }],
      ["workspace.restricted", { workspace: "main", mode: "all", reason: "incident 42" }],
    ]);
  });

  it("changes a restriction's mode when restricted again in the other mode, naming the previous mode in the audit", async () => {
    await store.restrictWorkspace("acme", "main", { actor: "cli:ops", reason: "incident 42" });
    expect(await store.restrictWorkspace("acme", "main", { actor: "cli:sec", reason: "incident 42: freeze", mode: "all" })).toBe(true);
    expect(await store.listRestrictedWorkspaces()).toEqual([
      { tenant: "acme", workspace: "main", restrictedAtMs: T0, restrictedBy: "cli:sec", reason: "incident 42: freeze", mode: "all" },
    ]);
    expect((await store.listAudit({ tenant: "acme", limit: 1 }))[0]!.data).toEqual({ workspace: "main", mode: "all", reason: "incident 42: freeze", previousMode: "writes" });
  });

  it("refuses an unknown mode", async () => {
    const error = (await storeErrorAsync(async () => await store.restrictWorkspace("acme", "main", { actor: "x", mode: "frozen" as never })));
    expect(error.kind).toBe("invalid");
    expect(error.message).toBe("unknown workspace restriction mode `frozen`; expected one of writes, all");
    expect(await store.listRestrictedWorkspaces()).toEqual([]);
  });

  it("refuses names that are not identifiers", async () => {
    expect((await storeErrorAsync(async () => await store.suspendTenant("a/b", { actor: "x" }))).kind).toBe("invalid");
    expect((await storeErrorAsync(async () => await store.restrictWorkspace("acme", "", { actor: "x" }))).kind).toBe("invalid");
  });
});

describe("the tenant state cache", () => {
  it("sees a change made through the same store at once, without waiting for its ttl", async () => {
    const cache = createTenantStateCache(store, { ttlMs: 60_000 });
    expect(cache.tenantSuspended("acme")).toBe(false);
    await store.suspendTenant("acme", { actor: "x" });
    expect(cache.tenantSuspended("acme")).toBe(true);
    await store.restrictWorkspace("acme", "main", { actor: "x" });
    expect(cache.workspaceRestricted("acme", "main")).toBe("writes");
    await store.restrictWorkspace("acme", "main", { actor: "x", mode: "all" });
    expect(cache.workspaceRestricted("acme", "main")).toBe("all");
    expect(cache.workspaceRestricted("acme", "other")).toBe(false);
  });

  it("reads the store once per ttl, and sees another process's change after it", async () => {
    let clock = 0;
    let reads = 0;
    const counting = {
      get administrativeStateVersion() {
        return store.administrativeStateVersion;
      },
      readAdministrativeState() {
        reads++;
        return store.readAdministrativeState();
      },
    };
    const cache = createTenantStateCache(counting, { ttlMs: 1_000, clock: () => clock });
    for (let i = 0; i < 100; i++) cache.tenantSuspended("acme");
    expect(reads).toBe(1);

    const other = TokenStore.open({ dataDir: dir, now: () => T0 });
    await other.suspendTenant("acme", { actor: "another process" });
    other.close();
    clock = 999;
    expect(cache.tenantSuspended("acme")).toBe(false);
    clock = 1_000;
    expect(cache.tenantSuspended("acme")).toBe(true);
    expect(reads).toBe(2);
  });
});
