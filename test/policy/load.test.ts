import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { formatPolicyErrors, loadPolicySet, PolicyLoadError, type PolicyError } from "../../src/policy/index.js";

const MINIMAL = path.join(import.meta.dirname, "../fixtures/policies/minimal");
const made: string[] = [];

/** Copies the minimal valid set into a temp folder, then writes (or, for `null`, deletes) `files`. */
function policyFolder(files: Record<string, string | null>, base: string | null = MINIMAL): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-policy-"));
  made.push(dir);
  if (base !== null) {
    for (const name of fs.readdirSync(base)) fs.copyFileSync(path.join(base, name), path.join(dir, name));
  }
  for (const [name, text] of Object.entries(files)) {
    if (text === null) fs.rmSync(path.join(dir, name));
    else fs.writeFileSync(path.join(dir, name), text);
  }
  return dir;
}

afterAll(() => {
  for (const dir of made) fs.rmSync(dir, { recursive: true, force: true });
});

/** Expected error with `file` relative to the folder and `<dir>` standing for the folder in messages. */
type Expected = Omit<PolicyError, "file"> & { file: string };

interface Case {
  name: string;
  files: Record<string, string | null>;
  expected: Expected[];
}

const lines = (...l: string[]) => `${l.join("\n")}\n`;

