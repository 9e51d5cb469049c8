import { describe, expect, it } from "vitest";
import { buildRouteMatcher, expandScopePatterns } from "../../src/policy/index.js";
import type { EndpointGroupSpec, OperationSpec } from "../../src/policy/index.js";

const groups: EndpointGroupSpec[] = [
  { basePath: "/", readScope: "root:read", writeScope: "root:write" },
  { basePath: "/api", readScope: "api:read", writeScope: "api:write" },
  { basePath: "/api/payouts", readScope: "payouts:read", writeScope: "payouts:write" },
  { id: "batches", basePath: "/api/payouts/batches", readScope: "batches:read", writeScope: "batches:write" },
];

const operations: OperationSpec[] = [
  { method: "GET", path: "/api/payouts/{payoutId}", scope: "payouts:read_one" },
  { method: "GET", path: "/api/payouts/summary", scope: "reports:read" },
  { id: "approve-payout", method: "POST", path: "/api/payouts/{payoutId}/approve", scope: "approvals:write" },
  { method: "GET", path: "/api/a/b/c", scope: "abc:read" },
  { method: "GET", path: "/api/a/{x}/d", scope: "axd:read" },
  { method: "HEAD", path: "/api/files/{fileId}", scope: "files:head" },
  { method: "GET", path: "/api/files/{fileId}", scope: "files:read" },
];

const routes = buildRouteMatcher(operations, groups);

describe("route matching", () => {
  it.each([
    { name: "a group covers its own base path", method: "GET", path: "/api/payouts", write: false, scope: "payouts:read", ruleId: "group:/api/payouts" },
    { name: "a group covers deeper paths", method: "POST", path: "/api/payouts/7/items/2", write: true, scope: "payouts:write", ruleId: "group:/api/payouts" },
    { name: "a group covers whole segments only", method: "GET", path: "/api/payoutsX", write: false, scope: "api:read", ruleId: "group:/api" },
    { name: "the longest group wins and keeps its id", method: "DELETE", path: "/api/payouts/batches/9", write: true, scope: "batches:write", ruleId: "batches" },
    { name: "the root group covers everything else", method: "GET", path: "/healthz", write: false, scope: "root:read", ruleId: "group:/" },
    { name: "an operation beats its group", method: "POST", path: "/api/payouts/7/approve", write: true, scope: "approvals:write", ruleId: "approve-payout" },
    { name: "a literal beats a parameter", method: "GET", path: "/api/payouts/summary", write: false, scope: "reports:read", ruleId: "operation:GET /api/payouts/summary" },
    { name: "a parameter matches any other segment", method: "GET", path: "/api/payouts/po_123", write: false, scope: "payouts:read_one", ruleId: "operation:GET /api/payouts/{payoutId}" },
    { name: "literal-first search backtracks to the parameter", method: "GET", path: "/api/a/b/d", write: false, scope: "axd:read", ruleId: "operation:GET /api/a/{x}/d" },
    { name: "HEAD falls back to the GET operation", method: "HEAD", path: "/api/payouts/summary", write: false, scope: "reports:read", ruleId: "operation:GET /api/payouts/summary" },
    { name: "a HEAD operation beats the GET fallback", method: "HEAD", path: "/api/files/f1", write: false, scope: "files:head", ruleId: "operation:HEAD /api/files/{fileId}" },
    { name: "a method without an operation falls back to the group", method: "DELETE", path: "/api/payouts/summary", write: true, scope: "payouts:write", ruleId: "group:/api/payouts" },
    { name: "OPTIONS reads through the group", method: "OPTIONS", path: "/api/payouts/summary", write: false, scope: "payouts:read", ruleId: "group:/api/payouts" },
    { name: "the deepest operation needs every segment", method: "GET", path: "/api/payouts/7/approve/x", write: false, scope: "payouts:read", ruleId: "group:/api/payouts" },
  ])("$name: $method $path", ({ method, path, write, scope, ruleId }) => {
    expect(routes.match(method, path.split("/").filter(Boolean), write)).toEqual({ scope, ruleId });
  });

  it("returns null when no operation or group covers the path", () => {
    const noRoot = buildRouteMatcher(operations, groups.slice(1));
    expect(noRoot.match("GET", ["healthz"], false)).toBeNull();
    expect(noRoot.match("GET", [], false)).toBeNull();
  });

  it("returns the same frozen match object on every call", () => {
    const a = routes.match("GET", ["api", "payouts"], false);
    expect(routes.match("GET", ["api", "payouts"], false)).toBe(a);
    expect(Object.isFrozen(a)).toBe(true);
  });
});

describe("scope pattern expansion", () => {
  const catalog = ["payouts:read", "payouts:write", "api_tokens:read", "api_tokens:write", "sandbox:create", "audit:read"];
  it.each([
    { name: "a scope names itself", patterns: ["payouts:read"], expected: ["payouts:read"] },
    { name: "`module:*` names the module", patterns: ["payouts:*"], expected: ["payouts:read", "payouts:write"] },
    { name: "`*:action` names the action in every module", patterns: ["*:read"], expected: ["payouts:read", "api_tokens:read", "audit:read"] },
    { name: "`*` names every scope", patterns: ["*"], expected: catalog },
    { name: "negations remove from the union", patterns: ["*:read", "*:write", "!api_tokens:*"], expected: ["payouts:read", "payouts:write", "audit:read"] },
    { name: "order does not matter", patterns: ["!api_tokens:*", "*:write", "*:read"], expected: ["payouts:read", "payouts:write", "audit:read"] },
    { name: "a negation alone grants nothing", patterns: ["!payouts:read"], expected: [] },
    { name: "`!*` removes everything", patterns: ["*", "!*"], expected: [] },
  ])("$name", ({ patterns, expected }) => {
    expect(expandScopePatterns(patterns, catalog)).toEqual(new Set(expected));
  });
});
