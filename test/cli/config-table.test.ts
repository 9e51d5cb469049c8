/**
 * The README's "Running it" table is generated from the declarations (the
 * options of `serve` and config.ts's environment-only settings) and must equal
 * them; `UPDATE_README=1 npx vitest run test/cli/config-table.test.ts` rewrites
 * it. Every `PORTCULLIS_*` variable the source reads must be in it.
 */
import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { configRows, renderConfigTable } from "../../src/cli/config-table.js";
import { buildProgram } from "../../src/cli/main.js";
import { REPO_ROOT } from "../support/fixtures.js";

const README = path.join(REPO_ROOT, "README.md");
const START = "<!-- generated from the options of `portcullis serve` and src/config/config.ts: UPDATE_README=1 npx vitest run test/cli/config-table.test.ts -->\n";
const END = "<!-- end of the generated table -->";
const rows = configRows(buildProgram());
const table = renderConfigTable(rows);

describe("the README's Running it table", () => {
  it("is the one generated from the declarations", () => {
    const readme = fs.readFileSync(README, "utf8");
    const start = readme.indexOf(START);
    const end = readme.indexOf(END);
    expect(start, "README.md must hold the generated table's markers").toBeGreaterThan(-1);
    if (process.env.UPDATE_README === "1") fs.writeFileSync(README, readme.slice(0, start + START.length) + table + readme.slice(end));
    else expect(readme.slice(start + START.length, end)).toBe(table);
  });

  it("names every PORTCULLIS_* variable the source reads", () => {
    const source = fs
      .readdirSync(path.join(REPO_ROOT, "src"), { recursive: true, withFileTypes: true })
      .filter((entry) => entry.isFile() && entry.name.endsWith(".ts") && !entry.parentPath.includes(`${path.sep}gen`))
      .map((entry) => fs.readFileSync(path.join(entry.parentPath, entry.name), "utf8"))
      .join("\n");
    const read = new Set(source.match(/PORTCULLIS_[A-Z0-9_]*[A-Z0-9]/g));
    const listed = new Set(rows.map((row) => row.env.split(" ")[0]));
    expect([...read].filter((name) => !listed.has(name)).sort()).toEqual([]);
  });

  it("gives every flag of serve its variable and its default", () => {
    for (const row of rows) {
      expect(row.env).toMatch(/^PORTCULLIS_[A-Z0-9_]+/);
      expect(row.defaultValue.trim()).not.toBe("");
    }
    expect(rows.map((row) => row.flag)).toEqual(expect.arrayContaining(["--trusted-proxy <cidr>", "--ext-authz-prefix <path>", null]));
  });
});
