import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import fc from "fast-check";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { MIGRATIONS } from "../../src/store/migrations.js";
import type { StoreErrorKind } from "../../src/store/store-error.js";
import { type CreateTokenSpec, TokenStore } from "../../src/store/token-store.js";
import { parseToken } from "../../src/token/format.js";
import { hashToken } from "../../src/token/hash.js";
import { storeError, storeErrorAsync } from "../support/store-error.js";

const T0 = Date.UTC(2025, 0, 15, 12, 0, 0);
const SERVICE: CreateTokenSpec = {
  tenant: "acme",
  workspace: "main",
  environment: "live",
  prefix: "sk_live_",
  type: "service",
  name: "billing sync",
  role: "billing_reader",
};

let dir: string;
let clockMs: number;
const open: TokenStore[] = [];

function openStore(options: { dataDir?: string; secret?: Buffer } = {}): TokenStore {
  const store = TokenStore.open({ dataDir: options.dataDir ?? dir, secret: options.secret, now: () => clockMs });
  open.push(store);
  return store;
}

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-"));
  clockMs = T0;
});
afterEach(() => {
  for (const store of open.splice(0)) store.close();
  fs.chmodSync(dir, 0o700);
  fs.rmSync(dir, { recursive: true, force: true });
});

describe("TokenStore.open", () => {
  it("creates a missing data folder, the database and the secret file", () => {
    const dataDir = path.join(dir, "nested", "data");
    openStore({ dataDir });
    expect(fs.existsSync(path.join(dataDir, "portcullis.db"))).toBe(true);
    expect(fs.statSync(path.join(dataDir, "secret.key")).mode & 0o777).toBe(0o600);
  });

  it("puts the database in WAL mode at the newest schema version", () => {
    openStore();
    const db = new Database(path.join(dir, "portcullis.db"), { readonly: true });
    try {
      expect(db.pragma("journal_mode", { simple: true })).toBe("wal");
      expect(db.pragma("user_version", { simple: true })).toBe(MIGRATIONS.length);
    } finally {
      db.close();
    }
  });

  it("reopens idempotently: migrations are not reapplied and tokens survive with the reused secret", async () => {
    const first = openStore();
    const { token, record } = await first.create(SERVICE);
    first.close();
    const second = openStore();
    expect(second.findByToken(token)).toEqual(record);
    second.close();
    expect(await openStore().list()).toHaveLength(1);
  });

  it("refuses a database written by a newer schema as too_new", () => {
    openStore().close();
    const db = new Database(path.join(dir, "portcullis.db"));
    db.pragma(`user_version = ${MIGRATIONS.length + 1}`);
    db.close();
    const error = storeError(() => openStore());
    expect(error.kind).toBe("too_new");
    expect(error.message).toContain(path.join(dir, "portcullis.db"));
  });

  it("reports a file that is not a database as corrupt, naming the path", () => {
    fs.writeFileSync(path.join(dir, "portcullis.db"), "this is not a database\n".repeat(100));
    const error = storeError(() => openStore({ secret: randomBytes(32) }));
    expect(error.kind).toBe("corrupt");
    expect(error.message).toContain(path.join(dir, "portcullis.db"));
  });

  it("reports a data folder under a regular file as unwritable, naming the path", () => {
    // Works for root too, unlike permission bits, which root ignores.
    const file = path.join(dir, "plain-file");
    fs.writeFileSync(file, "x");
    const error = storeError(() => openStore({ dataDir: path.join(file, "data") }));
    expect(error.kind).toBe("unwritable");
    expect(error.message).toContain(path.join(file, "data"));
  });

  it.skipIf(process.getuid?.() === 0)("reports a read-only data folder as unwritable", () => {
    fs.chmodSync(dir, 0o500);
    const error = storeError(() => openStore({ secret: randomBytes(32) }));
    expect(error.kind).toBe("unwritable");
    expect(error.message).toContain(dir);
  });

  it("refuses a world-readable secret file before opening the database", () => {
    openStore().close();
    fs.chmodSync(path.join(dir, "secret.key"), 0o644);
    const error = storeError(() => openStore());
    expect(error.kind).toBe("secret");
    expect(error.message).toContain("chmod 600");
  });
});

