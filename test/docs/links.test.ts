/**
 * The README and docs/ stand alone: a clone has nothing beside the checkout,
 * so no page may point outside it, and every relative link must resolve.
 */
import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "../support/fixtures.js";

const pages = [
  "README.md",
  "BENCHMARKS.md",
  ...fs
    .readdirSync(path.join(REPO_ROOT, "docs"), { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith(".md"))
    .map((entry) => path.relative(REPO_ROOT, path.join(entry.parentPath, entry.name))),
];

describe("the project's pages", () => {
  it.each(pages)("%s names nothing outside the checkout", (page) => {
    const text = fs.readFileSync(path.join(REPO_ROOT, page), "utf8");
    expect(text).not.toMatch(/\.\.\/shared|\/work\/|shared\/DESIGN|DESIGN\.md/);
  });

  it.each(pages)("%s links only to files that exist", (page) => {
    const text = fs.readFileSync(path.join(REPO_ROOT, page), "utf8");
    const targets = [...text.matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)].map((match) => match[1]!).filter((target) => !/^[a-z]+:/.test(target));
    for (const target of targets) expect(fs.existsSync(path.resolve(REPO_ROOT, path.dirname(page), target)), `${page} -> ${target}`).toBe(true);
  });
});
