/**
 * Real HTTP receivers for webhook tests: one in a child process (killable
 * with SIGKILL, restartable on the same port) and one in this process; and
 * an independent signature check written with node:crypto alone, so that a
 * test never verifies Portcullis's signatures with Portcullis's own code.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createHmac, timingSafeEqual } from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

const RECEIVER_SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "fixtures", "webhook-receiver.mjs");

/** One request a receiver saw. */
export interface ReceivedWebhook {
  readonly path: string;
  readonly headers: Record<string, string>;
  readonly body: string;
  /** What the receiver answered. */
  readonly status: number;
}

export interface ReceiverProcess {
  readonly port: number;
  readonly child: ChildProcess;
  /** Kills it with SIGKILL and waits for the exit. */
  kill(): Promise<void>;
}

/** Starts `webhook-receiver.mjs` answering `status` to every request, appending each to `file`. */
export async function startReceiverProcess(port: number, status: number, file: string): Promise<ReceiverProcess> {
  const child = spawn(process.execPath, [RECEIVER_SCRIPT, String(port), String(status), file], { stdio: ["ignore", "pipe", "inherit"] });
  const bound = await new Promise<number>((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error("the receiver did not start within 5 s")), 5_000);
    child.stdout!.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      const match = /listening (\d+)/.exec(out);
      if (match) {
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`the receiver exited with ${code}`));
    });
  });
  return {
    port: bound,
    child,
    kill: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once("exit", () => resolve());
        child.kill("SIGKILL");
      }),
  };
}

/** What the child receiver appended to `file` so far. */
export function readReceived(file: string): ReceivedWebhook[] {
  if (!fs.existsSync(file)) return [];
  return fs.readFileSync(file, "utf8").split("\n").filter((line) => line !== "").map((line) => JSON.parse(line) as ReceivedWebhook);
}

/** An in-process receiver answering `status()` for each request (after `delayMs()`), keeping what it saw. */
export async function startInProcessReceiver(status: () => number = () => 200, delayMs: () => number = () => 0): Promise<{ url: string; received: ReceivedWebhook[]; close(): Promise<void> }> {
  const received: ReceivedWebhook[] = [];
  const server = http.createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      const answer = status();
      received.push({ path: request.url ?? "", headers: request.headers as Record<string, string>, body: Buffer.concat(chunks).toString("utf8"), status: answer });
      const delay = delayMs();
      if (delay === 0) response.writeHead(answer).end();
      else setTimeout(() => response.writeHead(answer).end(), delay);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/**
 * Checks `Portcullis-Signature` (`t=<unix>,v1=<hex>`) by the documented
 * recipe, independently of src/webhooks: HMAC-SHA-256 of `${t}.${body}`,
 * compared in constant time, the timestamp within five minutes of now.
 */
export function signatureIsValid(secret: string, header: string | undefined, body: string, nowMs = Date.now()): boolean {
  if (header === undefined) return false;
  const parts = new Map(header.split(",").map((part) => part.split("=", 2) as [string, string]));
  const t = parts.get("t");
  const v1 = parts.get("v1");
  if (t === undefined || v1 === undefined || !/^[0-9a-f]{64}$/.test(v1)) return false;
  const expected = createHmac("sha256", secret).update(`${t}.${body}`).digest();
  return timingSafeEqual(expected, Buffer.from(v1, "hex")) && Math.abs(nowMs / 1000 - Number(t)) <= 300;
}

/** Waits until `check()` holds, polling every 20 ms, for at most `timeoutMs`. */
export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