const cases: Case[] = [
  {
    name: "malformed JSON: a trailing comma is reported at its line and column",
    files: { "extra.json": lines("{", '  "roles": [', '    { "name": "ops", "scopes": ["*"], }', "  ]", "}") },
    expected: [
      { file: "extra.json", pointer: "", line: 3, column: 39, message: "invalid JSON: trailing commas are not allowed" },
    ],
  },
  {
    name: "malformed JSON: comments are not allowed",
    files: { "extra.json": lines("{", "  // operators", '  "roles": []', "}") },
    expected: [{ file: "extra.json", pointer: "", line: 2, column: 3, message: "invalid JSON: comments are not allowed" }],
  },
  {
    name: "malformed JSON: a repeated property name",
    files: { "extra.json": lines("{", '  "roles": [],', '  "roles": []', "}") },
    expected: [{ file: "extra.json", pointer: "/roles", line: 3, column: 3, message: "duplicate property `roles`" }],
  },
  {
    name: "schema: every violation in a file, each at its own node, sorted by column",
    files: { "extra.json": lines("{", '  "roles": [', '    { "name": "Ops", "scope": ["*"] }', "  ]", "}") },
    expected: [
      { file: "extra.json", pointer: "/roles/0", line: 3, column: 5, message: "missing required property `scopes`" },
      {
        file: "extra.json",
        pointer: "/roles/0/name",
        line: 3,
        column: 7,
        message: "invalid name `Ops`: use a lower-case letter, then lower-case letters, digits and `_`",
      },
      { file: "extra.json", pointer: "/roles/0/scope", line: 3, column: 22, message: "unknown property `scope`", hint: "did you mean `scopes`?" },
    ],
  },
  {
    name: "schema: a wrong type and an unknown dialect with a hint",
    files: {
      "settings.json": lines(
        "{",
        '  "policySet": {',
        '    "name": "minimal",',
        '    "errorDialect": "envelop",',
        '    "defaultEnvironment": "production",',
        '    "stripCredential": "yes"',
        "  },",
        '  "environments": [{ "name": "production", "tokenPrefix": "sk_live_" }]',
        "}",
      ),
    },
    expected: [
      {
        file: "settings.json",
        pointer: "/policySet/errorDialect",
        line: 4,
        column: 5,
        message: "unknown value `envelop`: expected one of `canonical`, `envelope`, `error_object`",
        hint: "did you mean `envelope`?",
      },
      { file: "settings.json", pointer: "/policySet/stripCredential", line: 6, column: 5, message: "expected a boolean, found a string" },
    ],
  },
  {
    name: "schema: path problems get a message that names the problem",
    files: {
      "extra.json": lines(
        "{",
        '  "endpointGroups": [',
        '    { "basePath": "/api/{tenant}", "readScope": "payouts:read", "writeScope": "payouts:write" },',
        '    { "basePath": "/api/refunds/", "readScope": "payouts:read", "writeScope": "payouts:write" }',
        "  ],",
        '  "operations": [',
        '    { "method": "GET", "path": "/api/caf%C3%A9", "scope": "payouts:read" },',
        '    { "method": "GET", "path": "/api/../payouts", "scope": "payouts:read" },',
        '    { "method": "GET", "path": "/api//payouts", "scope": "payouts:read" },',
        '    { "method": "GET", "path": "/api/{id}.json", "scope": "payouts:read" },',
        '    { "method": "get", "path": "api/payouts", "scope": "payouts:read" }',
        "  ]",
        "}",
      ),
    },
    expected: [
      {
        file: "extra.json",
        pointer: "/endpointGroups/0/basePath",
        line: 3,
        column: 7,
        message: "base path `/api/{tenant}` has a parameter `{tenant}`; endpoint group base paths are literal",
      },
      {
        file: "extra.json",
        pointer: "/endpointGroups/1/basePath",
        line: 4,
        column: 7,
        message: "base path `/api/refunds/` ends with `/`; only the root path `/` may",
      },
      {
        file: "extra.json",
        pointer: "/operations/0/path",
        line: 7,
        column: 24,
        message: "path `/api/caf%C3%A9` has a `%` escape; write paths with plain characters, `%` escapes are not allowed",
      },
      {
        file: "extra.json",
        pointer: "/operations/1/path",
        line: 8,
        column: 24,
        message: "path `/api/../payouts` has a `..` segment; dot segments are not allowed",
      },
      { file: "extra.json", pointer: "/operations/2/path", line: 9, column: 24, message: "path `/api//payouts` has an empty segment" },
      {
        file: "extra.json",
        pointer: "/operations/3/path",
        line: 10,
        column: 24,
        message:
          "segment `{id}.json` of path `/api/{id}.json` is not a parameter: a parameter is `{name}` with letters, digits and `_`, filling the whole segment",
      },
      {
        file: "extra.json",
        pointer: "/operations/4/method",
        line: 11,
        column: 7,
        message: "invalid method `get`: expected an upper-case HTTP method such as `GET`",
      },
      { file: "extra.json", pointer: "/operations/4/path", line: 11, column: 24, message: "path `api/payouts` must start with `/`" },
    ],
  },
  {
    name: "cross-check: unknown scope in a role, with a did-you-mean hint",
    files: {
      "extra.json": lines(
        "{",
        '  "roles": [',
        "    {",
        '      "name": "payout_writer",',
        '      "scopes": ["payouts:read", "payouts:wirte"]',
        "    }",
        "  ]",
        "}",
      ),
    },
    expected: [
      { file: "extra.json", pointer: "/roles/0/scopes/1", line: 5, column: 34, message: "unknown scope `payouts:wirte`", hint: "did you mean `payouts:write`?" },
    ],
  },
  {
    name: "cross-check: patterns that match no scope, negations keep their `!` in the hint",
    files: {
      "extra.json": lines(
        "{",
        '  "keyLevels": [',
        '    { "name": "odd", "scopes": ["reports:*", "*:delete", "!payout:*", "!api_tokens:raed"] }',
        "  ]",
        "}",
      ),
    },
    expected: [
      { file: "extra.json", pointer: "/keyLevels/0/scopes/0", line: 3, column: 33, message: "scope pattern `reports:*` matches no scope: unknown module `reports`" },
      { file: "extra.json", pointer: "/keyLevels/0/scopes/1", line: 3, column: 46, message: "scope pattern `*:delete` matches no scope: no module has action `delete`" },
      {
        file: "extra.json",
        pointer: "/keyLevels/0/scopes/2",
        line: 3,
        column: 58,
        message: "scope pattern `!payout:*` matches no scope: unknown module `payout`",
        hint: "did you mean `!payouts:*`?",
      },
      { file: "extra.json", pointer: "/keyLevels/0/scopes/3", line: 3, column: 71, message: "unknown scope `api_tokens:raed`", hint: "did you mean `!api_tokens:read`?" },
    ],
  },
  {
    name: "cross-check: unknown scopes in groups and operations",
    files: {
      "extra.json": lines(
        "{",
        '  "endpointGroups": [',
        '    { "basePath": "/api/refunds", "readScope": "refunds:read", "writeScope": "payouts:writes" }',
        "  ],",
        '  "operations": [{ "method": "GET", "path": "/api/tokens/usage", "scope": "api_token:read" }]',
        "}",
      ),
    },
    expected: [
      { file: "extra.json", pointer: "/endpointGroups/0/readScope", line: 3, column: 35, message: "unknown scope `refunds:read`" },
      { file: "extra.json", pointer: "/endpointGroups/0/writeScope", line: 3, column: 64, message: "unknown scope `payouts:writes`", hint: "did you mean `payouts:write`?" },
      { file: "extra.json", pointer: "/operations/0/scope", line: 5, column: 66, message: "unknown scope `api_token:read`", hint: "did you mean `api_tokens:read`?" },
    ],
  },
  {
    name: "cross-check: a parameter named twice in one template",
    files: {
      "extra.json": lines(
        "{",
        '  "operations": [{ "method": "GET", "path": "/api/tokens/{id}/events/{id}", "scope": "api_tokens:read" }]',
        "}",
      ),
    },
    expected: [
      { file: "extra.json", pointer: "/operations/0/path", line: 2, column: 37, message: "path `/api/tokens/{id}/events/{id}` names parameter `{id}` twice" },
    ],
  },
  {
    name: "cross-check: a catalog scope outside its module, and a duplicate scope and module",
    files: {
      "extra.json": lines(
        "{",
        '  "scopes": [',
        '    { "module": "refunds", "scopes": [{ "scope": "refund:read" }, { "scope": "payouts:read" }] },',
        '    { "module": "payouts", "scopes": [{ "scope": "payouts:approve" }] }',
        "  ]",
        "}",
      ),
    },
    expected: [
      {
        file: "extra.json",
        pointer: "/scopes/0/scopes/0/scope",
        line: 3,
        column: 41,
        message: "scope `refund:read` does not belong to module `refunds`: it must start with `refunds:`",
      },
      {
        file: "extra.json",
        pointer: "/scopes/0/scopes/1/scope",
        line: 3,
        column: 69,
        message: "duplicate scope `payouts:read` (first defined at `<dir>/catalog.json` /scopes/0/scopes/0/scope)",
      },
      {
        file: "extra.json",
        pointer: "/scopes/0/scopes/1/scope",
        line: 3,
        column: 69,
        message: "scope `payouts:read` does not belong to module `refunds`: it must start with `refunds:`",
      },
      { file: "extra.json", pointer: "/scopes/1/module", line: 4, column: 7, message: "duplicate module `payouts` (first defined at `<dir>/catalog.json` /scopes/0/module)" },
    ],
  },
  {
    name: "cross-check: ambiguous operations name both, at the second",
    files: {
      "extra.json": lines(
        "{",
        '  "operations": [',
        '    { "method": "GET", "path": "/api/tokens/{tokenId}/usage", "scope": "api_tokens:read" },',
        '    { "method": "GET", "path": "/api/tokens/dashboard/{panel}", "scope": "api_tokens:read" }',
        "  ]",
        "}",
      ),
    },
    expected: [
      {
        file: "extra.json",
        pointer: "/operations/1/path",
        line: 4,
        column: 24,
        message:
          "operation `GET /api/tokens/dashboard/{panel}` is ambiguous with `GET /api/tokens/{tokenId}/usage` at `<dir>/extra.json` /operations/0: both match `/api/tokens/dashboard/usage` and neither is more specific",
        hint: "give one of them a literal segment at every position where the other has one",
      },
    ],
  },
  {
    name: "cross-check: a GET answering HEAD is ambiguous with a HEAD operation",
    files: {
      "extra.json": lines(
        "{",
        '  "operations": [',
        '    { "method": "HEAD", "path": "/api/tokens/{tokenId}/usage", "scope": "api_tokens:read" },',
        '    { "method": "GET", "path": "/api/tokens/dashboard/{panel}", "scope": "api_tokens:read" }',
        "  ]",
        "}",
      ),
    },
    expected: [
      {
        file: "extra.json",
        pointer: "/operations/1/path",
        line: 4,
        column: 24,
        message:
          "operation `GET /api/tokens/dashboard/{panel}` is ambiguous with `HEAD /api/tokens/{tokenId}/usage` at `<dir>/extra.json` /operations/0: both match `/api/tokens/dashboard/usage` and neither is more specific",
        hint: "give one of them a literal segment at every position where the other has one",
      },
    ],
  },
  {
    name: "cross-check: the same method and template twice, even with other parameter names",
    files: {
      "extra.json": lines(
        "{",
        '  "operations": [{ "method": "POST", "path": "/api/tokens/{id}/rotate", "scope": "api_tokens:write" }]',
        "}",
      ),
    },
    expected: [
      {
        file: "extra.json",
        pointer: "/operations/0/path",
        line: 2,
        column: 38,
        message:
          "duplicate operation `POST /api/tokens/{id}/rotate`: same method and path as `POST /api/tokens/{tokenId}/rotate` at `<dir>/catalog.json` /operations/0",
      },
    ],
  },
  {
    name: "cross-check: duplicate role, key level, environment, token prefix, host, base path and rule id",
    files: {
      "zz.json": lines(
        "{",
        '  "environments": [{ "name": "test", "tokenPrefix": "sk_live_", "hosts": ["localhost"] }],',
        '  "endpointGroups": [',
        '    { "basePath": "/api/payouts", "readScope": "payouts:read", "writeScope": "payouts:write" },',
        '    { "id": "group:/api/tokens", "basePath": "/api/keys", "readScope": "api_tokens:read", "writeScope": "api_tokens:write" }',
        "  ],",
        '  "roles": [{ "name": "admin", "scopes": ["*"] }],',
        '  "keyLevels": [{ "name": "read_only", "scopes": ["*:read"] }]',
        "}",
      ),
    },
    expected: [
      { file: "zz.json", pointer: "/environments/0/name", line: 2, column: 22, message: "duplicate environment `test` (first defined at `<dir>/settings.json` /environments/1/name)" },
      {
        file: "zz.json",
        pointer: "/environments/0/tokenPrefix",
        line: 2,
        column: 38,
        message: "duplicate token prefix `sk_live_` (first used at `<dir>/settings.json` /environments/0/tokenPrefix)",
      },
      { file: "zz.json", pointer: "/environments/0/hosts/0", line: 2, column: 75, message: "duplicate host `localhost` (first used at `<dir>/settings.json` /environments/1/hosts/0)" },
      {
        file: "zz.json",
        pointer: "/endpointGroups/0/basePath",
        line: 4,
        column: 7,
        message: "duplicate endpoint group base path `/api/payouts` (first defined at `<dir>/catalog.json` /endpointGroups/0/basePath)",
      },
      {
        file: "zz.json",
        pointer: "/endpointGroups/1/id",
        line: 5,
        column: 7,
        message: "duplicate rule id `group:/api/tokens` (first used at `<dir>/catalog.json` /endpointGroups/1/basePath)",
      },
      { file: "zz.json", pointer: "/roles/0/name", line: 7, column: 15, message: "duplicate role `admin` (first defined at `<dir>/catalog.json` /roles/0/name)" },
      { file: "zz.json", pointer: "/keyLevels/0/name", line: 8, column: 19, message: "duplicate key level `read_only` (first defined at `<dir>/catalog.json` /keyLevels/0/name)" },
    ],
  },
  {
    name: "cross-check: a default environment that names no environment",
    files: {
      "settings.json": lines(
        "{",
        '  "policySet": {',
        '    "name": "minimal",',
        '    "defaultEnvironment": "productoin"',
        "  },",
        '  "environments": [{ "name": "production", "tokenPrefix": "sk_live_" }]',
        "}",
      ),
    },
    expected: [
      {
        file: "settings.json",
        pointer: "/policySet/defaultEnvironment",
        line: 4,
        column: 5,
        message: "unknown default environment `productoin`",
        hint: "did you mean `production`?",
      },
    ],
  },
  {
    name: "merge: `policySet` in two files",
    files: { "zz.json": lines("{", '  "policySet": { "name": "again", "defaultEnvironment": "test" }', "}") },
    expected: [
      {
        file: "zz.json",
        pointer: "/policySet",
        line: 2,
        column: 3,
        message: "section `policySet` is already defined in `<dir>/settings.json`",
        hint: "keep one `policySet` section per folder",
      },
    ],
  },
  {
    name: "merge: missing required sections are reported against the folder",
    files: { "catalog.json": lines("{", '  "roles": [{ "name": "admin", "scopes": ["*"] }]', "}") },
    expected: [
      { file: "", pointer: "", line: 0, column: 0, message: "policy set needs at least one entry in `scopes`" },
      { file: "", pointer: "", line: 0, column: 0, message: "policy set needs at least one entry in `endpointGroups`" },
    ],
  },
  {
    name: "all files: errors of two bad files are both reported, sorted by file then line",
    files: {
      "zz.json": lines("{", '  "roles": [{ "name": "x" }],', '  "colour": "red"', "}"),
      "aa.json": lines("{", '  "roles": [', "}"),
    },
    expected: [
      { file: "aa.json", pointer: "", line: 3, column: 1, message: "invalid JSON: expected a value" },
      { file: "aa.json", pointer: "", line: 4, column: 1, message: "invalid JSON: expected `]`" },
      { file: "zz.json", pointer: "/roles/0", line: 2, column: 13, message: "missing required property `scopes`" },
      { file: "zz.json", pointer: "/colour", line: 3, column: 3, message: "unknown property `colour`" },
    ],
  },
];

