import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { buildRouteMatcher, crossCheckPolicySet, type Located, type MergedPolicySet } from "../../src/policy/index.js";
import type { EndpointGroupSpec, OperationSpec, RouteMatch } from "../../src/policy/index.js";

const isParam = (s: string) => s.startsWith("{");
const toPath = (segments: readonly string[]) => `/${segments.join("/")}`;
const at = <T>(value: T, pointer: string): Located<T> => ({ value, file: "gen.json", pointer });

/** Keeps each operation only if the set stays free of cross-check errors (duplicates, ambiguity). */
function acceptable(ops: OperationSpec[], groups: EndpointGroupSpec[]): OperationSpec[] {
  const scopes = [...new Set([...ops.map((o) => o.scope), ...groups.flatMap((g) => [g.readScope, g.writeScope])])];
  const merged = (list: OperationSpec[]): MergedPolicySet => ({
    policySet: at({ name: "gen", defaultEnvironment: "test" }, "/policySet"),
    environments: [at({ name: "test", tokenPrefix: "sk_test_" }, "/environments/0")],
    scopes: [at({ module: "m", scopes: scopes.map((scope) => ({ scope })) }, "/scopes/0")],
    endpointGroups: groups.map((g, i) => at(g, `/endpointGroups/${i}`)),
    operations: list.map((o, i) => at(o, `/operations/${i}`)),
    roles: [],
    keyLevels: [],
  });
  const accepted: OperationSpec[] = [];
  for (const op of ops) {
    if (crossCheckPolicySet(merged([...accepted, op]), new Map()).length === 0) accepted.push(op);
  }
  return accepted;
}

/** Brute force: every operation and group checked in turn, with the specificity rule applied literally. */
function referenceMatch(
  ops: readonly OperationSpec[],
  groups: readonly EndpointGroupSpec[],
  method: string,
  segments: readonly string[],
  isWrite: boolean,
): RouteMatch | null {
  const split = (p: string) => p.split("/").filter(Boolean);
  const shape = (p: string) => split(p).map((s) => (isParam(s) ? "{}" : s)).join("/");
  const fits = (op: OperationSpec) => {
    const t = split(op.path);
    return t.length === segments.length && t.every((s, i) => isParam(s) || s === segments[i]);
  };
  const candidates = ops.filter(
    (o) =>
      fits(o) &&
      (o.method === method ||
        (method === "HEAD" && o.method === "GET" && !ops.some((h) => h.method === "HEAD" && shape(h.path) === shape(o.path)))),
  );
  const atLeastAsSpecific = (c: OperationSpec, d: OperationSpec) => {
    const ct = split(c.path);
    return split(d.path).every((s, i) => isParam(s) || !isParam(ct[i] as string));
  };
  if (candidates.length > 0) {
    const best = candidates.find((c) => candidates.every((d) => atLeastAsSpecific(c, d)));
    if (best === undefined) throw new Error(`ambiguous candidates survived the cross-check: ${candidates.map((c) => c.path).join(", ")}`);
    return { scope: best.scope, ruleId: best.id ?? `operation:${best.method} ${best.path}` };
  }
  let bestGroup: EndpointGroupSpec | undefined;
  for (const g of groups) {
    const base = split(g.basePath);
    const covers = base.length <= segments.length && base.every((s, i) => s === segments[i]);
    if (covers && (bestGroup === undefined || base.length > split(bestGroup.basePath).length)) bestGroup = g;
  }
  if (bestGroup === undefined) return null;
  return { scope: isWrite ? bestGroup.writeScope : bestGroup.readScope, ruleId: bestGroup.id ?? `group:${bestGroup.basePath}` };
}

const literal = fc.constantFrom("a", "b", "c");
const template = fc.array(fc.oneof(literal, fc.constantFrom("{p}", "{q}")), { maxLength: 3 });
const opsArb = fc.array(fc.record({ method: fc.constantFrom("GET", "HEAD", "POST"), segments: template }), { maxLength: 12 });
const groupsArb = fc.uniqueArray(fc.array(literal, { maxLength: 3 }), { maxLength: 5, selector: (s) => s.join("/") });
const requestsArb = fc.array(
  fc.record({ method: fc.constantFrom("GET", "HEAD", "POST", "DELETE"), segments: fc.array(fc.constantFrom("a", "b", "c", "x"), { maxLength: 4 }) }),
  { minLength: 1, maxLength: 25 },
);

describe("route matching property", () => {
  it("agrees with a brute-force matcher that checks every operation and group", () => {
    fc.assert(
      fc.property(opsArb, groupsArb, requestsArb, (rawOps, rawGroups, requests) => {
        const groups: EndpointGroupSpec[] = rawGroups.map((g, i) => ({ basePath: toPath(g), readScope: `m:r${i}`, writeScope: `m:w${i}` }));
        const ops = acceptable(
          rawOps.map((o, i) => ({ method: o.method, path: toPath(o.segments), scope: `m:o${i}` })),
          groups,
        );
        const routes = buildRouteMatcher(ops, groups);
        for (const { method, segments } of requests) {
          const isWrite = method === "POST" || method === "DELETE";
          expect(routes.match(method, segments, isWrite)).toEqual(referenceMatch(ops, groups, method, segments, isWrite));
        }
      }),
      { numRuns: 500 },
    );
  });
});
