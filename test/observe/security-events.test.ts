/**
 * Security events end to end: denials of every stored kind driven through
 * Envoy `Check` on the real server are counted per (token, event, minute),
 * written to the store off the decision path, and read back with
 * `portcullis audit list --event … --since …`: 50 IP-allowlist denials of one
 * token within one minute are one row with count 50.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../../src/cli/main.js";
import { createToken } from "../../src/service/tokens.js";
import { captureCliOutput } from "../support/cli-output.js";
import { EXAMPLE_POLICY_DIR } from "../support/fixtures.js";
import { startTestServer, type TestServer } from "../support/server.js";
import { envoyCheckClient, type EnvoyCheckClient } from "../envoy/envoy-client.js";

let t: TestServer;
let client: EnvoyCheckClient;
const tokens: Record<string, string> = {};
const tokenIds: Record<string, string> = {};
const io = captureCliOutput();

beforeAll(async () => {
  t = await startTestServer(EXAMPLE_POLICY_DIR);
  client = envoyCheckClient(t.grpcAddress);
  const policy = t.server.policy();
  const base = { tenant: "acme", workspace: "main", environment: "production", type: "service" as const, actor: "test", role: "tenant_operator" };
  const make = async (key: string, fields: Record<string, unknown>) => {
    const created = await createToken(t.server.store, policy, { ...base, name: key, ...fields }, Date.now());
    tokens[key] = created.token;
    tokenIds[key] = created.record.id;
  };
  await make("operator", {});
  await make("allowlisted", { controls: { ipAllowlist: ["198.51.100.0/24"] } });
  await make("pinned", { controls: { mtls: { fingerprints: ["a".repeat(64)] } } });
  await make("suspended", { tenant: "initech" });
  await make("readOnly", { controls: { conditionalAccess: { readOnly: true } } });
  await make("reader", { keyLevel: "read_only" });
  await make("frozen", { workspace: "frozen" });
  await make("spent", { controls: { quota: { limitPerDay: 1 } } });
  await t.server.store.suspendTenant("initech", { actor: "test", reason: "events" });
  await t.server.store.restrictWorkspace("acme", "frozen", { actor: "test", reason: "events" });
});

afterAll(async () => {
  client?.close();
  await t?.stop();
});

function checkRequest(token: string | null, fields: { method?: string; sourceIp?: string } = {}): object {
  const method = fields.method ?? "GET";
  const headers: Record<string, string> = { ":authority": "api.example.com", ":method": method, ":path": "/api/payouts", ":scheme": "https" };
  if (token !== null) headers.authorization = `Bearer ${token}`;
  return {
    attributes: {
      source: { address: { socket_address: { address: fields.sourceIp ?? "203.0.113.10", port_value: 50_123 } } },
      request: { http: { id: "1", method, path: "/api/payouts", host: "api.example.com", scheme: "https", protocol: "HTTP/1.1", headers } },
    },
  };
}

async function run(...args: string[]): Promise<number> {
  io.out = "";
  io.err = "";
  process.exitCode = undefined;
  return main(["node", "portcullis", ...args, "--policies", EXAMPLE_POLICY_DIR, "--data-dir", t.dataDir]);
}

interface ListedRow {
  kind: "lifecycle" | "security";
  event: string;
  tokenId: string | null;
  count?: number;
  minuteMs?: number;
}

/** `audit list --json` rows once `ready` holds (counts reach the store within about a second), at most 5 s. */
async function listUntil(args: string[], ready: (rows: ListedRow[]) => boolean): Promise<ListedRow[]> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    expect(await run("audit", "list", "--json", ...args)).toBe(0);
    const rows = JSON.parse(io.out) as ListedRow[];
    if (ready(rows) || Date.now() > deadline) return rows;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

