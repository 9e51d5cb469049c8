/**
 * Real Redis for tests: the machine's service at 127.0.0.1:6379 with a key
 * prefix unique to the run (deleted afterwards), or a `redis-server` the test
 * starts, stops and starts again itself on a free port.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import net from "node:net";
import { Redis } from "ioredis";

export const SHARED_REDIS_URL = process.env.PORTCULLIS_TEST_REDIS_URL ?? "redis://127.0.0.1:6379";

/** Why Redis at `url` cannot be used, or `null` when it answers PING. In CI an unreachable Redis fails instead. */
export async function redisMissing(url = SHARED_REDIS_URL): Promise<string | null> {
  const client = new Redis(url, { lazyConnect: true, connectTimeout: 1_000, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false });
  client.on("error", () => undefined);
  try {
    await client.connect();
    await client.ping();
    return null;
  } catch (error) {
    const reason = `redis at ${url} is not reachable (${error instanceof Error ? error.message : String(error)})`;
    if (process.env.CI) throw new Error(`${reason}; CI must run the redis tests`);
    console.warn(`skipped: ${reason}`);
    return reason;
  } finally {
    client.disconnect();
  }
}

/** Whether `redis-server` can be run here; in CI its absence fails instead. */
export function redisServerMissing(): string | null {
  const result = spawnSync("redis-server", ["--version"], { encoding: "utf8" });
  if (result.status === 0) return null;
  const reason = "redis-server is not installed";
  if (process.env.CI) throw new Error(`${reason}; CI must run the redis outage tests`);
  console.warn(`skipped: ${reason}`);
  return reason;
}

/** A key prefix no other run uses: `portcullis-test:<random>:`. */
export function uniqueKeyPrefix(): string {
  return `portcullis-test:${randomBytes(6).toString("hex")}:`;
}

/** Deletes every key under `prefix` (SCAN, bounded), then disconnects. */
export async function deleteKeys(url: string, prefix: string): Promise<number> {
  const client = new Redis(url, { maxRetriesPerRequest: 1 });
  try {
    let cursor = "0";
    let deleted = 0;
    for (let round = 0; round < 10_000; round++) {
      const [next, keys] = await client.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
      if (keys.length > 0) deleted += await client.del(...keys);
      cursor = next;
      if (cursor === "0") break;
    }
    return deleted;
  } finally {
    client.disconnect();
  }
}

/** A free TCP port on loopback (bound, read and released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address !== null ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}

/** A `redis-server` of the test's own on one port, which it may stop, pause and start again. */
export interface OwnRedis {
  readonly port: number;
  readonly url: string;
  /** Starts it (again) on the same port and waits until it answers. */
  start(): Promise<void>;
  /** Stops it (SIGTERM) and waits for the process to exit. */
  stop(): Promise<void>;
  /** SIGSTOP: the connection stays open but nothing is answered. */
  pause(): void;
  /** SIGCONT after {@link pause}. */
  resume(): void;
}

/** Starts a `redis-server` without persistence on a free port. */
export async function startOwnRedis(): Promise<OwnRedis> {
  const port = await freePort();
  const url = `redis://127.0.0.1:${port}`;
  let child: ChildProcess | undefined;
  const own: OwnRedis = {
    port,
    url,
    async start() {
      if (child !== undefined) throw new Error("redis-server is already running");
      const started = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: "ignore" });
      child = started;
      const giveUpAtMs = Date.now() + 10_000;
      while (Date.now() < giveUpAtMs) {
        if (started.exitCode !== null) throw new Error(`redis-server on port ${port} exited with ${started.exitCode}`);
        if ((await redisMissingQuietly(url)) === null) return;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      throw new Error(`redis-server on port ${port} did not answer within 10 s`);
    },
    async stop() {
      const running = child;
      child = undefined;
      if (running === undefined || running.exitCode !== null) return;
      running.kill("SIGCONT");
      const exited = new Promise((resolve) => running.once("exit", resolve));
      running.kill("SIGTERM");
      const timer = setTimeout(() => running.kill("SIGKILL"), 5_000);
      await exited;
      clearTimeout(timer);
    },
    pause: () => void child?.kill("SIGSTOP"),
    resume: () => void child?.kill("SIGCONT"),
  };
  await own.start();
  return own;
}

async function redisMissingQuietly(url: string): Promise<string | null> {
  const client = new Redis(url, { lazyConnect: true, connectTimeout: 500, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false });
  client.on("error", () => undefined);
  try {
    await client.connect();
    await client.ping();
    return null;
  } catch (error) {
    return String(error);
  } finally {
    client.disconnect();
  }
}
