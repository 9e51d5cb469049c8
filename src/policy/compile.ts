/**
 * Compiles a validated, cross-checked policy set into the lookup structures
 * the engine reads: route tries, expanded role and key level scope sets and
 * environment maps.
 */
import { createHash } from "node:crypto";
import { CaTrust } from "./ca-trust.js";
import { compileControls } from "./controls.js";
import { parseDuration } from "./duration.js";
import { buildPathPatternMatcher } from "./path-pattern-matcher.js";
import { compileUpstream } from "./upstream.js";
import { compileDecisionLogMasking } from "./decision-log-masking.js";
import type {
  CompiledWebhookEndpoint,
  CompiledTokenRules,
  CompiledTokenExchange,
  TokenExchangeSpec,
  TokensSpec,
  CompiledControlEntry,
  CompiledControlSelector,
  ControlEntrySpec,
  ControlLevel,
  ControlSelectorSpec,
  WorkspaceRestrictionSpec,
  CompiledPolicySet,
  CompiledRoutes,
  EndpointGroupSpec,
  EnvironmentSpec,
  KeyLevelSpec,
  OperationSpec,
  PolicySetSettings,
  RoleSpec,
  RouteMatch,
  ScopeModuleSpec,
} from "./types.js";

/** A value from a policy file, with the file and JSON pointer it came from. */
export interface Located<T> {
  readonly value: T;
  readonly file: string;
  readonly pointer: string;
}

/** The sections of every file of a folder merged, each item still knowing where it came from. */
export interface MergedPolicySet {
  readonly policySet: Located<PolicySetSettings>;
  readonly environments: readonly Located<EnvironmentSpec>[];
  readonly scopes: readonly Located<ScopeModuleSpec>[];
  readonly endpointGroups: readonly Located<EndpointGroupSpec>[];
  readonly operations: readonly Located<OperationSpec>[];
  readonly roles: readonly Located<RoleSpec>[];
  readonly keyLevels: readonly Located<KeyLevelSpec>[];
  /** Absent or empty when no file has the section. */
  readonly controls?: readonly Located<ControlEntrySpec>[];
  /** Absent when no file has the section: every write is then protected. */
  readonly workspaceRestriction?: Located<WorkspaceRestrictionSpec> | undefined;
  /** Absent when no file has the section: defaults apply. */
  readonly tokens?: Located<TokensSpec> | undefined;
}

/** The part of a source file the revision hash covers. */
export interface RevisionSource {
  /** File name without folder, so the revision does not depend on where the folder is. */
  readonly name: string;
  readonly text: string;
}

/** Splits a path or template into segments; the root `/` has none. */
export function splitPath(path: string): string[] {
  return path === "/" ? [] : path.slice(1).split("/");
}

/** Whether a template segment is a whole-segment parameter such as `{id}`. */
export function isParameterSegment(segment: string): boolean {
  return segment.startsWith("{") && segment.endsWith("}");
}

/** A node of a segment trie over path templates: a child per literal segment, one for every `{param}`. */
export interface TemplateTrieNode<N> {
  readonly literals: Map<string, N>;
  param: N | undefined;
}

/** The node a template's segments lead to from `root`, creating the missing ones with `newNode`. */
export function templateNode<N extends TemplateTrieNode<N>>(root: N, segments: readonly string[], newNode: () => N): N {
  let node = root;
  for (const segment of segments) {
    if (isParameterSegment(segment)) {
      node = node.param ??= newNode();
    } else {
      let next = node.literals.get(segment);
      if (next === undefined) {
        next = newNode();
        node.literals.set(segment, next);
      }
      node = next;
    }
  }
  return node;
}

/** Rule id of an operation: its `id`, else `operation:<METHOD> <path>`. */
export function operationRuleId(op: OperationSpec): string {
  return op.id ?? `operation:${op.method} ${op.path}`;
}

/** Rule id of an endpoint group: its `id`, else `group:<basePath>`. */
export function groupRuleId(group: EndpointGroupSpec): string {
  return group.id ?? `group:${group.basePath}`;
}

/**
 * Whether `scope` matches a positive pattern: `*`, `module:*`, `*:action` or
 * the scope itself.
 */
export function scopeMatchesPattern(scope: string, pattern: string): boolean {
  if (pattern === "*") return true;
  if (pattern.endsWith(":*")) return scope.startsWith(pattern.slice(0, -1));
  if (pattern.startsWith("*:")) return scope.endsWith(pattern.slice(1));
  return scope === pattern;
}

