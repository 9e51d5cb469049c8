/**
 * The token lifecycle commands: `tokens rotate`, `tokens emergency-revoke` and
 * `audit list`. Registered by `main.ts`, which owns the program, the store
 * options and error handling; the rules are the same functions the
 * `TokenService` API uses.
 */
import type { Command } from "commander";
import { parseDuration } from "../policy/duration.js";
import type { CompiledPolicySet } from "../policy/types.js";
import { filterHasField, selectEmergencyRevocations, selectTokens, type TokenFilter } from "../lifecycle/emergency.js";
import { formatDuration, overlapProblem } from "../lifecycle/rotation.js";
import type { TokenLifecycle } from "../lifecycle/token-lifecycle.js";
import type { LifecycleAuditRecord, SecurityEventCount } from "../store/store-interfaces.js";
import { parseSince } from "../lifecycle/since.js";

/** What `main.ts` lends the lifecycle commands. */
export interface LifecycleCommandHelpers {
  withStoreOptions(command: Command): Command;
  withStore(flags: StoreFlags, run: (store: TokenLifecycle) => Promise<void>): Promise<void>;
  withPolicyAndStore(flags: StoreFlags, run: (policy: CompiledPolicySet, store: TokenLifecycle) => Promise<void>): Promise<void>;
  actor(): string;
  /** An error that exits 2, for a command line that cannot be run. */
  usageError(message: string): Error;
}

interface StoreFlags {
  readonly policies?: string;
  readonly dataDir?: string;
}

interface RotateFlags extends StoreFlags {
  readonly overlap?: string;
  readonly json?: boolean;
}

interface EmergencyFlags extends StoreFlags {
  readonly tenant?: string;
  readonly service?: string;
  readonly environment?: string;
  readonly scope?: string;
  readonly ids?: string;
  readonly reason?: string;
  readonly yes?: boolean;
}

interface AuditFlags extends StoreFlags {
  readonly tenant?: string;
  readonly event?: string;
  readonly since?: string;
  readonly limit?: string;
  readonly json?: boolean;
}

