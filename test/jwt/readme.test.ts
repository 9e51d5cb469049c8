/** The README's "Short-lived JWTs" commands answer as it says, against a server whose policy set has the section it shows. */
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createToken } from "../../src/service/tokens.js";
import { REPO_ROOT } from "../support/fixtures.js";
import { startTestServer, type TestServer } from "../support/server.js";
import { jwtPolicyDir } from "./support.js";

const readme = fs.readFileSync(path.join(REPO_ROOT, "README.md"), "utf8");
const section = readme.slice(readme.indexOf("## Short-lived JWTs"), readme.indexOf("\n## ", readme.indexOf("## Short-lived JWTs") + 1));
let t: TestServer;
let folder: ReturnType<typeof jwtPolicyDir>;

beforeAll(async () => {
  const shown = JSON.parse(`{${/```json\n(.*)\n```/.exec(section)![1]!}}`).tokenExchange;
  folder = jwtPolicyDir(shown);
  t = await startTestServer(folder.dir);
});
afterAll(async () => {
  await t?.stop();
  folder?.remove();
});

it("exchanges the token, the JWT is allowed, and the JWKS is served", async () => {
  const { token } = await createToken(t.server.store, t.server.policy(), { tenant: "acme", workspace: "main", name: "readme", role: "tenant_operator", environment: "test", type: "service", actor: "readme" }, Date.now());
  const exchangePath = /curl -s -X POST localhost:8181(\S+)/.exec(section)![1]!;
  const exchanged = await fetch(`${t.httpUrl}${exchangePath}`, { method: "POST", headers: { authorization: `Bearer ${token}` } });
  const json = (await exchanged.json()) as Record<string, unknown>;
  expect(json).toMatchObject({ expiresIn: 900, tokenType: "Bearer" });
  const payload = /-d '(.*)'$/m.exec(section)![1]!.replace(`'"$JWT"'`, json.accessToken as string);
  const answer = (await (await fetch(`${t.httpUrl}/portcullis.v1.AuthorizationService/Authorize`, { method: "POST", headers: { "content-type": "application/json" }, body: payload })).json()) as Record<string, unknown>;
  expect(answer).toMatchObject({ allowed: true, code: "ok" });
  const jwksPath = /curl -s localhost:8181(\/\.well-known\S+)/.exec(section)![1]!;
  expect((((await (await fetch(`${t.httpUrl}${jwksPath}`)).json()) as { keys: unknown[] }).keys).length).toBe(1);
});
