import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createToken } from "../../src/service/tokens.js";
import { REPO_ROOT } from "../support/fixtures.js";
import { startTestServer, type TestServer } from "../support/server.js";

const readme = fs.readFileSync(path.join(REPO_ROOT, "README.md"), "utf8");
const packageJson = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, "package.json"), "utf8"));

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await t.stop();
});

describe("README", () => {
  it("starts with the two commands, and they are scripts that exist", () => {
    const firstBlock = /```sh\n([\s\S]*?)```/.exec(readme)![1]!;
    expect(firstBlock).toMatch(/^npm ci && npm start\b/m);
    expect(firstBlock).toMatch(/^npm test\b/m);
    expect(packageJson.scripts.start).toContain("serve");
    expect(packageJson.scripts.test).toContain("vitest run");
  });

  it("first-decision curl gets the answer the README shows", async () => {
    const create = /npx portcullis tokens create (.*)\)/.exec(readme)![1]!;
    const flags = Object.fromEntries([...create.matchAll(/--([\w-]+) (\S+)/g)].map((m) => [m[1]!, m[2]!]));
    const { token } = createToken(
      t.server.store,
      t.server.policy(),
      { tenant: flags.tenant!, workspace: flags.workspace!, name: flags.name!, role: flags.role!, environment: flags.environment!, type: "service", actor: "readme" },
      Date.now(),
    );
    const url = /curl -s localhost:8181(\S+)/.exec(readme)![1]!;
    const payload = /-d '(.*)'$/m.exec(readme)![1]!.replace(`'"$TOKEN"'`, token);
    const response = await fetch(`${t.httpUrl}${url}`, { method: "POST", headers: { "content-type": "application/json" }, body: payload });
    const json = (await response.json()) as Record<string, unknown>;
    expect(json).toMatchObject({ allowed: true, httpStatus: 200, code: "ok", ruleId: "group:/api/payouts" });
    expect(json.identity).toMatchObject({ tenant: "acme", workspace: "main", environment: "test", role: "tenant_operator" });
  });

  it("read_only variant is denied as the README says", async () => {
    const { token } = createToken(
      t.server.store,
      t.server.policy(),
      { tenant: "acme", workspace: "main", name: "ro", role: "tenant_operator", keyLevel: "read_only", environment: "test", type: "service", actor: "readme" },
      Date.now(),
    );
    const payload = /-d '(.*)'$/m.exec(readme)![1]!.replace(`'"$TOKEN"'`, token);
    const json = (await (await fetch(`${t.httpUrl}/portcullis.v1.AuthorizationService/Authorize`, { method: "POST", headers: { "content-type": "application/json" }, body: payload })).json()) as Record<string, unknown>;
    expect(json).toMatchObject({ httpStatus: 403, code: "scope_denied", details: { required_scope: "payouts:write" } });
  });
});
