/**
 * The container image, checked without a docker engine: what the Dockerfile
 * copies exists, its health check follows the configured port, it carries OCI
 * labels, and the step that keeps the image lean leaves a working SQLite addon.
 */
import { execFile, execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "../support/fixtures.js";

const dockerfile = fs.readFileSync(path.join(REPO_ROOT, "Dockerfile"), "utf8");
// Continuation lines joined, so that each instruction is one line.
const instructions = dockerfile.replace(/\\\n\s*/g, " ").split("\n").filter((line) => /^[A-Z]+\s/.test(line));
const packageJson = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, "package.json"), "utf8"));
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-image-"));
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

describe("Dockerfile", () => {
  it("copies only what the repository has (dist and node_modules come from the build stage)", () => {
    const sources = instructions.filter((line) => line.startsWith("COPY ") && !line.includes("--from=")).flatMap((line) => line.split(/\s+/).slice(1, -1));
    expect(sources.length).toBeGreaterThan(3);
    for (const source of sources) expect(fs.existsSync(path.join(REPO_ROOT, source)), source).toBe(true);
    expect(instructions.filter((line) => line.includes("src/policy/policy.schema.json"))).toEqual([]);
  });

  it("checks health with `portcullis healthcheck`, which reads the configured port, never a fixed one", () => {
    const check = instructions.find((line) => line.startsWith("HEALTHCHECK "))!;
    expect(check).toContain('CMD ["node", "bin/portcullis.js", "healthcheck"]');
    expect(check).not.toMatch(/8181|fetch\(/);
  });

  it("labels the image with the OCI annotations, at the package's version", () => {
    const labels = instructions.filter((line) => line.startsWith("LABEL ")).join(" ");
    for (const key of ["title", "description", "licenses", "version"]) expect(labels).toContain(`org.opencontainers.image.${key}=`);
    expect(labels).toContain(`org.opencontainers.image.licenses="${packageJson.license}"`);
    expect(dockerfile).toContain(`ARG VERSION=${packageJson.version}`);
  });

  it("prunes better-sqlite3's build leftovers, and SQLite still opens afterwards", async () => {
    expect(instructions.some((line) => line.startsWith("RUN ") && line.includes("sh scripts/prune-native-build.sh node_modules"))).toBe(true);
    const modules = path.join(scratch, "node_modules");
    // The addon and what it requires at run time, as the build stage leaves them.
    for (const name of ["better-sqlite3", "bindings", "file-uri-to-path"]) fs.cpSync(path.join(REPO_ROOT, "node_modules", name), path.join(modules, name), { recursive: true });
    const before = sizeOf(path.join(modules, "better-sqlite3"));
    execFileSync("sh", [path.join(REPO_ROOT, "scripts/prune-native-build.sh"), modules]);
    const after = sizeOf(path.join(modules, "better-sqlite3"));
    expect(fs.readdirSync(path.join(modules, "better-sqlite3/build/Release"))).toEqual(["better_sqlite3.node"]);
    expect(after).toBeLessThan(5 * 1024 * 1024);
    console.log(`better-sqlite3 in the image: ${(before / 2 ** 20).toFixed(1)} MiB before the prune, ${(after / 2 ** 20).toFixed(1)} MiB after`);
    const script = "const D = require('better-sqlite3'); const db = new D(':memory:'); console.log(db.prepare('select sqlite_version() as v').get().v)";
    const { stdout } = await promisify(execFile)(process.execPath, ["-e", script], { cwd: scratch });
    expect(stdout.trim()).toMatch(/^3\.\d+\.\d+$/);
  });
});

function sizeOf(dir: string): number {
  let total = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += fs.statSync(path.join(entry.parentPath, entry.name)).size;
  }
  return total;
}