/**
 * Expands scope patterns against the catalog: the union of the positive
 * patterns minus the union of the negated (`!`) ones. Order does not matter.
 */
export function expandScopePatterns(
  patterns: readonly string[],
  catalog: Iterable<string>,
): Set<string> {
  const positive = patterns.filter((p) => !p.startsWith("!"));
  const negative = patterns.filter((p) => p.startsWith("!")).map((p) => p.slice(1));
  const result = new Set<string>();
  for (const scope of catalog) {
    if (
      positive.some((p) => scopeMatchesPattern(scope, p)) &&
      !negative.some((p) => scopeMatchesPattern(scope, p))
    ) {
      result.add(scope);
    }
  }
  return result;
}

interface OperationNode extends TemplateTrieNode<OperationNode> {
  /** Match per upper-case method; `HEAD` is filled from `GET` when absent. */
  readonly byMethod: Map<string, RouteMatch>;
}

interface GroupNode {
  readonly children: Map<string, GroupNode>;
  read: RouteMatch | undefined;
  write: RouteMatch | undefined;
}

function newOperationNode(): OperationNode {
  return { literals: new Map(), param: undefined, byMethod: new Map() };
}

function fillHeadFromGet(node: OperationNode): void {
  const get = node.byMethod.get("GET");
  if (get !== undefined && !node.byMethod.has("HEAD")) node.byMethod.set("HEAD", get);
  for (const child of node.literals.values()) fillHeadFromGet(child);
  if (node.param !== undefined) fillHeadFromGet(node.param);
}

function findOperation(
  node: OperationNode,
  method: string,
  segments: readonly string[],
  index: number,
): RouteMatch | undefined {
  if (index === segments.length) return node.byMethod.get(method);
  const literal = node.literals.get(segments[index] as string);
  if (literal !== undefined) {
    const found = findOperation(literal, method, segments, index + 1);
    if (found !== undefined) return found;
  }
  return node.param === undefined
    ? undefined
    : findOperation(node.param, method, segments, index + 1);
}

/**
 * Builds the route matcher: a segment trie of operations searched depth-first,
 * literal child before parameter child, then a literal trie of endpoint group
 * base paths where the deepest group passed on the way down wins. Lookup cost
 * grows with path depth, never with the number of routes.
 *
 * INVARIANT: operations were cross-checked, so no two share a method and
 * template shape and no two are ambiguous; literal-first search therefore
 * finds the most specific operation. If two still collide, the first wins.
 */
export function buildRouteMatcher(
  operations: readonly OperationSpec[],
  groups: readonly EndpointGroupSpec[],
): CompiledRoutes {
  const opRoot = newOperationNode();
  for (const op of operations) {
    const node = templateNode(opRoot, splitPath(op.path), newOperationNode);
    if (!node.byMethod.has(op.method)) {
      node.byMethod.set(op.method, Object.freeze({ scope: op.scope, ruleId: operationRuleId(op) }));
    }
  }
  fillHeadFromGet(opRoot);

  const groupRoot: GroupNode = { children: new Map(), read: undefined, write: undefined };
  for (const group of groups) {
    let node = groupRoot;
    for (const segment of splitPath(group.basePath)) {
      let next = node.children.get(segment);
      if (next === undefined) {
        next = { children: new Map(), read: undefined, write: undefined };
        node.children.set(segment, next);
      }
      node = next;
    }
    if (node.read === undefined) {
      const ruleId = groupRuleId(group);
      node.read = Object.freeze({ scope: group.readScope, ruleId });
      node.write = Object.freeze({ scope: group.writeScope, ruleId });
    }
  }

  return Object.freeze({
    match(method: string, segments: readonly string[], isWrite: boolean): RouteMatch | null {
      const op = findOperation(opRoot, method, segments, 0);
      if (op !== undefined) return op;
      let node = groupRoot;
      let found = isWrite ? node.write : node.read;
      for (const segment of segments) {
        const next = node.children.get(segment);
        if (next === undefined) break;
        node = next;
        const here = isWrite ? node.write : node.read;
        if (here !== undefined) found = here;
      }
      return found ?? null;
    },
  });
}

/**
 * Compiles a selector: `workspace` may be `tenant/workspace` or a bare
 * workspace name, which matches that workspace in any tenant.
 */
