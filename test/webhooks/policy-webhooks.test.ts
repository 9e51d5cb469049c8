/**
 * `policySet.webhooks` as a policy author meets it: a good endpoint loads
 * with its secret read from the environment or a file; a bad URL, an unknown
 * event or a missing secret refuses the set with the place and a hint; a
 * running server refuses such a reload and keeps its endpoints.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { loadPolicySet } from "../../src/policy/load.js";
import { EXAMPLE_POLICY_DIR } from "../support/fixtures.js";
import { startTestServer } from "../support/server.js";

const ENV_NAME = "PORTCULLIS_TEST_POLICY_WEBHOOK_SECRET";
const folders: string[] = [];

afterEach(() => {
  delete process.env[ENV_NAME];
  for (const dir of folders.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

/** A copy of the example set with `webhooks` in its policySet. */
function policyWith(webhooks: unknown): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-webhook-policy-"));
  folders.push(dir);
  fs.cpSync(EXAMPLE_POLICY_DIR, dir, { recursive: true });
  writeWebhooks(dir, webhooks);
  return dir;
}

function writeWebhooks(dir: string, webhooks: unknown): void {
  const file = path.join(dir, "policy-set.json");
  const settings = JSON.parse(fs.readFileSync(file, "utf8"));
  settings.policySet.webhooks = webhooks;
  fs.writeFileSync(file, JSON.stringify(settings, null, 2));
}