describe("stored security events", () => {
  it("stores 50 IP-allowlist denials of one token in one minute as one row with count 50, and lists it by event and since", async () => {
    // why: the 50 denials must fall in one UTC minute for one row; start afresh when the minute is about to turn
    const intoMinute = Date.now() % 60_000;
    if (intoMinute > 55_000) await new Promise((resolve) => setTimeout(resolve, 60_500 - intoMinute));
    const startedMs = Date.now();
    for (let i = 0; i < 50; i++) {
      const answer = await client.check(checkRequest(tokens.allowlisted!, { sourceIp: "203.0.113.10" }));
      expect(answer.status.code).toBe(7);
    }
    const allowed = await client.check(checkRequest(tokens.allowlisted!, { sourceIp: "198.51.100.7" }));
    expect(allowed.status.code).toBe(0);

    const rows = await listUntil(["--event", "auth.api_token_ip_allowlist_blocked", "--since", "1h"], (listed) => listed.some((row) => row.count === 50));
    expect(rows).toEqual([
      expect.objectContaining({ kind: "security", event: "auth.api_token_ip_allowlist_blocked", tokenId: tokenIds.allowlisted, tenant: "acme", count: 50, minuteMs: startedMs - (startedMs % 60_000) }),
    ]);

    expect(await run("audit", "list", "--event", "auth.api_token_ip_allowlist_blocked", "--since", new Date(startedMs - 60_000).toISOString())).toBe(0);
    const lines = io.out.trim().split("\n");
    expect(lines[0]).toMatch(/^TIME\s+EVENT\s+ACTOR\s+TENANT\s+TOKEN\s+COUNT\s+DETAILS$/);
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatch(new RegExp(`auth\\.api_token_ip_allowlist_blocked\\s+-\\s+acme\\s+${tokenIds.allowlisted}\\s+50\\s+\\{"minute"`));
    expect(io.out).not.toContain(tokens.allowlisted);

    // A later --since than every stored denial lists nothing.
    expect(await run("audit", "list", "--json", "--event", "auth.api_token_ip_allowlist_blocked", "--since", new Date(Date.now() + 60_000).toISOString())).toBe(0);
    expect(JSON.parse(io.out)).toEqual([]);
    expect(await run("audit", "list", "--since", "yesterday")).toBe(2);

    const metrics = await (await fetch(`${t.httpUrl}/metrics`)).text();
    expect(metrics).toMatch(/^portcullis_security_events_total\{outcome="stored"\} 50$/m);
    expect(metrics).toMatch(/^portcullis_security_events_total\{outcome="write_failed"\} 0$/m);
  });

  it("stores every kind of denial beside the lifecycle trail, merged newest first", async () => {
    expect((await client.check(checkRequest(tokens.spent!))).status.code).toBe(0);
    const denials: [string, object][] = [
      ["auth.api_token_mtls_required", checkRequest(tokens.pinned!)],
      ["auth.api_token_tenant_suspended", checkRequest(tokens.suspended!)],
      ["auth.api_token_conditional_access_blocked", checkRequest(tokens.readOnly!, { method: "POST" })],
      ["auth.api_token_ability_rejected", checkRequest(tokens.reader!, { method: "POST" })],
      ["auth.api_token_workspace_restricted", checkRequest(tokens.frozen!, { method: "POST" })],
      ["auth.api_token_quota_exceeded", checkRequest(tokens.spent!)],
      ["auth.api_token_unauthenticated", checkRequest(null)],
    ];
    for (const [, request] of denials) expect((await client.check(request)).status.code).not.toBe(0);

    const rows = await listUntil(["--since", "10m", "--limit", "1000"], (listed) => denials.every(([event]) => listed.some((row) => row.event === event)));
    for (const [event] of denials) {
      expect(rows.filter((row) => row.event === event)).toEqual([expect.objectContaining({ kind: "security", count: 1 })]);
    }
    expect(rows.find((row) => row.event === "auth.api_token_tenant_suspended")?.tokenId).toBe(tokenIds.suspended);
    expect(rows.find((row) => row.event === "auth.api_token_unauthenticated")?.tokenId).toBeNull();
    // The lifecycle trail is in the same list, older than the denials.
    const kinds = rows.map((row) => row.kind);
    expect(kinds).toContain("lifecycle");
    expect(kinds.indexOf("lifecycle")).toBeGreaterThan(kinds.lastIndexOf("security"));
    expect(rows.filter((row) => row.kind === "lifecycle").map((row) => row.event)).toContain("tenant.suspended");
  });
});