export function compileSelector(spec: ControlSelectorSpec): CompiledControlSelector {
  const selector: { -readonly [K in keyof CompiledControlSelector]: CompiledControlSelector[K] } = {};
  if (spec.workspace !== undefined) {
    const slash = spec.workspace.indexOf("/");
    if (slash === -1) selector.workspace = spec.workspace;
    else {
      selector.tenant = spec.workspace.slice(0, slash);
      selector.workspace = spec.workspace.slice(slash + 1);
    }
  }
  if (spec.environment !== undefined) selector.environment = spec.environment;
  if (spec.service !== undefined) selector.service = spec.service;
  if (spec.role !== undefined) selector.role = spec.role;
  return Object.freeze(selector);
}

/** The level of a selector: the most specific field it names (service, environment, role, workspace). */
export function selectorLevel(selector: CompiledControlSelector): Exclude<ControlLevel, "token"> {
  if (selector.service !== undefined) return "service";
  if (selector.environment !== undefined) return "environment";
  if (selector.role !== undefined) return "role";
  return "workspace";
}

/** Whether one token could match both selectors: no field both name differs. */
export function selectorsOverlap(a: CompiledControlSelector, b: CompiledControlSelector): boolean {
  for (const field of ["tenant", "workspace", "environment", "service", "role"] as const) {
    if (a[field] !== undefined && b[field] !== undefined && a[field] !== b[field]) return false;
  }
  return true;
}

/**
 * Compiles policy control entries.
 *
 * INVARIANT: the entries were cross-checked, so each one's controls compile.
 */
export function compileControlEntries(entries: readonly ControlEntrySpec[]): CompiledControlEntry[] {
  return entries.map((entry) => {
    const compiled = compileControls(entry, entry.id);
    if (!compiled.ok) throw new Error(`control entry \`${entry.id}\` does not compile: ${compiled.errors[0]?.message ?? ""}`);
    const selector = compileSelector(entry.selector);
    return Object.freeze({ id: entry.id, level: selectorLevel(selector), selector, controls: compiled.value });
  });
}

/**
 * Compiles a merged policy set. `sources` are the files in load order; their
 * names and texts make the revision. `trustedCas` are the CA certificates
 * the loader read for `policySet.trustedCas` (none by default); `webhooks`
 * the endpoints `loadWebhookEndpoints` read (none by default).
 *
 * INVARIANT: `merged` passed the schema and the cross-checks: names are
 * unique, every scope exists, `defaultEnvironment` names an environment.
 *
 * @example
 * const compiled = compilePolicySet(merged, [{ name: "policy-set.json", text }]);
 * compiled.routes.match("GET", ["api", "payouts"], false); // { scope: "payouts:read", ruleId: "group:/api/payouts" }
 */
