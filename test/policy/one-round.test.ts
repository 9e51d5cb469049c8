import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadPolicySet } from "../../src/policy/index.js";

const MINIMAL = path.join(import.meta.dirname, "../fixtures/policies/minimal");
const made: string[] = [];

function policyFolder(files: Record<string, string>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-one-round-"));
  made.push(dir);
  for (const name of fs.readdirSync(MINIMAL)) fs.copyFileSync(path.join(MINIMAL, name), path.join(dir, name));
  for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), text);
  return dir;
}

afterAll(() => {
  for (const dir of made) fs.rmSync(dir, { recursive: true, force: true });
});

const messagesOf = (dir: string) => {
  const result = loadPolicySet(dir);
  return result.ok ? [] : result.errors.map((e) => `${path.basename(e.file)} ${e.pointer}: ${e.message}${e.hint === undefined ? "" : ` (${e.hint})`}`);
};

describe("loadPolicySet reports every error it can find in one round", () => {
  it("schema errors together with duplicates, unknown scopes, unknown zones and duplicate ids", () => {
    const dir = policyFolder({
      "extra.json": JSON.stringify({
        operations: [
          { method: "GET", path: "/api/payouts/{id}", scope: "payouts:read" },
          { method: "GET", path: "/api/payouts/{payoutId}", scope: "payouts:read" },
          { method: "get", path: "/api/payouts/x", scope: "payouts:read" },
          { method: "PUT", path: "/api/payouts/{id}", scope: "payouts:wirte" },
        ],
        roles: [{ name: "Ops", scopes: ["*"] }, { name: "viewer", scopes: ["*:read"] }],
        controls: [
          { id: "office-hours", selector: { role: "viewer" }, conditionalAccess: { timeZone: "Europe/Berln" } },
          { id: "office-hours", selector: { role: "admin" }, conditionalAccess: { timeZone: "America/New_Yrok" } },
        ],
      }),
    });
    expect(messagesOf(dir)).toEqual([
      "extra.json /operations/1/path: duplicate operation `GET /api/payouts/{payoutId}`: same method and path as `GET /api/payouts/{id}` at `" + path.join(dir, "extra.json") + "` /operations/0",
      "extra.json /operations/2/method: invalid method `get`: expected an upper-case HTTP method such as `GET`",
      "extra.json /operations/3/scope: unknown scope `payouts:wirte` (did you mean `payouts:write`?)",
      "extra.json /roles/0/name: invalid name `Ops`: use a lower-case letter, then lower-case letters, digits and `_`",
      "extra.json /controls/0/conditionalAccess/timeZone: unknown time zone `Europe/Berln` (did you mean `Europe/Berlin`?)",
      "extra.json /controls/1/id: duplicate rule id `office-hours` (first used at `" + path.join(dir, "extra.json") + "` /controls/0/id)",
      "extra.json /controls/1/conditionalAccess/timeZone: unknown time zone `America/New_Yrok` (did you mean `America/New_York`?)",
    ]);
  });

  it("does not echo a reference to an item that was dropped for its own schema error", () => {
    // the role `Ops` is invalid, so a control selecting `ops` must not add an `unknown role` echo
    const dir = policyFolder({
      "extra.json": JSON.stringify({
        roles: [{ name: "ops", scopes: ["*"], colour: "red" }],
        controls: [{ id: "ops-ip", selector: { role: "ops" }, ipAllowlist: ["10.0.0.0/8"] }],
      }),
    });
    expect(messagesOf(dir)).toEqual(["extra.json /roles/0/colour: unknown property `colour`"]);
  });

  it("reports errors in a second file even when the first one does not parse", () => {
    const dir = policyFolder({
      "a.json": "{ \"roles\": [",
      "b.json": JSON.stringify({ operations: [{ method: "GET", path: "/api/payouts", scope: "payouts:reed" }] }),
    });
    const messages = messagesOf(dir);
    expect(messages.some((m) => m.startsWith("a.json : invalid JSON"))).toBe(true);
    expect(messages).toContain("b.json /operations/0/scope: unknown scope `payouts:reed` (did you mean `payouts:read`?)");
  });
});
