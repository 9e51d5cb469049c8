/**
 * Turns `REV:path` into a folder: the policy files of a git revision, written
 * with `git show` into a temporary folder, so that `policy diff` can compare
 * a working copy against what is committed.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * A folder for `ref`: the folder itself when it exists on disk, else the
 * `*.json` files directly under `path` at git revision `REV` (for `REV:path`).
 * `temporary` folders are the caller's to remove.
 *
 * @throws Error when `ref` is neither a folder nor a readable revision
 */
export function materializeRevision(ref: string): { dir: string; temporary: boolean } {
  if (existsSync(ref)) return { dir: ref, temporary: false };
  const colon = ref.indexOf(":");
  if (colon <= 0) throw new Error(`\`${ref}\` is neither a folder nor a git revision \`REV:path\``);
  const rev = ref.slice(0, colon);
  const path = ref.slice(colon + 1).replace(/\/+$/, "") || ".";
  const git = (args: string[]) => execFileSync("git", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], maxBuffer: 64 * 1024 * 1024 });
  let listing: string;
  try {
    // why: git paths are relative to the repository root; `./` makes them relative to the current folder
    listing = git(["ls-tree", "--name-only", `${rev}:${path === "." ? "" : path.startsWith("./") ? path : `./${path}`}`]);
  } catch (error) {
    const detail = error instanceof Error && "stderr" in error ? String((error as { stderr: unknown }).stderr).trim() : String(error);
    throw new Error(`cannot read \`${ref}\` from git: ${detail}`);
  }
  const dir = mkdtempSync(join(tmpdir(), "portcullis-diff-"));
  try {
    for (const name of listing.split("\n").filter((n) => n.endsWith(".json"))) {
      const spec = `${rev}:${path.startsWith("./") ? path : `./${path}`}/${name}`;
      writeFileSync(join(dir, name), git(["show", spec]));
    }
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  return { dir, temporary: true };
}