/** Adds `tokens rotate` and `tokens emergency-revoke` to `tokens`, and the `audit` command to `program`. */
export function registerLifecycleCommands(program: Command, tokens: Command, helpers: LifecycleCommandHelpers): void {
  const { withStoreOptions, withStore, withPolicyAndStore, actor, usageError } = helpers;

  withStoreOptions(
    tokens
      .command("rotate")
      .description("issue a successor that inherits everything but the secret and print it once (stdout); the old token works until its overlap ends")
      .argument("<id>", "token id, e.g. tok_…")
      .option("--overlap <duration>", "how long the old token keeps working, e.g. 7d, 12h, 0s (default: the policy set's, 90d unless it says otherwise)")
      .option("--json", "print the successor's token and record, and the old record, as JSON"),
  ).action((id: string, flags: RotateFlags) =>
    withPolicyAndStore(flags, async (policy, store) => {
      const rules = policy.tokens;
      let overlapMs = rules.defaultOverlapMs;
      if (flags.overlap !== undefined) {
        const parsed = parseDuration(flags.overlap);
        if (parsed === null) throw usageError(`invalid --overlap \`${flags.overlap}\`: expected a duration such as 7d, 12h or 0s`);
        overlapMs = parsed;
      }
      const problem = overlapProblem(overlapMs, rules);
      if (problem !== null) throw usageError(problem);
      const { token, record, predecessor } = await store.rotate(id, { overlapMs, actor: actor() });
      if (flags.json) {
        process.stdout.write(JSON.stringify({ token, record, predecessor }, null, 2) + "\n");
        return;
      }
      // INVARIANT: rotate sets the predecessor's overlap end.
      const endsAt = new Date(predecessor.overlapEndsAtMs!).toISOString();
      process.stderr.write(`rotated ${id} to ${record.id}; ${id} stops working at ${endsAt} (overlap ${formatDuration(overlapMs)})\n`);
      process.stderr.write(`store the new token now, it is shown only once:\n`);
      process.stdout.write(token + "\n");
    }),
  );

  withStoreOptions(
    tokens
      .command("emergency-revoke")
      .description("revoke a token and its whole rotation lineage, or every token matching filters; without --yes only shows what it would hit")
      .argument("[id]", "a token id: that token and every token of its rotation lineage")
      .option("--service <label>", "tokens with this service label")
      .option("--environment <environment>", "tokens of this environment")
      .option("--scope <scope>", "tokens holding this scope under the policy set in force")
      .option("--ids <ids>", "explicit token ids, comma-separated")
      .option("--tenant <tenant>", "only tokens of this tenant")
      .option("--reason <text>", "why, for the audit trail")
      .option("--yes", "revoke; without it nothing is revoked and the command exits 1"),
  ).action((id: string | undefined, flags: EmergencyFlags) =>
    withPolicyAndStore(flags, async (policy, store) => {
      const filter: TokenFilter = {
        ...(flags.tenant === undefined ? {} : { tenant: flags.tenant }),
        ...(flags.service === undefined ? {} : { serviceLabel: flags.service }),
        ...(flags.environment === undefined ? {} : { environment: flags.environment }),
        ...(flags.scope === undefined ? {} : { scope: flags.scope }),
        ...(flags.ids === undefined ? {} : { ids: flags.ids.split(",").map((part) => part.trim()).filter((part) => part !== "") }),
      };
      if (id === undefined && !filterHasField(filter)) throw usageError("emergency-revoke needs a token id or at least one of --service, --environment, --scope, --ids");
      if (id !== undefined && filterHasField(filter)) throw usageError("give a token id (its lineage) or filters, not both");

      const matched =
        id === undefined
          ? selectTokens(await store.list({ tenant: filter.tenant, includeRevoked: false }), filter, policy)
          : selectEmergencyRevocations(await store.lineageOf(id), filter.tenant);
      if (id !== undefined && (await store.get(id)) === undefined) throw usageError(`no token with id \`${id}\``);
      const ids = matched.map((row) => row.id);
      if (ids.length === 0) {
        process.stderr.write("no unrevoked token matches; nothing to revoke\n");
        return;
      }
      if (flags.yes !== true) {
        process.stderr.write(`would revoke ${count(ids.length)}: ${ids.join(", ")}\nrun again with --yes to revoke them\n`);
        process.exitCode = 1;
        return;
      }
      const reason = `emergency${flags.reason === undefined || flags.reason === "" ? "" : `: ${flags.reason}`}`;
      const options = { actor: actor(), reason, ...(filter.tenant === undefined ? {} : { tenant: filter.tenant }) };
      const revoked = id === undefined ? await store.emergencyRevoke({ ids }, options) : await store.emergencyRevoke({ lineageOf: id }, options);
      process.stderr.write(`emergency-revoked ${count(revoked.length)}: ${revoked.join(", ")}\n`);
      for (const revokedId of revoked) process.stdout.write(revokedId + "\n");
    }),
  );

  const audit = program.command("audit").description("read the token lifecycle audit trail and the stored security events");
  withStoreOptions(
    audit
      .command("list")
      .description(
        "list lifecycle audit events and security events (denials, counted per token, event and minute) merged newest first: time, event, actor, tenant, token id (never the token), count",
      )
      .option("--tenant <tenant>", "only this tenant")
      .option("--event <name>", "only this event, e.g. auth.api_token_ip_allowlist_blocked or api_token.revoked")
      .option("--since <time>", "only events at or after this ISO 8601 time, or this long ago (e.g. 1h, 30m, 7d)")
      .option("--limit <n>", "at most this many rows, 1 to 10000", "100")
      .option("--json", "print JSON"),
  ).action((flags: AuditFlags) =>
    withStore(flags, async (store) => {
      const limit = Number(flags.limit ?? "100");
      if (!/^\d+$/.test(flags.limit ?? "100") || limit < 1 || limit > 10_000) throw usageError(`invalid --limit \`${flags.limit}\`: expected a whole number from 1 to 10000`);
      const sinceMs = flags.since === undefined ? undefined : parseSince(flags.since, Date.now());
      if (sinceMs === null) throw usageError(`invalid --since \`${flags.since}\`: expected an ISO 8601 time (2026-12-04T18:00:00Z) or a duration (1h, 30m, 7d)`);
      const filter = {
        ...(flags.tenant === undefined ? {} : { tenant: flags.tenant }),
        ...(flags.event === undefined ? {} : { event: flags.event }),
        ...(sinceMs === undefined ? {} : { sinceMs }),
        limit,
      };
      const [lifecycleRows, securityRows] = await Promise.all([store.listAudit(filter), store.listSecurityEvents(filter)]);
      const rows = mergeAuditRows(lifecycleRows, securityRows, limit);
      if (flags.json) {
        process.stdout.write(JSON.stringify(rows, null, 2) + "\n");
        return;
      }
      const table = [["TIME", "EVENT", "ACTOR", "TENANT", "TOKEN", "COUNT", "DETAILS"]];
      for (const row of rows) {
        if (row.kind === "lifecycle") {
          table.push([isoSeconds(row.atMs), row.event, row.actor, row.tenant ?? "-", row.tokenId ?? "-", "1", JSON.stringify(row.data)]);
        } else {
          table.push([isoSeconds(row.lastAtMs), row.event, "-", row.tenant ?? "-", row.tokenId ?? "-", String(row.count), JSON.stringify({ minute: isoSeconds(row.minuteMs) })]);
        }
      }
      const widths = table[0]!.map((_, column) => Math.max(...table.map((line) => line[column]!.length)));
      for (const line of table) process.stdout.write(line.map((cell, column) => cell.padEnd(widths[column]!)).join("  ").trimEnd() + "\n");
    }),
  );
}

/** A row of `audit list`: a lifecycle event, or a security event row (denials of one token, event and minute, counted). */
export type AuditListRow = ({ readonly kind: "lifecycle" } & LifecycleAuditRecord) | ({ readonly kind: "security" } & SecurityEventCount);

/** Both lists merged newest first (a security row by its latest denial), at most `limit`. */
export function mergeAuditRows(lifecycle: readonly LifecycleAuditRecord[], security: readonly SecurityEventCount[], limit: number): AuditListRow[] {
  const rows: AuditListRow[] = [...lifecycle.map((row) => ({ kind: "lifecycle" as const, ...row })), ...security.map((row) => ({ kind: "security" as const, ...row }))];
  const timeOf = (row: AuditListRow): number => (row.kind === "lifecycle" ? row.atMs : row.lastAtMs);
  // why: a stable sort keeps each store's own newest-first order among rows of equal time
  return rows.sort((a, b) => timeOf(b) - timeOf(a)).slice(0, limit);
}

/** `--since`: a duration back from `nowMs`, or an ISO 8601 time; `null` when it is neither. */
export { parseSince } from "../lifecycle/since.js";

function isoSeconds(ms: number): string {
  return new Date(ms).toISOString().slice(0, 19) + "Z";
}

function count(n: number): string {
  return `${n} token${n === 1 ? "" : "s"}`;
}