export function compilePolicySet(
  merged: MergedPolicySet,
  sources: readonly RevisionSource[],
  trustedCas: CaTrust = new CaTrust([]),
  webhooks: readonly CompiledWebhookEndpoint[] = [],
): CompiledPolicySet {
  const hash = createHash("sha256");
  for (const source of sources) {
    // why: NUL separators keep `a` + `bc` and `ab` + `c` apart
    hash.update(source.name).update("\0").update(source.text).update("\0");
  }

  const scopes = new Set<string>();
  for (const module of merged.scopes) for (const s of module.value.scopes) scopes.add(s.scope);

  const environmentByPrefix = new Map<string, string>();
  const environmentByHost = new Map<string, string>();
  for (const { value: env } of merged.environments) {
    environmentByPrefix.set(env.tokenPrefix, env.name);
    for (const host of env.hosts ?? []) environmentByHost.set(host.toLowerCase(), env.name);
  }
  const tokenPrefixes = [...environmentByPrefix.keys()].sort(
    (a, b) => b.length - a.length || (a < b ? -1 : a > b ? 1 : 0),
  );

  const expand = (items: readonly Located<RoleSpec | KeyLevelSpec>[]) =>
    new Map<string, ReadonlySet<string>>(
      items.map(({ value }) => [value.name, expandScopePatterns(value.scopes, scopes)]),
    );

  const settings = merged.policySet.value;
  return Object.freeze({
    name: settings.name,
    revision: hash.digest("hex"),
    errorDialect: settings.errorDialect ?? "canonical",
    stripCredential: settings.stripCredential ?? true,
    pathParameters: settings.pathParameters ?? "refuse",
    defaultEnvironment: settings.defaultEnvironment,
    environmentByPrefix,
    tokenPrefixes: Object.freeze(tokenPrefixes),
    environmentByHost,
    environmentNames: new Set(environmentByPrefix.values()),
    environmentHeader: settings.environmentHeader === undefined ? null : settings.environmentHeader.toLowerCase(),
    upstream: compileUpstream(settings.upstream),
    trustedCas,
    scopes,
    routes: buildRouteMatcher(
      merged.operations.map((o) => o.value),
      merged.endpointGroups.map((g) => g.value),
    ),
    roles: expand(merged.roles),
    keyLevels: expand(merged.keyLevels),
    controls: Object.freeze(compileControlEntries((merged.controls ?? []).map((c) => c.value))),
    workspaceRestriction: Object.freeze({
      protect: merged.workspaceRestriction?.value.protect === undefined ? null : buildPathPatternMatcher(merged.workspaceRestriction.value.protect),
    }),
    tokens: compileTokenRules(merged.tokens?.value),
    tokenExchange: compileTokenExchange(settings.tokenExchange),
    decisionLog: compileDecisionLogMasking(settings.decisionLog),
    webhooks: Object.freeze([...webhooks]),
    routeTable: Object.freeze([
      ...merged.operations.map(({ value: op }) => Object.freeze({ method: op.method, path: op.path, scope: op.scope, ruleId: operationRuleId(op) })),
      ...merged.endpointGroups.flatMap(({ value: group }) => {
        const path = group.basePath === "/" ? "/**" : `${group.basePath}/**`;
        return [
          Object.freeze({ method: "read", path, scope: group.readScope, ruleId: groupRuleId(group) }),
          Object.freeze({ method: "write", path, scope: group.writeScope, ruleId: groupRuleId(group) }),
        ];
      }),
    ]),
  });
}

/** Default overlap window and its default maximum: 90 days, as DESIGN.md says. */
export const DEFAULT_OVERLAP_MS = 90 * 86_400_000;

/**
 * Applies the `tokens` section's defaults.
 * INVARIANT: the section passed the schema (durations match its pattern) and
 * the cross-check (the default overlap is at most the maximum).
 */
export function compileTokenRules(spec: TokensSpec | undefined): CompiledTokenRules {
  const maxOverlapMs = spec?.rotation?.maxOverlap === undefined ? DEFAULT_OVERLAP_MS : parseDuration(spec.rotation.maxOverlap)!;
  const defaultOverlapMs = spec?.rotation?.defaultOverlap === undefined ? Math.min(DEFAULT_OVERLAP_MS, maxOverlapMs) : parseDuration(spec.rotation.defaultOverlap)!;
  return Object.freeze({
    defaultOverlapMs,
    maxOverlapMs,
    userTokensPerCreator: spec?.limits?.userTokensPerCreator ?? null,
    serviceTokensPerTenant: spec?.limits?.serviceTokensPerTenant ?? null,
  });
}

/** The longest JWT lifetime, and the default: DESIGN.md caps exchanged JWTs at 15 minutes. */
export const MAX_JWT_LIFETIME_MS = 15 * 60_000;

/** Exchanges per token per minute when the policy set names no number, as Enkryptify's API allows. */
export const DEFAULT_EXCHANGES_PER_MINUTE = 10;

/** Where the plain HTTP exchange answers when the policy set names no path. */
export const DEFAULT_EXCHANGE_PATH = "/v1/auth/exchange";

/**
 * Applies the `tokenExchange` section's defaults; `null` (exchange off) without it.
 * INVARIANT: the section passed the schema and the cross-check (a lifetime of 1 s to 15 min).
 */
export function compileTokenExchange(spec: TokenExchangeSpec | undefined): CompiledTokenExchange | null {
  if (spec === undefined) return null;
  const perMinute = spec.exchangesPerMinute ?? DEFAULT_EXCHANGES_PER_MINUTE;
  return Object.freeze({
    issuer: spec.issuer,
    audiences: Object.freeze(typeof spec.audience === "string" ? [spec.audience] : [...spec.audience]),
    maxLifetimeMs: spec.maxLifetime === undefined ? MAX_JWT_LIFETIME_MS : parseDuration(spec.maxLifetime)!,
    quota: Object.freeze({ ruleId: "token_exchange", limitPerMinute: perMinute, limitPerDay: null, policyHeader: `${perMinute};w=60` }),
    path: spec.path ?? DEFAULT_EXCHANGE_PATH,
  });
}
