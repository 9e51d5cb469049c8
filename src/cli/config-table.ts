/**
 * The README's "Running it" table, generated from the declarations themselves:
 * the options of `portcullis serve` (each help text names its variable and
 * default, as `(env PORTCULLIS_…, default …)`) and the environment-only
 * settings of `config.ts`. A flag added to `serve` appears in the table with
 * no other edit; test/cli/config-table.test.ts keeps the README equal to it
 * (`UPDATE_README=1` rewrites the README's copy).
 */
import type { Command } from "commander";
import { ENVIRONMENT_ONLY_SETTINGS } from "../config/config.js";

/** One row: a flag (or none), its variable, its default and what it sets. */
export interface ConfigRow {
  readonly flag: string | null;
  readonly env: string;
  readonly defaultValue: string;
  readonly description: string;
}

/** A serve option whose help text does not say `(env PORTCULLIS_…, default …)`. */
export class UndocumentedOptionError extends Error {
  override readonly name = "UndocumentedOptionError";
}

const HELP_TAIL = /^(.*?)\s*\(env (PORTCULLIS_[A-Z0-9_]+)(?:,\s*([^;]*?))?[;,]\s*default ([^)]*)\)$/;

/** The rows for `program`'s `serve` command, then the environment-only settings. */
export function configRows(program: Command): ConfigRow[] {
  const serve = program.commands.find((command) => command.name() === "serve");
  if (serve === undefined) throw new UndocumentedOptionError("the program has no `serve` command");
  const rows: ConfigRow[] = serve.options.map((option) => {
    const match = HELP_TAIL.exec(option.description);
    if (match === null) throw new UndocumentedOptionError(`\`${option.flags}\` must end its help with (env PORTCULLIS_…, default …)`);
    const [, description, env, note, defaultValue] = match;
    return { flag: option.flags, env: note ? `${env} (${note})` : env!, defaultValue: defaultValue!, description: description! };
  });
  for (const setting of ENVIRONMENT_ONLY_SETTINGS) rows.push({ flag: null, env: setting.env, defaultValue: setting.defaultValue, description: setting.description });
  return rows;
}

/** The rows as a Markdown table. */
export function renderConfigTable(rows: readonly ConfigRow[]): string {
  const code = (text: string) => text.replace(/^(PORTCULLIS_[A-Z0-9_]+)/, "`$1`");
  const lines = ["| flag | env | default | sets |", "| --- | --- | --- | --- |"];
  for (const row of rows) {
    const flag = row.flag === null ? "(none)" : `\`${row.flag}\``;
    const defaultValue = row.defaultValue === "none" || row.defaultValue.includes("`") ? row.defaultValue : `\`${row.defaultValue}\``;
    lines.push(`| ${flag} | ${code(row.env)} | ${defaultValue} | ${row.description.replace(/\|/g, "\\|")} |`);
  }
  return lines.join("\n") + "\n";
}
