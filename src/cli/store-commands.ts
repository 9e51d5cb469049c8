/**
 * The `store` commands: moving an embedded SQLite store into PostgreSQL for
 * a fleet. Registered by `main.ts`, which owns the program and error handling.
 */
import type { Command } from "commander";
import { copySqliteToPostgres } from "../store/copy-store.js";
import { isPostgresUrl, redactPostgresUrl } from "../store/postgres/pool.js";
import { SECRET_ENV_VAR, SECRET_FILE_NAME } from "../store/resolve-secret.js";
import { StoreError } from "../store/store-error.js";

/** Adds `portcullis store copy`. */
export function registerStoreCommands(program: Command): void {
  const store = program.command("store").description("move a token store between engines");
  store
    .command("copy")
    .description("copy an embedded sqlite store (tokens, lineages, use stamps, audit trail, tenant and workspace state) into an empty postgresql database")
    .requiredOption("--from <dir>", "data folder of the sqlite store (holds portcullis.db and secret.key)")
    .requiredOption("--to <url>", "postgres://… url of the target database, which must be empty")
    .action(async (flags: { from: string; to: string }) => {
      if (!isPostgresUrl(flags.to)) throw new StoreError("invalid", `--to must be a postgres:// url, got \`${flags.to}\``);
      const result = await copySqliteToPostgres({ dataDir: flags.from, url: flags.to });
      process.stderr.write(
        `copied ${result.tokens} tokens (${result.lineages} lineages, ${result.useStamps} with use stamps), ${result.auditEvents} audit events, ${result.securityEvents} security event rows, ` +
          `${result.suspendedTenants} suspended tenants and ${result.restrictedWorkspaces} restricted workspaces into ${redactPostgresUrl(flags.to)}\n`,
      );
      process.stderr.write(
        result.secretSource === "file"
          ? `the tokens verify only with the secret in ${flags.from}/${SECRET_FILE_NAME}: give every replica its contents as ${SECRET_ENV_VAR}\n`
          : `the tokens verify only with the current ${SECRET_ENV_VAR}: give every replica the same value\n`,
      );
    });
}
