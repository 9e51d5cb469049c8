import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "../support/fixtures.js";

const buf = path.join(REPO_ROOT, "node_modules", ".bin", "buf");

function filesUnder(dir: string): Map<string, string> {
  const files = new Map<string, string>();
  for (const entry of fs.readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const full = path.join(entry.parentPath, entry.name);
    files.set(path.relative(dir, full), fs.readFileSync(full, "utf8"));
  }
  return files;
}

describe("protobuf", () => {
  it("passes buf lint", () => {
    const result = spawnSync(buf, ["lint"], { cwd: REPO_ROOT, encoding: "utf8" });
    expect(result.stdout + result.stderr).toBe("");
    expect(result.status).toBe(0);
  });

  it("has committed generated code identical to a fresh generation", () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-gen-"));
    try {
      execFileSync(buf, ["generate", "--output", out], { cwd: REPO_ROOT, env: { ...process.env, PATH: `${path.dirname(buf)}:${process.env.PATH}` } });
      const fresh = filesUnder(path.join(out, "src", "gen"));
      const committed = filesUnder(path.join(REPO_ROOT, "src", "gen"));
      expect([...committed.keys()].sort()).toEqual([...fresh.keys()].sort());
      for (const [name, text] of fresh) expect(committed.get(name), `src/gen/${name} is stale: run npm run generate`).toBe(text);
    } finally {
      fs.rmSync(out, { recursive: true, force: true });
    }
  });
});
