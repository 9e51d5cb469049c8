/**
 * The policy explorer in a real headless Chromium (Debian's `chromium`,
 * driven by playwright-core): the page loads without console errors, the
 * matrix shows the bundled roles as the policy set defines them, and a tried
 * request shows the same code as `portcullis policy explain`.
 * `UPDATE_SCREENSHOT=1` rewrites docs/policy-explorer.png.
 */
import fs from "node:fs";
import path from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../../src/cli/main.js";
import { captureCliOutput } from "../support/cli-output.js";
import { EXAMPLE_POLICY_DIR, REPO_ROOT } from "../support/fixtures.js";
import { startTestServer, type TestServer } from "../support/server.js";

const CHROMIUM = "/usr/bin/chromium";
const missing = !fs.existsSync(CHROMIUM);
if (missing) console.warn(`skipping the explorer browser test: ${CHROMIUM} is missing (install it with .ci/install-system-packages)`);

const io = captureCliOutput();
let t: TestServer;
let browser: Browser;
let page: Page;
const consoleErrors: string[] = [];

beforeAll(async () => {
  if (missing) return;
  t = await startTestServer(EXAMPLE_POLICY_DIR, { policyExplorer: true });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  page.on("console", (message) => {
    if (message.type() === "error") consoleErrors.push(message.text());
  });
  page.on("pageerror", (error) => consoleErrors.push(error.message));
  await page.goto(`${t.httpUrl}/policy`);
  await page.waitForSelector("body[data-ready=true]", { timeout: 10_000 });
}, 30_000);

afterAll(async () => {
  await browser?.close();
  await t?.stop();
});

describe.skipIf(missing)("the policy explorer page", () => {
  it("loads without console errors and names the policy set and revision", async () => {
    expect(consoleErrors).toEqual([]);
    expect(await page.textContent("#summary")).toBe(`policy set example-payments, revision ${t.server.policy().revision.slice(0, 12)} (read-only)`);
    expect(await page.locator("#routes tr").count()).toBe(t.server.policy().routeTable.length + 1);
  });

  it("shows every role and key level with exactly the scopes the policy set grants", async () => {
    const policy = t.server.policy();
    const rows = await page.$$eval("#matrix tr[data-role]", (trs) =>
      trs.map((tr) => ({
        role: tr.getAttribute("data-role")!,
        level: tr.getAttribute("data-key-level")!,
        allowed: [...tr.querySelectorAll("td.allowed")].map((td) => td.getAttribute("data-scope")!).sort(),
      })),
    );
    const expected = [...policy.roles].flatMap(([role, granted]) =>
      ["none", ...policy.keyLevels.keys()].map((level) => ({
        role,
        level,
        allowed: [...granted].filter((scope) => level === "none" || policy.keyLevels.get(level)!.has(scope)).sort(),
      })),
    );
    expect(rows).toEqual(expected);
    expect(rows.find((r) => r.role === "tenant_reviewer" && r.level === "none")?.allowed).toContain("audit:read");
    expect(rows.find((r) => r.role === "tenant_admin" && r.level === "read_write")?.allowed).not.toContain("api_tokens:write");
  });

  it("explains a tried request with the same code as the CLI", async () => {
    const token = { role: "tenant_operator", workspace: "treasury" };
    const at = "2026-03-03T10:00:00Z";
    await page.fill("input[name=path]", "/api/payouts");
    await page.fill("input[name=sourceIp]", "198.51.101.20");
    await page.fill("input[name=at]", at);
    await page.fill("textarea[name=token]", JSON.stringify(token));
    await page.click("button[type=submit]");
    const shown = await page.waitForSelector("#decision-code");
    const pageCode = await shown.getAttribute("data-code");

    const exit = await main(["node", "portcullis", "policy", "explain", EXAMPLE_POLICY_DIR, "--token", JSON.stringify(token), "--path", "/api/payouts", "--source-ip", "198.51.101.20", "--at", at, "--format", "json"]);
    expect(exit).toBe(0);
    const cliCode = JSON.parse(io.out).decision.code;
    expect([pageCode, cliCode]).toEqual(["ip_allowlist_blocked", "ip_allowlist_blocked"]);
    expect(await page.textContent("#answer")).toContain("nearest miss: `198.51.100.0/24`");
    expect(consoleErrors).toEqual([]);
    if (process.env.UPDATE_SCREENSHOT === "1") await page.screenshot({ path: path.join(REPO_ROOT, "docs", "policy-explorer.png"), fullPage: false });
  });

  it("is read-only and off unless enabled", async () => {
    const post = await fetch(`${t.httpUrl}/policy/model.json`, { method: "POST" });
    expect(post.status).toBe(405);
    const off = await startTestServer(EXAMPLE_POLICY_DIR);
    try {
      expect((await fetch(`${off.httpUrl}/policy`)).status).toBe(404);
    } finally {
      await off.stop();
    }
  });
});