describe("policySet.webhooks", () => {
  it("loads endpoints with secrets from env: and file:, events expanded", () => {
    process.env[ENV_NAME] = "s".repeat(32);
    const dir = policyWith([
      { id: "siem", url: "https://siem.example.com/hooks", events: ["auth.api_token_*"], secret: `env:${ENV_NAME}` },
      { id: "audit", url: "http://127.0.0.1:9/x", events: ["api_token.revoked", "tenant.*"], secret: "file:webhook.secret" },
    ]);
    fs.writeFileSync(path.join(dir, "webhook.secret"), "f".repeat(40) + "\n");
    const loaded = loadPolicySet(dir);
    expect(loaded.ok).toBe(true);
    if (!loaded.ok) return;
    const [siem, audit] = loaded.policy.webhooks;
    expect(siem!.secret.toString()).toBe("s".repeat(32));
    expect(siem!.events.has("auth.api_token_quota_exceeded")).toBe(true);
    expect(siem!.events.has("api_token.revoked")).toBe(false);
    expect(audit!.secret.toString()).toBe("f".repeat(40));
    expect([...audit!.events].sort()).toEqual(["api_token.revoked", "tenant.resumed", "tenant.suspended"]);
  });

  it("the example policy set names no endpoint", () => {
    const loaded = loadPolicySet(EXAMPLE_POLICY_DIR);
    expect(loaded.ok && loaded.policy.webhooks.length).toBe(0);
  });

  it.each([
    { name: "a URL that is not absolute", endpoint: { url: "siem.example.com/hooks" }, pointer: "/policySet/webhooks/0/url", message: "webhook url `siem.example.com/hooks` is not an absolute URL" },
    { name: "a URL of another scheme", endpoint: { url: "ftp://siem.example.com/" }, pointer: "/policySet/webhooks/0/url", message: "webhook url `ftp://siem.example.com/` must be http or https, not `ftp`" },
    { name: "a URL with a password", endpoint: { url: "https://u:p@siem.example.com/" }, pointer: "/policySet/webhooks/0/url", message: "webhook url `https://u:p@siem.example.com/` must not hold a user name or password" },
    { name: "an unknown event, with a suggestion", endpoint: { events: ["api_token.revokd"] }, pointer: "/policySet/webhooks/0/events/0", message: "unknown event `api_token.revokd`", hint: "did you mean `api_token.revoked`?" },
    { name: "a pattern matching nothing", endpoint: { events: ["billing.*"] }, pointer: "/policySet/webhooks/0/events/0", message: "event pattern `billing.*` matches no event" },
    { name: "an unset secret variable", endpoint: { secret: "env:PORTCULLIS_TEST_UNSET_SECRET" }, pointer: "/policySet/webhooks/0/secret", message: "webhook endpoint `siem`: secret variable `PORTCULLIS_TEST_UNSET_SECRET` is not set" },
    { name: "a missing secret file", endpoint: { secret: "file:nowhere.secret" }, pointer: "/policySet/webhooks/0/secret", message: "webhook endpoint `siem`: secret file `nowhere.secret`: cannot read file: ENOENT" },
    { name: "a short secret", endpoint: { secret: `env:${ENV_NAME}` }, short: true, pointer: "/policySet/webhooks/0/secret", message: "webhook endpoint `siem`: secret is 5 bytes; at least 16 are needed" },
  ])("refuses $name with its place", ({ endpoint, pointer, message, hint, short }) => {
    process.env[ENV_NAME] = short === true ? "short" : "s".repeat(32);
    const dir = policyWith([{ id: "siem", url: "https://siem.example.com/hooks", events: ["*"], secret: `env:${ENV_NAME}`, ...endpoint }]);
    const loaded = loadPolicySet(dir);
    expect(loaded.ok).toBe(false);
    if (loaded.ok) return;
    expect(loaded.errors).toHaveLength(1);
    expect(loaded.errors[0]).toMatchObject({ pointer, message, ...(hint === undefined ? {} : { hint }) });
    expect(loaded.errors[0]!.line).toBeGreaterThan(0);
  });

  it("without reading secrets (the tokens commands), a missing secret is no error, a bad URL still is", () => {
    const missing = policyWith([{ id: "siem", url: "https://a.example.com/", events: ["*"], secret: "env:PORTCULLIS_TEST_UNSET_SECRET" }]);
    expect(loadPolicySet(missing).ok).toBe(false);
    const loaded = loadPolicySet(missing, { readWebhookSecrets: false });
    expect(loaded.ok && loaded.policy.webhooks[0]!.secret.length).toBe(0);
    expect(loadPolicySet(policyWith([{ id: "siem", url: "nowhere", events: ["*"], secret: "env:PORTCULLIS_TEST_UNSET_SECRET" }]), { readWebhookSecrets: false }).ok).toBe(false);
  });

  it("refuses a secret written in place of a reference, and two endpoints with one id", () => {
    process.env[ENV_NAME] = "s".repeat(32);
    const inline = loadPolicySet(policyWith([{ id: "siem", url: "https://a.example.com/", events: ["*"], secret: "hunter2hunter2hunter2" }]));
    expect(inline.ok).toBe(false);
    const twice = loadPolicySet(
      policyWith([
        { id: "siem", url: "https://a.example.com/", events: ["*"], secret: `env:${ENV_NAME}` },
        { id: "siem", url: "https://b.example.com/", events: ["*"], secret: `env:${ENV_NAME}` },
      ]),
    );
    expect(!twice.ok && twice.errors.map((e) => e.message)).toEqual(["webhook endpoint id `siem` is used twice"]);
  });

  it("a running server refuses a reload whose secret is missing and keeps its endpoints", async () => {
    process.env[ENV_NAME] = "s".repeat(32);
    const dir = policyWith([{ id: "siem", url: "http://127.0.0.1:9/hooks", events: ["*"], secret: `env:${ENV_NAME}` }]);
    const t = await startTestServer(dir, { watchPolicies: false });
    try {
      writeWebhooks(dir, [{ id: "siem", url: "http://127.0.0.1:9/hooks", events: ["*"], secret: "env:PORTCULLIS_TEST_UNSET_SECRET" }]);
      const reload = t.server.reloadPolicy();
      expect(reload.ok).toBe(false);
      expect(t.server.policy().webhooks.map((e) => e.id)).toEqual(["siem"]);
      expect(t.server.policy().webhooks[0]!.secret.toString()).toBe("s".repeat(32));
    } finally {
      await t.stop();
    }
  });
});
