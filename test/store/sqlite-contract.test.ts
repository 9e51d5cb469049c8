/** The store contract on SQLite: a fresh data folder per test, each store object its own connection. */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { SqliteStore } from "../../src/store/sqlite/sqlite-store.js";
import { runStoreContract } from "./store-contract.js";

runStoreContract("SQLite", {
  async create() {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-contract-"));
    return {
      open: async () => SqliteStore.open({ dataDir, secret: Buffer.alloc(32, 7) }),
      drop: async () => fs.rmSync(dataDir, { recursive: true, force: true }),
    };
  },
});
