/**
 * Two replicas on one PostgreSQL store, each with its own deliverer, work one
 * outbox: a receiver (a real HTTP server on loopback, answering slowly so
 * that both are busy at once) gets every event exactly once, and both
 * replicas delivered some.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTokenLifecycle } from "../../src/lifecycle/token-lifecycle.js";
import { selectWebhookEvents } from "../../src/webhooks/webhook-events.js";
import { createWebhookDeliverer } from "../../src/webhooks/webhook-deliverer.js";
import { PostgresStore } from "../../src/store/postgres/postgres-store.js";
import { createTestDatabase, postgresUnavailableReason, type TestDatabase } from "../support/postgres.js";
import { signatureIsValid, startInProcessReceiver, waitFor } from "../support/webhook-receiver.js";

const unavailable = await postgresUnavailableReason();
const SECRET = "two-replicas-secret-0123456789";

describe.skipIf(unavailable !== null)("webhooks: two replicas on PostgreSQL", () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase();
  });
  afterAll(async () => {
    await database?.drop();
  });

  it("deliver each event once between them", async () => {
    let slowMs = 30;
    // a receiver that answers after a pause, so that both replicas hold deliveries at once
    const receiver = await startInProcessReceiver(() => 200, () => slowMs);
    const stores = [await PostgresStore.open({ url: database.url }), await PostgresStore.open({ url: database.url })];
    const endpoint = { id: "siem", url: `${receiver.url}/siem`, events: selectWebhookEvents(["*"]), secret: Buffer.from(SECRET) };
    try {
      const lifecycle = createTokenLifecycle({ store: stores[0]!, secret: Buffer.alloc(32, 1), now: Date.now });
      const total = 40;
      for (let i = 0; i < total / 2; i++) {
        const { record } = await lifecycle.create({ tenant: "acme", workspace: "main", environment: "live", prefix: "sk_live_", type: "service", name: `t${i}`, role: "reader", actor: "test" });
        await lifecycle.revoke(record.id, "test");
      }
      const deliverers = stores.map((store) => createWebhookDeliverer({ outbox: store.webhooks, endpoints: () => [endpoint], pollIntervalMs: 10, concurrency: 3, timeoutMs: 2_000 }));
      await waitFor(() => new Set(receiver.received.map((r) => r.headers["idempotency-key"])).size >= total, 20_000, "every event at the receiver");
      slowMs = 0;
      await Promise.all(deliverers.map((d) => d.close()));
      const ids = receiver.received.map((r) => r.headers["idempotency-key"]);
      expect(ids).toHaveLength(total);
      expect(new Set(ids).size).toBe(total);
      for (const request of receiver.received) expect(signatureIsValid(SECRET, request.headers["portcullis-signature"], request.body)).toBe(true);
      const [a, b] = deliverers.map((d) => d.stats().delivered);
      expect(a! + b!).toBe(total);
      expect(a).toBeGreaterThan(0);
      expect(b).toBeGreaterThan(0);
      expect((await stores[1]!.webhooks.list({ status: "delivered", limit: 100 })).length).toBe(total);
    } finally {
      for (const store of stores) await store.close();
      await receiver.close();
    }
  }, 30_000);
});