describe("loadPolicySet accepts", () => {
  it.each([
    {
      name: "GET and HEAD on one template, and one template under several methods",
      operations: [
        { method: "GET", path: "/api/tokens/{id}", scope: "api_tokens:read" },
        { method: "HEAD", path: "/api/tokens/{tokenId}", scope: "api_tokens:read" },
        { method: "DELETE", path: "/api/tokens/{id}", scope: "api_tokens:write" },
      ],
    },
    {
      name: "a pair where one is more specific at every position where they differ",
      operations: [
        { method: "GET", path: "/api/tokens/{id}/{view}", scope: "api_tokens:read" },
        { method: "GET", path: "/api/tokens/{id}/usage", scope: "api_tokens:read" },
        { method: "GET", path: "/api/tokens/dashboard/usage", scope: "api_tokens:read" },
      ],
    },
    {
      name: "crossing templates under different methods or segment counts",
      operations: [
        { method: "GET", path: "/api/tokens/{id}/usage", scope: "api_tokens:read" },
        { method: "PUT", path: "/api/tokens/dashboard/{panel}", scope: "api_tokens:write" },
        { method: "GET", path: "/api/tokens/dashboard/{panel}/x", scope: "api_tokens:read" },
      ],
    },
  ])("$name", ({ operations }) => {
    const dir = policyFolder({ "extra.json": JSON.stringify({ operations }) });
    const result = loadPolicySet(dir);
    expect(result.ok ? [] : result.errors).toEqual([]);
  });

  it("token prefixes where one extends another, tried longest first", () => {
    const environments = [{ name: "production_eu", tokenPrefix: "sk_live_eu_" }];
    const result = loadPolicySet(policyFolder({ "extra.json": JSON.stringify({ environments }) }));
    expect(result.ok && result.policy.tokenPrefixes).toEqual(["sk_live_eu_", "sk_live_", "sk_test_"]);
  });

  it("a byte order mark, not counted as a column", () => {
    const dir = policyFolder({ "extra.json": `\uFEFF{ "roles": [{ "name": "ops", "scopes": ["nope:read"] }] }` });
    const result = loadPolicySet(dir);
    expect(result.ok ? [] : result.errors.map((e) => [e.line, e.column, e.message])).toEqual([[1, 41, "unknown scope `nope:read`"]]);
  });
});

