/**
 * `portcullis webhooks deliveries`: the webhook outbox as operators read it,
 * on the SQLite store of a data folder or a PostgreSQL store URL, like the
 * other store commands. Registered by `main.ts`, which owns the program, the
 * store options and error handling.
 */
import type { Command } from "commander";
import type { TokenLifecycle } from "../lifecycle/token-lifecycle.js";
import type { WebhookDelivery, WebhookDeliveryStatus } from "../store/store-interfaces.js";

/** What `main.ts` lends the webhook commands. */
export interface WebhookCommandHelpers {
  withStoreOptions(command: Command): Command;
  withStore(flags: object, run: (store: TokenLifecycle) => Promise<void>): Promise<void>;
  /** An error that exits 2, for a command line that cannot be run. */
  usageError(message: string): Error;
}

interface DeliveriesFlags {
  readonly endpoint?: string;
  readonly status?: string;
  readonly limit?: string;
  readonly json?: boolean;
}

const STATUSES: readonly WebhookDeliveryStatus[] = ["pending", "delivered", "failed"];

/** Adds the `webhooks` command to `program`. */
export function registerWebhookCommands(program: Command, helpers: WebhookCommandHelpers): void {
  const webhooks = program.command("webhooks").description("read the signed webhook outbox");
  helpers
    .withStoreOptions(
      webhooks
        .command("deliveries")
        .description("list webhook deliveries (one per event and endpoint) newest first: created, endpoint, event type, status, attempts, next attempt, delivered, last error, event id")
        .option("--endpoint <id>", "only this endpoint id of the policy set")
        .option("--status <status>", "only pending, delivered or failed")
        .option("--limit <n>", "at most this many rows, 1 to 10000", "100")
        .option("--json", "print JSON (with each body)"),
    )
    .action((flags: DeliveriesFlags) =>
      helpers.withStore(flags, async (store) => {
        const limitText = flags.limit ?? "100";
        const limit = Number(limitText);
        if (!/^\d+$/.test(limitText) || limit < 1 || limit > 10_000) throw helpers.usageError(`invalid --limit \`${limitText}\`: expected a whole number from 1 to 10000`);
        const status = flags.status as WebhookDeliveryStatus | undefined;
        if (status !== undefined && !STATUSES.includes(status)) throw helpers.usageError(`invalid --status \`${flags.status}\`: expected pending, delivered or failed`);
        const rows = await store.listWebhookDeliveries({
          ...(flags.endpoint === undefined ? {} : { endpointId: flags.endpoint }),
          ...(status === undefined ? {} : { status }),
          limit,
        });
        if (flags.json) {
          process.stdout.write(JSON.stringify(rows, null, 2) + "\n");
          return;
        }
        process.stdout.write(formatDeliveries(rows));
      }),
    );
}

/** The deliveries as an aligned table, one line each. */
export function formatDeliveries(rows: readonly WebhookDelivery[]): string {
  const table = [["CREATED", "ENDPOINT", "EVENT", "STATUS", "ATTEMPTS", "NEXT ATTEMPT", "DELIVERED", "LAST ERROR", "EVENT ID"]];
  for (const row of rows) {
    table.push([
      isoSeconds(row.createdAtMs),
      row.endpointId,
      row.type,
      row.status,
      String(row.attempts),
      row.status === "pending" ? isoSeconds(row.nextAttemptAtMs) : "-",
      row.deliveredAtMs === null ? "-" : isoSeconds(row.deliveredAtMs),
      row.lastError ?? "-",
      row.eventId,
    ]);
  }
  const widths = table[0]!.map((_, column) => Math.max(...table.map((line) => line[column]!.length)));
  return table.map((line) => line.map((cell, column) => cell.padEnd(widths[column]!)).join("  ").trimEnd() + "\n").join("");
}

function isoSeconds(ms: number): string {
  return new Date(ms).toISOString().slice(0, 19) + "Z";
}
