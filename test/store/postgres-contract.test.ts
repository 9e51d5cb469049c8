/** The store contract on PostgreSQL: a fresh database of the test run per test, each open a new pool (as another replica would be). */
import { describe, it } from "vitest";
import { PostgresStore } from "../../src/store/postgres/postgres-store.js";
import { createTestDatabase, postgresUnavailableReason } from "../support/postgres.js";
import { runStoreContract } from "./store-contract.js";

const unavailable = await postgresUnavailableReason();

if (unavailable === null) {
  runStoreContract("PostgreSQL", {
    async create() {
      const database = await createTestDatabase();
      return {
        open: () => PostgresStore.open({ url: database.url }),
        drop: () => database.drop(),
      };
    },
  });
} else {
  describe("store contract: PostgreSQL", () => {
    it.skip(`skipped: ${unavailable}`, () => undefined);
  });
}