describe("loadPolicySet errors", () => {
  it.each(cases)("$name", ({ files, expected }) => {
    const dir = policyFolder(files);
    const result = loadPolicySet(dir);
    expect(result.ok).toBe(false);
    const want = expected.map((e) => ({
      ...e,
      file: e.file === "" ? dir : path.join(dir, e.file),
      message: e.message.replaceAll("<dir>", dir),
    }));
    expect(result.ok ? [] : result.errors).toEqual(want);
  });

  it.each([
    {
      name: "a missing folder",
      dir: () => path.join(os.tmpdir(), "portcullis-no-such-folder"),
      message: (dir: string) => `policy folder \`${dir}\` does not exist`,
    },
    {
      name: "a folder with no policy files (subfolders and other files are ignored)",
      dir: () => {
        const dir = policyFolder({ "README.md": "# policies\n" }, null);
        fs.mkdirSync(path.join(dir, "nested.json"));
        return dir;
      },
      message: (dir: string) => `policy folder \`${dir}\` has no \`*.json\` files`,
    },
    {
      name: "a file where the folder should be",
      dir: () => path.join(policyFolder({}), "settings.json"),
      message: (dir: string) => `\`${dir}\` is not a folder`,
    },
  ])("refuses $name with one folder-level error", ({ dir, message }) => {
    const d = dir();
    expect(loadPolicySet(d)).toEqual({ ok: false, errors: [{ file: d, pointer: "", line: 0, column: 0, message: message(d) }] });
  });

  it("formats errors one per line as `file:line:column pointer: message (hint)`", () => {
    const errors: PolicyError[] = [
      { file: "policies/roles.json", pointer: "/roles/2/scopes/0", line: 12, column: 5, message: "unknown scope `payouts:wirte`", hint: "did you mean `payouts:write`?" },
      { file: "policies/a.json", pointer: "", line: 3, column: 1, message: "invalid JSON: expected a value" },
      { file: "policies", pointer: "", line: 0, column: 0, message: "policy set needs a `policySet` section" },
    ];
    expect(formatPolicyErrors(errors)).toBe(
      [
        "policies/roles.json:12:5 /roles/2/scopes/0: unknown scope `payouts:wirte` (did you mean `payouts:write`?)",
        "policies/a.json:3:1: invalid JSON: expected a value",
        "policies: policy set needs a `policySet` section",
      ].join("\n"),
    );
    const thrown = new PolicyLoadError(errors);
    expect(thrown.message).toBe(formatPolicyErrors(errors));
    expect(thrown.errors).toBe(errors);
  });
});
