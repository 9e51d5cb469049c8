/**
 * `portcullis serve` refuses ports it cannot bind before it loads anything,
 * with a message that names the flag and the variable, as every other
 * configuration error does.
 */
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import type { AddressInfo } from "node:net";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { main } from "../../src/cli/main.js";
import { captureCliOutput } from "../support/cli-output.js";

let dir: string;
let busy: net.Server;
let busyPort: number;
const io = captureCliOutput();

beforeEach(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-serve-"));
  busy = net.createServer();
  await new Promise<void>((resolve) => busy.listen(0, "127.0.0.1", resolve));
  busyPort = (busy.address() as AddressInfo).port;
});
afterEach(async () => {
  await new Promise((resolve) => busy.close(resolve));
  fs.rmSync(dir, { recursive: true, force: true });
});

// A policy folder that does not exist: were it loaded first, its error would be the one reported.
const serve = (...ports: string[]) =>
  main(["node", "portcullis", "serve", "--host", "127.0.0.1", "--policies", path.join(dir, "missing-policies"), "--data-dir", path.join(dir, "data"), ...ports]);

describe("portcullis serve and its ports", () => {
  it.each([
    { name: "a busy HTTP port", flags: () => ["--grpc-port", "0", "--http-port", String(busyPort)], names: "--http-port (PORTCULLIS_HTTP_PORT)" },
    { name: "a busy gRPC port", flags: () => ["--grpc-port", String(busyPort), "--http-port", "0"], names: "--grpc-port (PORTCULLIS_GRPC_PORT)" },
  ])("refuses $name naming the flag and the variable, before loading policies or opening the store", async ({ flags, names }) => {
    expect(await serve(...flags())).toBe(2);
    expect(io.err).toContain(names);
    expect(io.err).toContain(`${busyPort} is already in use on 127.0.0.1`);
    expect(io.err).not.toMatch(/policy|EADDRINUSE/);
    expect(fs.existsSync(path.join(dir, "data"))).toBe(false);
  });

  it("refuses one port given to both servers", async () => {
    expect(await serve("--grpc-port", "18181", "--http-port", "18181")).toBe(2);
    expect(io.err).toContain("--grpc-port (PORTCULLIS_GRPC_PORT) and --http-port (PORTCULLIS_HTTP_PORT) are both 18181");
  });

  it("refuses a host that is not an address of this machine, naming --host", async () => {
    // 192.0.2.0/24 is TEST-NET-1 (RFC 5737): never assigned to a local interface, so binding fails without sending anything.
    expect(await main(["node", "portcullis", "serve", "--host", "192.0.2.1", "--grpc-port", "0", "--http-port", "0", "--policies", path.join(dir, "p"), "--data-dir", path.join(dir, "data")])).toBe(2);
    expect(io.err).toContain("--host (PORTCULLIS_HOST) `192.0.2.1` is not an address of this machine");
  });
});