describe("TokenStore.create and find", () => {
  it("returns a token of the prefix's format and a record the look-ups agree on", async () => {
    const secret = randomBytes(32);
    const store = openStore({ secret });
    const { token, record } = await store.create({ ...SERVICE, scopes: ["invoices:read"], expiresAtMs: T0 + 1000 });
    expect(parseToken(token, ["sk_live_"])).toEqual({ ok: true, prefix: "sk_live_" });
    expect(record).toEqual({
      id: expect.stringMatching(/^tok_[0-9A-Za-z]{20}$/),
      tenant: "acme",
      workspace: "main",
      environment: "live",
      type: "service",
      name: "billing sync",
      role: "billing_reader",
      keyLevel: null,
      scopes: ["invoices:read"],
      creatorRole: null,
      createdAtMs: T0,
      expiresAtMs: T0 + 1000,
      revokedAtMs: null,
      service: null,
      controls: {},
      lineageId: record.id,
      successorId: null,
      overlapEndsAtMs: null,
    });
    expect(store.findByToken(token)).toEqual(record);
    expect(store.findByHash(hashToken(secret, token))).toEqual(record);
    expect(await store.get(record.id)).toEqual(record);
  });

  it("does not find an unknown token, nor a known token under another secret", async () => {
    const { token } = await openStore().create(SERVICE);
    expect(openStore().findByToken(token + "x")).toBeUndefined();
    open.splice(0).forEach((store) => store.close());
    expect(openStore({ secret: randomBytes(32) }).findByToken(token)).toBeUndefined();
  });

  it("stores a user token with its creator and creator role", async () => {
    const store = openStore();
    const { record } = await store.create({ ...SERVICE, type: "user", creator: "usr_1", creatorRole: "admin", keyLevel: "read_only" });
    expect(record).toMatchObject({ type: "user", creatorRole: "admin", keyLevel: "read_only" });
    expect((await store.list())[0]).toMatchObject({ creator: "usr_1", prefix: "sk_live_", useCount: 0, lastUsedAtMs: null });
  });

  it.each<[string, Partial<CreateTokenSpec>, RegExp]>([
    ["an empty tenant", { tenant: "" }, /tenant must not be empty/],
    ["a blank workspace", { workspace: "  " }, /workspace must not be empty/],
    ["an empty name", { name: "" }, /name must not be empty/],
    ["an empty prefix", { prefix: "" }, /prefix must not be empty/],
    ["neither role nor scopes", { role: null, scopes: null }, /needs a role, scopes or both/],
    ["an empty scope list", { scopes: [] }, /at least one scope/],
    ["an empty scope", { scopes: ["a", ""] }, /empty scope/],
    ["a user token without creator", { type: "user" }, /user token needs a creator/],
    ["an expiry now", { expiresAtMs: T0 }, /in the future/],
    ["an expiry in the past", { expiresAtMs: T0 - 1 }, /in the future/],
    ["an expiry that is not a whole number", { expiresAtMs: T0 + 0.5 }, /in the future/],
    ["an unknown type", { type: "robot" as "user" }, /`user` or `service`/],
  ])("refuses %s as invalid and writes nothing", async (_name, change, message) => {
    const store = openStore();
    const error = (await storeErrorAsync(async () => await store.create({ ...SERVICE, ...change })));
    expect(error.kind).toBe<StoreErrorKind>("invalid");
    expect(error.message).toMatch(message);
    expect(error.message).toMatch(/^[a-z`]/);
    expect(await store.list({ includeRevoked: true })).toEqual([]);
    expect(await store.listAudit()).toEqual([]);
  });

  it("accepts a scopes-only token", async () => {
    const { record } = await openStore().create({ ...SERVICE, role: null, scopes: ["a:read", "b:write"] });
    expect(record).toMatchObject({ role: null, scopes: ["a:read", "b:write"] });
  });

  it("reads corrupt scope JSON as no scopes granted instead of throwing", async () => {
    const store = openStore();
    const { token, record } = await store.create({ ...SERVICE, scopes: ["a:read"] });
    const other = await store.create({ ...SERVICE, scopes: ["a:read"] });
    const db = new Database(path.join(dir, "portcullis.db"));
    db.prepare("UPDATE tokens SET scopes = ? WHERE id = ?").run("[not json", record.id);
    db.prepare("UPDATE tokens SET scopes = ? WHERE id = ?").run('{"a":1}', other.record.id);
    db.close();
    expect(store.findByToken(token)?.scopes).toEqual([]);
    expect(store.findByToken(other.token)?.scopes).toEqual([]);
  });

  it("never writes the plaintext token to the database or its WAL", async () => {
    const store = openStore();
    const tokens = [(await store.create(SERVICE)).token, (await store.create({ ...SERVICE, prefix: "sk_test_", environment: "test" })).token];
    await store.revoke((await store.list())[0]!.id, "usr_admin");
    const files = ["portcullis.db", "portcullis.db-wal"].map((name) => path.join(dir, name));
    const search = () => {
      const bytes = Buffer.concat(files.filter((file) => fs.existsSync(file)).map((file) => fs.readFileSync(file)));
      expect(bytes.length).toBeGreaterThan(0);
      for (const token of tokens) {
        expect(bytes.includes(token)).toBe(false);
        // Not even the random part alone, nor in UTF-16.
        expect(bytes.includes(token.slice(8, 51))).toBe(false);
        expect(bytes.includes(Buffer.from(token, "utf16le"))).toBe(false);
      }
    };
    search();
    store.close();
    search();
  });
});

describe("TokenStore.list", () => {
  it.each([
    ["everything active by default", {}, ["a-main", "a-ops", "b-main"]],
    ["revoked too when asked", { includeRevoked: true }, ["a-main", "a-ops", "a-revoked", "b-main"]],
    ["one tenant", { tenant: "a" }, ["a-main", "a-ops"]],
    ["one tenant and workspace", { tenant: "a", workspace: "ops" }, ["a-ops"]],
    ["an unknown tenant as empty", { tenant: "zzz" }, []],
  ])("lists %s", async (_name, filter, names) => {
    const store = openStore();
    for (const [tenant, workspace, name] of [["a", "main", "a-main"], ["a", "ops", "a-ops"], ["a", "main", "a-revoked"], ["b", "main", "b-main"]] as const) {
      clockMs += 1;
      const { record } = await store.create({ ...SERVICE, tenant, workspace, name });
      if (name === "a-revoked") await store.revoke(record.id, "usr_admin");
    }
    expect((await store.list(filter)).map((listing) => listing.name).sort()).toEqual(names);
  });

  it("never includes the hash or the plaintext", async () => {
    const store = openStore();
    const { token } = await store.create(SERVICE);
    const listing = (await store.list())[0]!;
    expect(Object.keys(listing)).not.toContain("hash");
    expect(JSON.stringify(listing)).not.toContain(token);
  });
});

describe("TokenStore.revoke", () => {
  it("revokes once, stamps who and when, and writes one audit event even when repeated", async () => {
    const store = openStore();
    const { token, record } = await store.create({ ...SERVICE, actor: "usr_issuer" });
    clockMs = T0 + 5000;
    const revoked = await store.revoke(record.id, "usr_admin");
    expect(revoked).toEqual({ ...record, revokedAtMs: T0 + 5000 });
    clockMs = T0 + 9000;
    expect(await store.revoke(record.id, "usr_other")).toEqual(revoked);
    expect(store.findByToken(token)).toEqual(revoked);
    expect((await store.list({ includeRevoked: true }))[0]).toMatchObject({ revokedBy: "usr_admin" });
    const audit = await store.listAudit();
    expect(audit.map((row) => [row.event, row.actor, row.atMs])).toEqual([
      ["api_token.revoked", "usr_admin", T0 + 5000],
      ["api_token.created", "usr_issuer", T0],
    ]);
    expect(audit.every((row) => row.tokenId === record.id && row.tenant === "acme")).toBe(true);
    expect(JSON.stringify(audit)).not.toContain(token);
  });

  it("refuses an unknown id as not_found", async () => {
    const error = await storeErrorAsync(() => openStore().revoke("tok_missing", "usr_admin"));
    expect(error.kind).toBe("not_found");
    expect(error.message).toBe("no token with id `tok_missing`");
  });
});

describe("TokenStore.recordUse", () => {
  it("adds counts and moves last use forward only", async () => {
    const store = openStore();
    const a = (await store.create({ ...SERVICE, name: "a" })).record;
    const b = (await store.create({ ...SERVICE, name: "b" })).record;
    await store.recordUse(new Map([[a.id, { lastUsedAtMs: T0 + 10, count: 3 }], ["tok_unknown", { lastUsedAtMs: T0, count: 1 }]]));
    await store.recordUse(new Map([[a.id, { lastUsedAtMs: T0 + 5, count: 2 }], [b.id, { lastUsedAtMs: T0 + 7, count: 1 }]]));
    const byName = new Map((await store.list()).map((listing) => [listing.name, listing]));
    expect(byName.get("a")).toMatchObject({ useCount: 5, lastUsedAtMs: T0 + 10 });
    expect(byName.get("b")).toMatchObject({ useCount: 1, lastUsedAtMs: T0 + 7 });
  });

  it("applies a batch in one transaction: a failing entry leaves every entry unapplied", async () => {
    const store = openStore();
    const a = (await store.create({ ...SERVICE, name: "a" })).record;
    const b = (await store.create({ ...SERVICE, name: "b" })).record;
    const bad = { lastUsedAtMs: "not a time" as unknown as number, count: 1 };
    await expect(store.recordUse(new Map([[a.id, { lastUsedAtMs: T0, count: 1 }], [b.id, bad]]))).rejects.toThrow();
    expect((await store.list()).map((listing) => listing.useCount)).toEqual([0, 0]);
  });
});

describe("TokenStore.listAudit", () => {
  it("filters by tenant and limits, newest first", async () => {
    const store = openStore();
    for (const tenant of ["a", "b", "a", "a"]) {
      clockMs += 1;
      await store.create({ ...SERVICE, tenant });
    }
    expect((await store.listAudit({ tenant: "a" })).map((row) => row.atMs)).toEqual([T0 + 4, T0 + 3, T0 + 1]);
    expect((await store.listAudit({ limit: 2 })).map((row) => row.atMs)).toEqual([T0 + 4, T0 + 3]);
    expect((await store.listAudit())[0]!.data).toMatchObject({ name: "billing sync", role: "billing_reader", prefix: "sk_live_" });
  });

  it.each([0, -1, 1.5, 10_001])("refuses a limit of %s as invalid", async (limit) => {
    expect((await storeErrorAsync(() => openStore().listAudit({ limit }))).kind).toBe("invalid");
  });
});

describe("TokenStore against an in-memory model", () => {
  type Command = { kind: "create"; tenant: number } | { kind: "revoke"; pick: number } | { kind: "tick" };
  const command = fc.oneof(
    fc.record({ kind: fc.constant("create" as const), tenant: fc.integer({ min: 0, max: 2 }) }),
    fc.record({ kind: fc.constant("revoke" as const), pick: fc.nat() }),
    fc.record({ kind: fc.constant("tick" as const) }),
  );

  it("agrees with a Map model over random create, revoke and find sequences", async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(command, { maxLength: 30 }), async (commands: Command[]) => {
        const store = openStore({ dataDir: path.join(dir, `run-${run++}`), secret: randomBytes(32) });
        const model = new Map<string, { token: string; tenant: string; revokedAtMs: number | null }>();
        let events = 0;
        for (const step of commands) {
          if (step.kind === "tick") clockMs += 1000;
          else if (step.kind === "create") {
            const tenant = `t${step.tenant}`;
            const { token, record } = await store.create({ ...SERVICE, tenant });
            model.set(record.id, { token, tenant, revokedAtMs: null });
            events++;
          } else {
            const ids = [...model.keys()];
            const id = ids.length === 0 ? "tok_none" : ids[step.pick % ids.length]!;
            const entry = model.get(id);
            if (entry === undefined) {
              expect((await storeErrorAsync(async () => await store.revoke(id, "usr_admin"))).kind).toBe("not_found");
            } else {
              expect((await store.revoke(id, "usr_admin")).revokedAtMs).toBe(entry.revokedAtMs ?? clockMs);
              if (entry.revokedAtMs === null) events++;
              entry.revokedAtMs ??= clockMs;
            }
          }
          for (const [id, entry] of model) {
            expect(store.findByToken(entry.token)).toMatchObject({ id, tenant: entry.tenant, revokedAtMs: entry.revokedAtMs });
          }
        }
        const active = [...model].filter(([, entry]) => entry.revokedAtMs === null).map(([id]) => id);
        expect((await store.list()).map((listing) => listing.id).sort()).toEqual(active.sort());
        expect(await store.list({ includeRevoked: true })).toHaveLength(model.size);
        for (const tenant of ["t0", "t1", "t2"]) {
          const expected = [...model.values()].filter((entry) => entry.tenant === tenant).length;
          expect(await store.list({ tenant, includeRevoked: true })).toHaveLength(expected);
        }
        expect(await store.listAudit({ limit: 10_000 })).toHaveLength(events);
        store.close();
      }),
      { numRuns: 40 },
    );
  });
});
