/**
 * Reload on change, live: a running server picks up an edited policy file,
 * keeps the last good set while a file is broken or half-written, picks up
 * the fix, and names the revision in every answer (Authorize and Envoy's
 * dynamic metadata).
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createToken } from "../../src/service/tokens.js";
import { checkAnswerFromResult } from "../../src/transport/envoy.js";
import { EXAMPLE_POLICY_DIR } from "../support/fixtures.js";
import { startTestServer, type TestServer } from "../support/server.js";

let t: TestServer;
let folder: string;
let token: string;

beforeAll(async () => {
  folder = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-watch-"));
  for (const name of fs.readdirSync(EXAMPLE_POLICY_DIR)) {
    if (name.endsWith(".json")) fs.copyFileSync(path.join(EXAMPLE_POLICY_DIR, name), path.join(folder, name));
  }
  t = await startTestServer(folder);
  token = (await createToken(t.server.store, t.server.policy(), { tenant: "acme", workspace: "main", environment: "production", type: "service", name: "op", role: "tenant_operator", actor: "test" }, Date.now())).token;
});

afterAll(async () => {
  await t.stop();
  fs.rmSync(folder, { recursive: true, force: true });
});

async function authorize(): Promise<{ code: string; policyRevision: string }> {
  const response = await fetch(`${t.httpUrl}/portcullis.v1.AuthorizationService/Authorize`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ method: "GET", path: "/api/payouts", host: "api.example.com", headers: [{ name: "authorization", value: `Bearer ${token}` }] }),
  });
  return (await response.json()) as { code: string; policyRevision: string };
}

async function reloads(result: "ok" | "refused"): Promise<number> {
  const text = await (await fetch(`${t.httpUrl}/metrics`)).text();
  return Number(new RegExp(`portcullis_policy_reloads_total\\{result="${result}"\\} (\\d+)`).exec(text)?.[1] ?? NaN);
}

/** Polls `probe` until `done` holds, for at most 5 s. */
async function until<T>(probe: () => Promise<T>, done: (value: T) => boolean): Promise<T> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const value = await probe();
    if (done(value) || Date.now() > deadline) return value;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const rolesFile = () => path.join(folder, "roles.json");

function withoutPayoutsRead(): string {
  const roles = JSON.parse(fs.readFileSync(path.join(EXAMPLE_POLICY_DIR, "roles.json"), "utf8"));
  const operator = roles.roles.find((r: { name: string }) => r.name === "tenant_operator");
  operator.scopes = operator.scopes.filter((s: string) => s !== "payouts:read");
  return JSON.stringify(roles, null, 2);
}

describe("reload on change", () => {
  it("names the revision in the Authorize answer and in Envoy's dynamic metadata", async () => {
    const first = await authorize();
    expect(first).toMatchObject({ code: "ok", policyRevision: t.server.policy().revision });
    const result = await t.server.authorize({ method: "GET", path: "/api/payouts", host: "api.example.com", headers: new Map([["authorization", `Bearer ${token}`]]), sourceIp: "", clientCertificate: null });
    expect(checkAnswerFromResult(result).metadata.get("policy_revision")).toBe(t.server.policy().revision);
  });

  it("applies an edit, keeps the last good set while a file is broken or half-written, and applies the fix", async () => {
    const original = t.server.policy().revision;

    fs.writeFileSync(rolesFile(), withoutPayoutsRead());
    const edited = await until(authorize, (a) => a.policyRevision !== original);
    expect(edited.code).toBe("scope_denied");
    const editedRevision = edited.policyRevision;
    expect(editedRevision).toMatch(/^[0-9a-f]{64}$/);

    const refusedBefore = await reloads("refused");
    const full = fs.readFileSync(path.join(EXAMPLE_POLICY_DIR, "roles.json"), "utf8");
    fs.writeFileSync(rolesFile(), full.slice(0, Math.floor(full.length / 2)));
    expect(await until(() => reloads("refused"), (n) => n > refusedBefore)).toBe(refusedBefore + 1);
    expect(await authorize()).toMatchObject({ code: "scope_denied", policyRevision: editedRevision });

    fs.writeFileSync(rolesFile(), full.replace('"tenant_admin"', '"tenant_admin",'));
    expect(await until(() => reloads("refused"), (n) => n > refusedBefore + 1)).toBe(refusedBefore + 2);
    expect(await authorize()).toMatchObject({ code: "scope_denied", policyRevision: editedRevision });

    fs.writeFileSync(rolesFile(), full);
    const fixed = await until(authorize, (a) => a.policyRevision !== editedRevision);
    expect(fixed).toEqual(expect.objectContaining({ code: "ok", policyRevision: original }));
  });
});
