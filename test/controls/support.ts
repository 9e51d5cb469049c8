/** Helpers for the controls tests: policy folders built from the bundled set plus extra files. */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { loadPolicySet, type LoadPolicySetResult } from "../../src/policy/load.js";
import type { CompiledPolicySet } from "../../src/policy/types.js";
import { EXAMPLE_POLICY_DIR } from "../support/fixtures.js";

const folders: string[] = [];

/** Writes the bundled policy set (without its controls.json) plus `extra` files into a temporary folder. */
export function writePolicyFolder(extra: Record<string, unknown>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-controls-"));
  folders.push(dir);
  for (const name of fs.readdirSync(EXAMPLE_POLICY_DIR)) {
    // the policy files only: `tests/` holds the bundled policy test suite
    if (name === "controls.json" || !name.endsWith(".json")) continue;
    fs.copyFileSync(path.join(EXAMPLE_POLICY_DIR, name), path.join(dir, name));
  }
  for (const [name, content] of Object.entries(extra)) {
    fs.writeFileSync(path.join(dir, name), typeof content === "string" ? content : JSON.stringify(content, null, 2));
  }
  return dir;
}

/** Loads the bundled set plus `extra` files. */
export function loadWith(extra: Record<string, unknown>): LoadPolicySetResult {
  return loadPolicySet(writePolicyFolder(extra));
}

/** Loads the bundled set plus `extra` files, throwing on errors. */
export function policyWith(extra: Record<string, unknown>): CompiledPolicySet {
  const result = loadWith(extra);
  if (!result.ok) throw new Error(`policy does not load: ${JSON.stringify(result.errors)}`);
  return result.policy;
}

/** Removes the folders written so far. */
export function removePolicyFolders(): void {
  for (const dir of folders.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
}

/** A certificate fingerprint made of one repeated byte, lower-case hex without colons. */
export function fingerprint(byte: string): string {
  return byte.repeat(32);
}

/** The same fingerprint upper-case with colons, as certificate tools print it. */
export function colonUpper(hex: string): string {
  return hex.toUpperCase().match(/../g)!.join(":");
}
