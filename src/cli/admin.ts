/**
 * The `tenants` and `workspaces` commands and the token control flags shared
 * by `tokens create` and `tokens update`. Registered by `main.ts`, which owns
 * the program, the store options and error handling.
 */
import { readFileSync } from "node:fs";
import { Option, type Command } from "commander";
import type { TokenControls } from "../engine/types.js";
import { WORKSPACE_RESTRICTION_MODES, type WorkspaceRestrictionMode } from "../engine/workspace-restriction-mode.js";
import { TokenRequestError } from "../service/tokens.js";
import type { TokenLifecycle } from "../lifecycle/token-lifecycle.js";

/** Flags that set a token's own controls. */
export interface ControlFlags {
  /** JSON of the whole controls object, or `@file.json`. */
  readonly controls?: string;
  readonly ipAllow?: string[];
  readonly mtlsFingerprint?: string[];
  readonly mtlsCa?: string[];
  /** `--quota-per-minute`: allowed requests per UTC minute. */
  readonly quotaPerMinute?: string;
  /** `--quota-per-day`: allowed requests per UTC day. */
  readonly quotaPerDay?: string;
}

/** Adds the control flags to `tokens create` or `tokens update`. */
export function withControlOptions(command: Command): Command {
  return command
    .option("--ip-allow <cidr...>", "ip allowlist: cidrs or addresses, e.g. 198.51.100.0/24 2001:db8::/48 (repeatable)")
    .option("--mtls-fingerprint <sha256...>", "require a client certificate with one of these sha-256 fingerprints (repeatable)")
    .option("--mtls-ca <sha256...>", "require a client certificate issued by one of these ca sha-256 fingerprints (repeatable)")
    .option("--quota-per-minute <n>", "quota: allowed requests per utc minute; past it 429 quota_exceeded")
    .option("--quota-per-day <n>", "quota: allowed requests per utc day; past it 429 quota_exceeded")
    .option("--controls <json>", "the token's controls as json (or @file.json): ipAllowlist, mtls, conditionalAccess, quota, as in policy files");
}

/**
 * Builds a controls object from the flags: `--controls` first, then each
 * convenience flag sets its kind. Returns `undefined` when no flag was given.
 */
export function controlsFromFlags(flags: ControlFlags): TokenControls | undefined {
  let controls: Record<string, unknown> | undefined;
  if (flags.controls !== undefined) {
    const text = flags.controls.startsWith("@") ? readText(flags.controls.slice(1)) : flags.controls;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      throw new TokenRequestError(`invalid --controls: not json (${error instanceof Error ? error.message : String(error)})`);
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) throw new TokenRequestError("invalid --controls: expected a json object");
    controls = { ...(value as Record<string, unknown>) };
  }
  const set = (kind: string, value: unknown): void => {
    controls ??= {};
    if (controls[kind] !== undefined && flags.controls !== undefined) {
      throw new TokenRequestError(`\`${kind}\` is set both by --controls and by a flag; use one`);
    }
    controls[kind] = value;
  };
  if (flags.ipAllow !== undefined) set("ipAllowlist", flags.ipAllow);
  if (flags.mtlsFingerprint !== undefined || flags.mtlsCa !== undefined) {
    set("mtls", {
      ...(flags.mtlsFingerprint === undefined ? {} : { fingerprints: flags.mtlsFingerprint }),
      ...(flags.mtlsCa === undefined ? {} : { caFingerprints: flags.mtlsCa }),
    });
  }
  if (flags.quotaPerMinute !== undefined || flags.quotaPerDay !== undefined) {
    set("quota", {
      ...(flags.quotaPerMinute === undefined ? {} : { limitPerMinute: quotaLimit(flags.quotaPerMinute, "--quota-per-minute") }),
      ...(flags.quotaPerDay === undefined ? {} : { limitPerDay: quotaLimit(flags.quotaPerDay, "--quota-per-day") }),
    });
  }
  return controls as TokenControls | undefined;
}

function quotaLimit(text: string, flag: string): number {
  if (!/^[1-9][0-9]{0,9}$/.test(text)) throw new TokenRequestError(`invalid ${flag} \`${text}\`: expected a whole number of requests, at least 1`);
  return Number(text);
}

function readText(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (error) {
    throw new TokenRequestError(`cannot read --controls file \`${file}\`: ${(error as { code?: string }).code ?? String(error)}`);
  }
}

/** What the admin commands need from `main.ts`. */
export interface AdminCommandDeps {
  readonly withStoreOptions: (command: Command) => Command;
  readonly withStore: (flags: { policies?: string; dataDir?: string; store?: string }, run: (store: TokenLifecycle) => Promise<void>) => Promise<void>;
  readonly actor: () => string;
}

interface ListFlags {
  readonly policies?: string;
  readonly dataDir?: string;
  readonly tenant?: string;
  readonly json?: boolean;
}

