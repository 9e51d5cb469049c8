/**
 * `portcullis serve --workers 2`, run as `bin/portcullis.js` (`npm run build`
 * first): both workers answer on the shared ports (the pid each scrape of
 * /metrics names), SIGHUP reaches both, a killed worker is replaced, SIGTERM
 * stops every process, and a start that cannot succeed is refused once.
 */
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import net, { type AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { EXAMPLE_POLICY_DIR } from "../support/fixtures.js";

const BIN = path.resolve("bin/portcullis.js");
const started: ChildProcess[] = [];
const dirs: string[] = [];

afterEach(() => {
  for (const child of started.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    for (const pid of childPids(child.pid!)) killQuietly(pid);
  }
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

function killQuietly(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // gone already
  }
}

/** Pids of `pid`'s children, from /proc. */
function childPids(pid: number): number[] {
  try {
    return execFileSync("ps", ["-o", "pid=", "--ppid", String(pid)], { encoding: "utf8" })
      .split("\n")
      .map((line) => Number(line.trim()))
      .filter((n) => n > 0);
  } catch {
    return [];
  }
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-workers-"));
  dirs.push(dir);
  return dir;
}

/** One GET on a fresh connection, so that the primary hands it to the next worker. */
function get(port: number, urlPath: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const request = http.get({ host: "127.0.0.1", port, path: urlPath, agent: false, headers: { connection: "close" } }, (response) => {
      let body = "";
      response.setEncoding("utf8");
      response.on("data", (chunk: string) => (body += chunk));
      response.on("end", () => resolve({ status: response.statusCode ?? 0, body }));
    });
    request.on("error", reject);
    request.setTimeout(5_000, () => request.destroy(new Error("timeout")));
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Scrape {
  pid: number;
  reloadsOk: number;
}

async function scrape(port: number): Promise<Scrape> {
  const { body } = await get(port, "/metrics");
  return {
    pid: Number(/^portcullis_worker_info\{worker="\d+",pid="(\d+)"\} 1$/m.exec(body)?.[1]),
    reloadsOk: Number(/^portcullis_policy_reloads_total\{result="ok"\} (\d+)$/m.exec(body)?.[1]),
  };
}

/** Scrapes until `done` says enough (at most 1000 scrapes or 20 s); the scrapes seen. */
async function scrapeUntil(port: number, done: (scrapes: Scrape[]) => boolean): Promise<Scrape[]> {
  const seen: Scrape[] = [];
  const until = Date.now() + 20_000;
  for (let i = 0; i < 1_000 && Date.now() < until; i++) {
    if (i > 0) await sleep(10);
    try {
      seen.push(await scrape(port));
    } catch {
      await sleep(100);
      continue;
    }
    if (done(seen)) break;
  }
  return seen;
}

async function startWorkers(extra: string[] = []): Promise<{ child: ChildProcess; httpPort: number; output: () => string; exited: Promise<number | null> }> {
  const dir = tempDir();
  const policies = path.join(dir, "policies");
  fs.cpSync(EXAMPLE_POLICY_DIR, policies, { recursive: true });
  const [grpcPort, httpPort] = [await freePort(), await freePort()];
  const child = spawn(
    process.execPath,
    [BIN, "serve", "--workers", "2", "--grpc-port", String(grpcPort), "--http-port", String(httpPort), "--policies", policies, "--data-dir", path.join(dir, "data"), "--no-watch-policies", ...extra],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  started.push(child);
  let output = "";
  child.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return { child, httpPort, output: () => output, exited };
}

async function waitFor(condition: () => boolean): Promise<void> {
  const until = Date.now() + 20_000;
  while (!condition() && Date.now() < until) await sleep(50);
}

const distinctPids = (scrapes: Scrape[]) => new Set(scrapes.map((s) => s.pid).filter((pid) => pid > 0));

describe("serve --workers 2", () => {
  it("answers from both workers, reloads both on SIGHUP, replaces a killed one, and SIGTERM stops all", async () => {
    const { child, httpPort, output, exited } = await startWorkers();
    await waitFor(() => (output().match(/"msg":"listening: /g) ?? []).length === 2);

    const first = await scrapeUntil(httpPort, (seen) => distinctPids(seen).size >= 2);
    const pids = distinctPids(first);
    expect(pids.size, output()).toBe(2);
    expect(new Set(childPids(child.pid!))).toEqual(pids);
    expect((await get(httpPort, "/readyz")).status).toBe(200);

    child.kill("SIGHUP");
    const reloaded = await scrapeUntil(httpPort, (seen) => distinctPids(seen.filter((s) => s.reloadsOk === 1)).size >= 2);
    expect(distinctPids(reloaded.filter((s) => s.reloadsOk === 1))).toEqual(pids);

    const [victim, survivor] = [...pids];
    process.kill(victim!, "SIGKILL");
    // the replacement starts after 1 s
    const after = await scrapeUntil(httpPort, (seen) => [...distinctPids(seen)].some((pid) => !pids.has(pid)));
    const replacement = [...distinctPids(after)].find((pid) => !pids.has(pid));
    expect(replacement, output()).toBeDefined();
    expect(new Set(childPids(child.pid!))).toEqual(new Set([survivor, replacement]));

    const workers = childPids(child.pid!);
    child.kill("SIGTERM");
    expect(await exited).toBe(0);
    for (const pid of workers) expect(() => process.kill(pid, 0)).toThrow();
    expect(output()).toContain("SIGTERM received; stopping 2 workers");
  }, 60_000);

  it("refuses a start the first worker cannot make, once, with its message", async () => {
    const { child, output, exited } = await startWorkers(["--policies", path.join(tempDir(), "missing")]);
    expect(await exited).toBe(1);
    expect(output()).toContain("the policy set is invalid");
    expect(output()).toContain("the first worker exited before listening");
    expect(childPids(child.pid!)).toEqual([]);
  }, 30_000);

  it("refuses port 0, which every worker would share for both servers", async () => {
    const child = spawn(process.execPath, [BIN, "serve", "--workers", "2", "--grpc-port", "0", "--http-port", "0", "--data-dir", path.join(tempDir(), "data")], { stdio: ["ignore", "pipe", "pipe"] });
    started.push(child);
    let stderr = "";
    child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
    expect(code).toBe(2);
    expect(stderr).toContain("--workers above 1 needs fixed ports");
  }, 30_000);
});
