/**
 * docs/grpcurl.md, run: every `grpcurl` command on the page goes through bash
 * (so quoting and `$TOKEN` expand as for a reader), into a stand-in `grpcurl`
 * that records its arguments. The test then does what grpcurl does with them:
 * compiles the named protos from the import path (with buf, as grpcurl's own
 * parser would), reads `-d` as protobuf JSON, calls the live gRPC port and
 * prints the answer as protobuf JSON. grpcurl itself is not packaged for
 * Debian, so it cannot run here.
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createFileRegistry, fromBinary, fromJson, toBinary, toJson, type FileRegistry, type JsonValue } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createToken } from "../../src/service/tokens.js";
import { REPO_ROOT } from "../support/fixtures.js";
import { startTestServer, type TestServer } from "../support/server.js";

const doc = fs.readFileSync(path.join(REPO_ROOT, "docs", "grpcurl.md"), "utf8");
const blocks = [...doc.matchAll(/```sh\n([\s\S]*?)```/g)].map((match) => match[1]!).filter((block) => block.includes("grpcurl"));
const buf = path.join(REPO_ROOT, "node_modules", ".bin", "buf");
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-grpcurl-"));

let t: TestServer;
let token: string;
let invocations: Invocation[];
beforeAll(async () => {
  t = await startTestServer();
  token = (await createToken(t.server.store, t.server.policy(), { tenant: "acme", workspace: "main", name: "grpcurl", role: "tenant_operator", environment: "test", type: "service", actor: "docs" }, Date.now())).token;
  fs.writeFileSync(path.join(scratch, "grpcurl"), `#!/usr/bin/env node\nrequire("fs").appendFileSync(process.env.GRPCURL_ARGV, JSON.stringify(process.argv.slice(2)) + "\\n");\n`, { mode: 0o755 });
  invocations = blocks.flatMap(invocationsOf);
});
afterAll(async () => {
  await t.stop();
  fs.rmSync(scratch, { recursive: true, force: true });
});

interface Invocation {
  readonly plaintext: boolean;
  readonly importPaths: string[];
  readonly protos: string[];
  readonly data: string | undefined;
  readonly positional: string[];
}

/** The block's grpcurl invocations, with arguments as bash hands them over. */
function invocationsOf(block: string): Invocation[] {
  const log = path.join(scratch, "argv.jsonl");
  fs.rmSync(log, { force: true });
  execFileSync("bash", ["-euc", block], { cwd: REPO_ROOT, env: { ...process.env, PATH: `${scratch}:${process.env.PATH}`, TOKEN: token, GRPCURL_ARGV: log } });
  return fs.readFileSync(log, "utf8").trim().split("\n").map((line) => parse(JSON.parse(line) as string[]));
}

function parse(argv: string[]): Invocation {
  const invocation: Invocation = { plaintext: false, importPaths: [], protos: [], data: undefined, positional: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "-plaintext") (invocation as { plaintext: boolean }).plaintext = true;
    else if (arg === "-import-path") invocation.importPaths.push(argv[++i]!);
    else if (arg === "-proto") invocation.protos.push(argv[++i]!);
    else if (arg === "-d") (invocation as { data: string | undefined }).data = argv[++i]!;
    else if (arg.startsWith("-")) throw new Error(`the test does not know grpcurl's ${arg}`);
    else invocation.positional.push(arg);
  }
  return invocation;
}

/** The protos compiled as grpcurl compiles them: from the import path, the named files and what they import. */
function registryOf(invocation: Invocation): FileRegistry {
  expect(invocation.importPaths).toEqual(["proto"]);
  const key = invocation.protos.join(" ");
  const cached = registries.get(key);
  if (cached !== undefined) return cached;
  const image = path.join(scratch, "image.binpb");
  execFileSync(buf, ["build", "proto", ...invocation.protos.flatMap((file) => ["--path", path.join("proto", file)]), "-o", image], { cwd: REPO_ROOT });
  const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, fs.readFileSync(image)));
  registries.set(key, registry);
  return registry;
}
const registries = new Map<string, FileRegistry>();

async function call(invocation: Invocation): Promise<JsonValue> {
  const [address, fullMethod] = invocation.positional;
  expect(address).toBe("localhost:9191");
  expect(invocation.plaintext, "the gRPC port is cleartext: grpcurl needs -plaintext").toBe(true);
  const [serviceName, methodName] = fullMethod!.split("/");
  const method = registryOf(invocation).getService(serviceName!)?.methods.find((candidate) => candidate.name === methodName);
  expect(method, `${fullMethod} in ${invocation.protos.join(", ")}`).toBeDefined();
  const request = toBinary(method!.input, fromJson(method!.input, JSON.parse(invocation.data ?? "{}") as JsonValue));
  const client = new grpc.Client(t.grpcAddress, grpc.credentials.createInsecure());
  try {
    const answer = await new Promise<Buffer>((resolve, reject) =>
      client.makeUnaryRequest(`/${fullMethod}`, (bytes: Buffer) => bytes, (bytes: Buffer) => bytes, Buffer.from(request), (error, response) => (error ? reject(error) : resolve(response!))),
    );
    return toJson(method!.output, fromBinary(method!.output, answer));
  } finally {
    client.close();
  }
}

const expectations: { method: string; answer: Record<string, unknown> }[] = [
  { method: "portcullis.v1.AuthorizationService/Authorize", answer: { allowed: true, httpStatus: 200, code: "ok", ruleId: "group:/api/payouts" } },
  { method: "envoy.service.auth.v3.Authorization/Check", answer: { status: {} } },
  { method: "grpc.health.v1.Health/Check", answer: { status: "SERVING" } },
];

describe("docs/grpcurl.md", () => {
  it("has a command for each documented call, and one that only reads the protos", () => {
    expect(invocations.map((invocation) => invocation.positional.at(-1))).toEqual([...expectations.map((row) => row.method), "portcullis.v1.AuthorizeResponse"]);
  });

  it.each(expectations)("$method answers as the page says", async ({ method, answer }) => {
    const invocation = invocations.find((candidate) => candidate.positional[1] === method)!;
    const json = (await call(invocation)) as Record<string, unknown>;
    expect(json).toMatchObject(answer);
    if (method.endsWith("/Check") && method.startsWith("envoy")) expect(json.okResponse).toBeDefined();
  });

  it("describes a message from the protos alone", () => {
    const invocation = invocations.find((candidate) => candidate.positional[0] === "describe")!;
    expect(registryOf(invocation).getMessage(invocation.positional[1]!)?.fields.map((field) => field.name)).toEqual(expect.arrayContaining(["allowed", "http_status", "code"]));
  });
});