/** Registers `tenants suspend|resume|list` and `workspaces restrict|unrestrict|list`. */
export function registerAdminCommands(program: Command, deps: AdminCommandDeps): void {
  const { withStoreOptions, withStore, actor } = deps;
  const tenants = program.command("tenants").description("suspend and resume tenants");
  withStoreOptions(
    tenants
      .command("suspend")
      .description("suspend a tenant: every token of it gets tenant_suspended (403) until resumed")
      .argument("<tenant>", "tenant name")
      .option("--reason <text>", "why, for the audit trail (never shown to clients)"),
  ).action((tenant: string, flags: { reason?: string; dataDir?: string }) =>
    withStore(flags, async (store) => {
      const changed = await store.suspendTenant(tenant, { actor: actor(), reason: flags.reason ?? null });
      process.stderr.write(changed ? `suspended tenant ${tenant}\n` : `tenant ${tenant} was already suspended\n`);
    }),
  );
  withStoreOptions(tenants.command("resume").description("lift a tenant's suspension").argument("<tenant>", "tenant name")).action(
    (tenant: string, flags: { dataDir?: string }) =>
      withStore(flags, async (store) => {
        const changed = await store.resumeTenant(tenant, { actor: actor() });
        process.stderr.write(changed ? `resumed tenant ${tenant}\n` : `tenant ${tenant} was not suspended\n`);
      }),
  );
  withStoreOptions(tenants.command("list").description("list suspended tenants").option("--json", "print JSON")).action((flags: ListFlags) =>
    withStore(flags, async (store) => {
      const rows = await store.listSuspendedTenants();
      if (flags.json) return void process.stdout.write(JSON.stringify(rows, null, 2) + "\n");
      printTable([["TENANT", "SUSPENDED", "BY", "REASON"], ...rows.map((r) => [r.tenant, date(r.suspendedAtMs), r.suspendedBy, r.reason ?? "-"])]);
    }),
  );

  const workspaces = program.command("workspaces").description("restrict and unrestrict workspaces");
  withStoreOptions(
    workspaces
      .command("restrict")
      .description("restrict a workspace: --mode writes (default) refuses protected operations (writes, or the policy's list), --mode all refuses every operation; both get workspace_restricted (423)")
      .argument("<tenant>", "tenant name")
      .argument("<workspace>", "workspace name")
      .addOption(new Option("--mode <mode>", "what the restriction refuses").choices(WORKSPACE_RESTRICTION_MODES).default("writes"))
      .option("--reason <text>", "why, for the audit trail (never shown to clients)"),
  ).action((tenant: string, workspace: string, flags: { mode: WorkspaceRestrictionMode; reason?: string; dataDir?: string }) =>
    withStore(flags, async (store) => {
      const changed = await store.restrictWorkspace(tenant, workspace, { actor: actor(), reason: flags.reason ?? null, mode: flags.mode });
      process.stderr.write(
        changed ? `restricted workspace ${tenant}/${workspace} (mode ${flags.mode})\n` : `workspace ${tenant}/${workspace} was already restricted (mode ${flags.mode})\n`,
      );
    }),
  );
  withStoreOptions(
    workspaces.command("unrestrict").description("lift a workspace restriction").argument("<tenant>", "tenant name").argument("<workspace>", "workspace name"),
  ).action((tenant: string, workspace: string, flags: { dataDir?: string }) =>
    withStore(flags, async (store) => {
      const changed = await store.unrestrictWorkspace(tenant, workspace, { actor: actor() });
      process.stderr.write(changed ? `unrestricted workspace ${tenant}/${workspace}\n` : `workspace ${tenant}/${workspace} was not restricted\n`);
    }),
  );
  withStoreOptions(
    workspaces.command("list").description("list restricted workspaces").option("--tenant <tenant>", "only this tenant").option("--json", "print JSON"),
  ).action((flags: ListFlags) =>
    withStore(flags, async (store) => {
      const rows = await store.listRestrictedWorkspaces(flags.tenant === undefined ? {} : { tenant: flags.tenant });
      if (flags.json) return void process.stdout.write(JSON.stringify(rows, null, 2) + "\n");
      printTable([
        ["TENANT", "WORKSPACE", "MODE", "RESTRICTED", "BY", "REASON"],
        ...rows.map((r) => [r.tenant, r.workspace, r.mode, date(r.restrictedAtMs), r.restrictedBy, r.reason ?? "-"]),
      ]);
    }),
  );
}

function printTable(table: string[][]): void {
  const widths = table[0]!.map((_, column) => Math.max(...table.map((row) => row[column]!.length)));
  for (const row of table) process.stdout.write(row.map((cell, column) => cell.padEnd(widths[column]!)).join("  ").trimEnd() + "\n");
}

function date(ms: number): string {
  return new Date(ms).toISOString().slice(0, 19) + "Z";
}
