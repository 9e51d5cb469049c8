/**
 * A FIFO, socket or other special file named `*.json` in the policy folder
 * must be refused with a clear error, at start and on reload, without ever
 * blocking in `open` (a FIFO with no writer blocks a plain open forever).
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { loadPolicySet } from "../../src/policy/load.js";
import { EXAMPLE_POLICY_DIR } from "../support/fixtures.js";
import { startTestServer } from "../support/server.js";

let dir: string;
const cleanup: Array<() => unknown> = [];

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-special-"));
  fs.cpSync(EXAMPLE_POLICY_DIR, dir, { recursive: true });
});

afterEach(async () => {
  for (const step of cleanup.splice(0)) await step();
  fs.rmSync(dir, { recursive: true, force: true });
});

/**
 * Makes `name` a FIFO. A helper process opens it for writing after `unblockMs`,
 * which is what frees a reader blocked in `open`: without the fix the load
 * returns only then; with it, at once.
 */
function fifo(name: string, unblockMs: number): string {
  const file = path.join(dir, name);
  execFileSync("mkfifo", [file]);
  const writer: ChildProcess = spawn("sh", ["-c", `sleep ${unblockMs / 1000}; exec 3>"$0"`, file], { stdio: "ignore" });
  cleanup.push(() => writer.kill("SIGKILL"));
  return file;
}

describe("special files in the policy folder", () => {
  it("refuses a FIFO named *.json at once, with the file and a clear message", () => {
    const file = fifo("zz-extra.json", 3_000);
    const startMs = performance.now();
    const loaded = loadPolicySet(dir);
    expect(performance.now() - startMs).toBeLessThan(1_000);
    expect(loaded.ok).toBe(false);
    if (loaded.ok) return;
    expect(loaded.errors).toContainEqual(expect.objectContaining({ file, message: "not a regular file (a fifo); only regular files are read" }));
  });

  it("refuses a unix socket named *.json", async () => {
    const file = path.join(dir, "zz-socket.json");
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(file, resolve));
    cleanup.push(() => server.close());
    const loaded = loadPolicySet(dir);
    expect(loaded.ok ? [] : loaded.errors.map((e) => [e.file, e.message])).toContainEqual([file, expect.stringMatching(/^(not a regular file \(a socket\)|cannot read file: ENXIO)/)]);
  });

  it("reads a symbolic link to a regular file, as a ConfigMap mount has", () => {
    const real = path.join(dir, "scopes.json");
    fs.renameSync(real, path.join(dir, "scopes.real"));
    fs.symlinkSync(path.join(dir, "scopes.real"), real);
    expect(loadPolicySet(dir).ok).toBe(true);
  });

  it("keeps the policy in force when a reload finds a FIFO, without hanging the server", async () => {
    const t = await startTestServer(dir);
    cleanup.push(() => t.stop());
    const revision = t.server.policy().revision;
    fifo("zz-late.json", 3_000);
    const startMs = performance.now();
    const reloaded = t.server.reloadPolicy();
    expect(performance.now() - startMs).toBeLessThan(1_000);
    expect(reloaded.ok).toBe(false);
    expect(t.server.policy().revision).toBe(revision);
    expect((await fetch(`${t.httpUrl}/healthz`)).status).toBe(200);
  });
});
