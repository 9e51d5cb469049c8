/** The schema step that gives workspace restrictions a mode: an existing database keeps its restrictions, as `writes`. */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { MIGRATIONS } from "../../src/store/migrations.js";
import { DATABASE_FILE_NAME, TokenStore } from "../../src/store/token-store.js";

const RESTRICTED_AT = Date.UTC(2026, 0, 15, 12, 0, 0);

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-workspace-mode-"));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A database at schema version 4 (before modes) with one restricted workspace. */
function schemaFourDatabase(): void {
  const db = new Database(path.join(dir, DATABASE_FILE_NAME));
  for (const step of MIGRATIONS.slice(0, 4)) db.exec(step);
  db.pragma("user_version = 4");
  db.prepare("INSERT INTO workspaces (tenant, workspace, restricted_at, restricted_by, reason) VALUES ('acme', 'main', ?, 'cli:ops', 'incident 42')").run(RESTRICTED_AT);
  db.close();
}

describe("the workspace restriction mode step", () => {
  it("migrates a restriction made before modes existed to mode writes, and keeps its reason", async () => {
    schemaFourDatabase();
    const store = TokenStore.open({ dataDir: dir, now: () => RESTRICTED_AT + 1 });
    try {
      expect(await store.listRestrictedWorkspaces()).toEqual([
        { tenant: "acme", workspace: "main", restrictedAtMs: RESTRICTED_AT, restrictedBy: "cli:ops", reason: "incident 42", mode: "writes" },
      ]);
      expect(store.readAdministrativeState().restrictedWorkspaces).toEqual(new Map([["acme/main", "writes"]]));
      // a second workspace in the other mode next to the migrated one
      expect(await store.restrictWorkspace("acme", "vault", { actor: "cli:ops", mode: "all" })).toBe(true);
      expect((await store.listRestrictedWorkspaces()).map((w) => [w.workspace, w.mode])).toEqual([
        ["main", "writes"],
        ["vault", "all"],
      ]);
    } finally {
      store.close();
    }
  });

  it("refuses a mode the schema does not know, even written by hand", () => {
    TokenStore.open({ dataDir: dir }).close();
    const db = new Database(path.join(dir, DATABASE_FILE_NAME));
    try {
      expect(() => db.prepare("INSERT INTO workspaces (tenant, workspace, restricted_at, restricted_by, mode) VALUES ('acme', 'main', 1, 'x', 'reads')").run()).toThrow(/CHECK constraint failed/);
    } finally {
      db.close();
    }
  });
});
