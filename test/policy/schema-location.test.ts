/**
 * A policy folder carries its schema: every bundled file names it by a path
 * inside the folder, so a folder copied out of the repository keeps editor
 * completion, and the copy never drifts from the schema the loader validates with.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadPolicySet } from "../../src/policy/index.js";
import { EXAMPLE_POLICY_DIR, REPO_ROOT } from "../support/fixtures.js";

const copied = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-copied-")), "my-policies");
fs.cpSync(EXAMPLE_POLICY_DIR, copied, { recursive: true });
afterAll(() => fs.rmSync(path.dirname(copied), { recursive: true, force: true }));

const policyFiles = fs.readdirSync(copied).filter((name) => name.endsWith(".json"));
const policyFilesOnly = policyFiles.filter((name) => !name.endsWith(".schema.json"));

describe("the schema's location", () => {
  it.each(policyFilesOnly)("%s names a schema that a copy of the folder still reaches", (name) => {
    const named = JSON.parse(fs.readFileSync(path.join(copied, name), "utf8")).$schema as string;
    expect(named).toBe("./policy.schema.json");
    const schema = JSON.parse(fs.readFileSync(path.resolve(copied, named), "utf8"));
    expect(schema.title).toBe("Portcullis policy file");
  });

  it("ships the very schema the loader validates with (refresh: cp src/policy/policy.schema.json policies/)", () => {
    expect(fs.readFileSync(path.join(EXAMPLE_POLICY_DIR, "policy.schema.json"), "utf8")).toBe(fs.readFileSync(path.join(REPO_ROOT, "src/policy/policy.schema.json"), "utf8"));
  });

  it("keeps the schema out of the policy set: the copied folder loads as the original does, with the same files", () => {
    const original = loadPolicySet(EXAMPLE_POLICY_DIR);
    const copy = loadPolicySet(copied);
    expect(copy.ok && original.ok && copy.policy.revision === original.policy.revision).toBe(true);
    expect(copy.ok && copy.files.map((file) => path.basename(file))).toEqual(policyFilesOnly);
  });
});
