/**
 * Checks that need more than one value at a time: names unique across the
 * folder, every scope known to the catalog, patterns that match something,
 * and operations that never leave a request ambiguous.
 */
import { compileControls } from "./controls.js";
import { parseDuration } from "./duration.js";
import {
  DEFAULT_OVERLAP_MS,
  MAX_JWT_LIFETIME_MS,
  compileSelector,
  selectorLevel,
  selectorsOverlap,
  expandScopePatterns,
  isParameterSegment,
  operationRuleId,
  groupRuleId,
  splitPath,
  type Located,
  type MergedPolicySet,
} from "./compile.js";
import { errorAt, type PolicyError, type PolicySource } from "./errors.js";
import { suggest } from "./suggest.js";
import { RESERVED_UPSTREAM_HEADER_NAMES } from "./upstream.js";

export { suggest };
import type { CompiledControlSelector, ControlEntrySpec, OperationSpec, PolicySetSettings, UpstreamField } from "./types.js";

const PCHAR = /^[A-Za-z0-9._~!$&'()*+,;=:@-]+$/;
const PARAMETER = /^\{[A-Za-z_][A-Za-z0-9_]*\}$/;

/**
 * Explains what is wrong with a path or path template, or returns `null` when
 * it is fine. Segments are RFC 3986 `pchar`s (RFC 3986 §3.3) without `%`
 * escapes, or, when `allowParameters`, whole-segment parameters `{name}`.
 */
export function checkPathTemplate(path: string, allowParameters: boolean): string | null {
  const what = allowParameters ? "path" : "base path";
  if (!path.startsWith("/")) return `${what} \`${path}\` must start with \`/\``;
  if (path === "/") return null;
  if (path.endsWith("/")) return `${what} \`${path}\` ends with \`/\`; only the root path \`/\` may`;
  for (const segment of splitPath(path)) {
    if (segment === "") return `${what} \`${path}\` has an empty segment`;
    if (segment === "." || segment === "..") {
      return `${what} \`${path}\` has a \`${segment}\` segment; dot segments are not allowed`;
    }
    if (segment.includes("%")) {
      return `${what} \`${path}\` has a \`%\` escape; write paths with plain characters, \`%\` escapes are not allowed`;
    }
    if (segment.includes("{") || segment.includes("}")) {
      if (!allowParameters) {
        return `base path \`${path}\` has a parameter \`${segment}\`; endpoint group base paths are literal`;
      }
      if (!PARAMETER.test(segment)) {
        return `segment \`${segment}\` of path \`${path}\` is not a parameter: a parameter is \`{name}\` with letters, digits and \`_\`, filling the whole segment`;
      }
      continue;
    }
    if (!PCHAR.test(segment)) {
      const bad = [...segment].find((c) => !PCHAR.test(c)) ?? segment;
      return `${what} \`${path}\` has \`${bad}\`, which is not allowed in a path segment`;
    }
  }
  return null;
}

/** An operation with its split template and its position in the merged list. */
interface OperationEntry {
  readonly at: Located<OperationSpec>;
  readonly segments: readonly string[];
  readonly index: number;
  /** Template with parameter names erased. */
  readonly shape: string;
}

/** What kind of relation two same-length templates have. */
type Overlap = "disjoint" | "same" | "ordered" | "ambiguous";

function compareTemplates(a: readonly string[], b: readonly string[]): Overlap {
  let aMoreSpecific = false;
  let bMoreSpecific = false;
  for (let i = 0; i < a.length; i++) {
    const pa = isParameterSegment(a[i] as string);
    const pb = isParameterSegment(b[i] as string);
    if (!pa && !pb) {
      if (a[i] !== b[i]) return "disjoint";
    } else if (!pa) {
      aMoreSpecific = true;
    } else if (!pb) {
      bMoreSpecific = true;
    }
  }
  if (aMoreSpecific && bMoreSpecific) return "ambiguous";
  return aMoreSpecific || bMoreSpecific ? "ordered" : "same";
}

/** A request path both templates match: each literal, and `x` where both have parameters. */
function witnessPath(a: readonly string[], b: readonly string[]): string {
  const segments = a.map((s, i) => (isParameterSegment(s) ? (isParameterSegment(b[i] as string) ? "x" : b[i]) : s));
  return `/${segments.join("/")}`;
}

/**
 * Runs every cross-file check on a merged policy set and returns the errors,
 * each placed at the offending value in `sources` (keyed by file). Sections
 * named in `incomplete` lost items to earlier errors: references into them
 * are not checked, so that one mistake is reported once.
 */
export function crossCheckPolicySet(
  merged: MergedPolicySet,
  sources: ReadonlyMap<string, PolicySource>,
  incomplete: ReadonlySet<string> = new Set(),
): PolicyError[] {
  const errors: PolicyError[] = [];
  // why: a name missing from a section that lost items to their own errors may
  // be one of those items; reporting it would only echo the first error
  const knowsAll = (section: string): boolean => !incomplete.has(section);
  const report = (
    at: Located<unknown>,
    suffix: string,
    message: string,
    hint?: string,
  ): void => {
    const source = sources.get(at.file);
    const pointer = at.pointer + suffix;
    if (source === undefined) {
      errors.push({ file: at.file, pointer, line: 0, column: 0, message, ...(hint === undefined ? {} : { hint }) });
    } else {
      errors.push(errorAt(source, pointer, message, hint));
    }
  };
  const where = (at: Located<unknown>, suffix = ""): string => `\`${at.file}\` ${at.pointer}${suffix}`;

  /** Records `key` and reports it when seen before. */
  const unique = () => {
    const seen = new Map<string, string>();
    return (key: string, at: Located<unknown>, suffix: string, message: (first: string) => string) => {
      const first = seen.get(key);
      if (first === undefined) seen.set(key, where(at, suffix));
      else report(at, suffix, message(first));
    };
  };

  // The scope catalog.
  const catalog = new Set<string>();
  const modules = new Set<string>();
  const actions = new Set<string>();
  const moduleNames = unique();
  const scopeNames = unique();
  for (const at of merged.scopes) {
    const { module, scopes } = at.value;
    modules.add(module);
    moduleNames(module, at, "/module", (first) => `duplicate module \`${module}\` (first defined at ${first})`);
    scopes.forEach(({ scope }, j) => {
      const suffix = `/scopes/${j}/scope`;
      catalog.add(scope);
      actions.add(scope.slice(scope.indexOf(":") + 1));
      scopeNames(scope, at, suffix, (first) => `duplicate scope \`${scope}\` (first defined at ${first})`);
      if (!scope.startsWith(`${module}:`)) {
        report(at, suffix, `scope \`${scope}\` does not belong to module \`${module}\`: it must start with \`${module}:\``);
      }
    });
  }

  const checkScope = (scope: string, at: Located<unknown>, suffix: string): void => {
    if (!catalog.has(scope) && knowsAll("scopes")) report(at, suffix, `unknown scope \`${scope}\``, suggest(scope, catalog));
  };

  const checkPatterns = (patterns: readonly string[], at: Located<unknown>): void => {
    patterns.forEach((pattern, i) => {
      const suffix = `/scopes/${i}`;
      const bang = pattern.startsWith("!") ? "!" : "";
      const positive = pattern.slice(bang.length);
      if (!knowsAll("scopes") || expandScopePatterns([positive], catalog).size > 0) return;
      if (positive.endsWith(":*")) {
        const module = positive.slice(0, -2);
        const hint = suggest(module, modules, (m) => `${bang}${m}:*`);
        report(at, suffix, `scope pattern \`${pattern}\` matches no scope: unknown module \`${module}\``, hint);
      } else if (positive.startsWith("*:")) {
        const action = positive.slice(2);
        const hint = suggest(action, actions, (a) => `${bang}*:${a}`);
        report(at, suffix, `scope pattern \`${pattern}\` matches no scope: no module has action \`${action}\``, hint);
      } else {
        const hint = suggest(positive, catalog, (s) => `${bang}${s}`);
        report(at, suffix, `unknown scope \`${positive}\``, hint);
      }
    });
  };

  // Environments and settings.
  const envNames = unique();
  const prefixes = unique();
  const hosts = unique();
  for (const at of merged.environments) {
    const env = at.value;
    envNames(env.name, at, "/name", (first) => `duplicate environment \`${env.name}\` (first defined at ${first})`);
    prefixes(env.tokenPrefix, at, "/tokenPrefix", (first) => `duplicate token prefix \`${env.tokenPrefix}\` (first used at ${first})`);
    (env.hosts ?? []).forEach((host, i) => {
      hosts(host.toLowerCase(), at, `/hosts/${i}`, (first) => `duplicate host \`${host}\` (first used at ${first})`);
    });
  }
  const environmentNames = merged.environments.map((e) => e.value.name);
  const defaultEnvironment = merged.policySet.value.defaultEnvironment;
  if (!environmentNames.includes(defaultEnvironment) && knowsAll("environments")) {
    report(
      merged.policySet,
      "/defaultEnvironment",
      `unknown default environment \`${defaultEnvironment}\``,
      suggest(defaultEnvironment, environmentNames),
    );
  }

  checkHeaderNames(merged.policySet.value, (suffix, message) => report(merged.policySet, suffix, message));

  // Endpoint groups and operations.
  // why: two default ids collide only when their paths do, which is reported
  // on its own, so a rule id clash is reported only when an explicit id is involved
  const ruleIds = new Map<string, { where: string; explicit: boolean }>();
  const checkRuleId = (id: string, explicit: boolean, at: Located<unknown>, suffix: string): void => {
    const first = ruleIds.get(id);
    if (first === undefined) ruleIds.set(id, { where: where(at, suffix), explicit });
    else if (explicit || first.explicit) report(at, suffix, `duplicate rule id \`${id}\` (first used at ${first.where})`);
  };
  const basePaths = unique();
  for (const at of merged.endpointGroups) {
    const group = at.value;
    basePaths(group.basePath, at, "/basePath", (first) => `duplicate endpoint group base path \`${group.basePath}\` (first defined at ${first})`);
    checkRuleId(groupRuleId(group), group.id !== undefined, at, group.id === undefined ? "/basePath" : "/id");
    checkScope(group.readScope, at, "/readScope");
    checkScope(group.writeScope, at, "/writeScope");
  }

  const byShape = new Map<string, OperationEntry[]>();
  merged.operations.forEach((at, index) => {
    const op = at.value;
    checkRuleId(operationRuleId(op), op.id !== undefined, at, op.id === undefined ? "/path" : "/id");
    checkScope(op.scope, at, "/scope");
    const segments = splitPath(op.path);
    const params = segments.filter(isParameterSegment);
    const repeated = params.find((p, i) => params.indexOf(p) !== i);
    if (repeated !== undefined) {
      report(at, "/path", `path \`${op.path}\` names parameter \`${repeated}\` twice`);
    }
    const key = `${op.method} ${segments.length}`;
    const list = byShape.get(key) ?? [];
    list.push({ at, segments, index, shape: shapeOf(segments) });
    byShape.set(key, list);
  });

  /** Reports `second` (the later one) when it duplicates or is ambiguous with `first`. */
  const checkPair = (first: OperationEntry, second: OperationEntry): void => {
    const overlap = compareTemplates(first.segments, second.segments);
    const a = `\`${first.at.value.method} ${first.at.value.path}\``;
    const b = `\`${second.at.value.method} ${second.at.value.path}\``;
    if (overlap === "same") {
      report(second.at, "/path", `duplicate operation ${b}: same method and path as ${a} at ${where(first.at)}`);
    } else if (overlap === "ambiguous") {
      report(
        second.at,
        "/path",
        `operation ${b} is ambiguous with ${a} at ${where(first.at)}: both match \`${witnessPath(first.segments, second.segments)}\` and neither is more specific`,
        "give one of them a literal segment at every position where the other has one",
      );
    }
  };
  for (const list of byShape.values()) {
    for (let j = 1; j < list.length; j++) for (let i = 0; i < j; i++) checkPair(list[i]!, list[j]!);
  }
  // why: a GET operation also answers HEAD where no HEAD operation has its
  // template, so such a GET must not be ambiguous with any HEAD operation either
  for (const [key, heads] of byShape) {
    if (!key.startsWith("HEAD ")) continue;
    const headShapes = new Set(heads.map((h) => h.shape));
    const gets = (byShape.get(`GET ${key.slice(5)}`) ?? []).filter((g) => !headShapes.has(g.shape));
    for (const head of heads) {
      for (const get of gets) {
        if (head.index < get.index) checkPair(head, get);
        else checkPair(get, head);
      }
    }
  }

  // Roles and key levels.
  const roleNames = unique();
  for (const at of merged.roles) {
    roleNames(at.value.name, at, "/name", (first) => `duplicate role \`${at.value.name}\` (first defined at ${first})`);
    checkPatterns(at.value.scopes, at);
  }
  const levelNames = unique();
  for (const at of merged.keyLevels) {
    levelNames(at.value.name, at, "/name", (first) => `duplicate key level \`${at.value.name}\` (first defined at ${first})`);
    checkPatterns(at.value.scopes, at);
  }

  // Control entries.
  const roleList = merged.roles.map((r) => r.value.name);
  const compiledEntries: { at: Located<ControlEntrySpec>; selector: CompiledControlSelector; level: string }[] = [];
  for (const at of merged.controls ?? []) {
    const entry = at.value;
    checkRuleId(entry.id, true, at, "/id");
    const { environment, role } = entry.selector;
    if (environment !== undefined && !environmentNames.includes(environment) && knowsAll("environments")) {
      report(at, "/selector/environment", `unknown environment \`${environment}\``, suggest(environment, environmentNames));
    }
    if (role !== undefined && !roleList.includes(role) && knowsAll("roles")) report(at, "/selector/role", `unknown role \`${role}\``, suggest(role, roleList));
    (entry.conditionalAccess?.environments ?? []).forEach((name, i) => {
      if (!environmentNames.includes(name) && knowsAll("environments")) {
        report(at, `/conditionalAccess/environments/${i}`, `unknown environment \`${name}\``, suggest(name, environmentNames));
      }
    });
    if (entry.ipAllowlist === undefined && entry.mtls === undefined && entry.conditionalAccess === undefined && entry.quota === undefined) {
      report(at, "", `control entry \`${entry.id}\` sets no control`, "add `ipAllowlist`, `mtls`, `conditionalAccess` or `quota`");
    }
    const compiled = compileControls(entry, entry.id);
    if (!compiled.ok) for (const e of compiled.errors) report(at, e.pointer, e.message, e.hint);
    const selector = compileSelector(entry.selector);
    compiledEntries.push({ at, selector, level: selectorLevel(selector) });
  }
  // why: for each kind the most specific matching source wins; two entries of
  // one level that could match one token would leave the winner to file order
  for (let j = 1; j < compiledEntries.length; j++) {
    for (let i = 0; i < j; i++) {
      const a = compiledEntries[i]!;
      const b = compiledEntries[j]!;
      if (a.level !== b.level || !selectorsOverlap(a.selector, b.selector)) continue;
      for (const kind of ["ipAllowlist", "mtls", "conditionalAccess", "quota"] as const) {
        if (a.at.value[kind] === undefined || b.at.value[kind] === undefined) continue;
        report(
          b.at,
          `/${kind}`,
          `control entry \`${b.at.value.id}\` and \`${a.at.value.id}\` at ${where(a.at)} both set \`${kind}\` at the ${a.level} level for tokens both selectors match`,
          "make the selectors disjoint, set the control on one entry only, or give one selector a more specific field",
        );
      }
    }
  }

  // Token rules: a default overlap beyond the maximum could never be granted.
  if (merged.tokens !== undefined) {
    const rotation = merged.tokens.value.rotation;
    const defaultMs = rotation?.defaultOverlap === undefined ? undefined : parseDuration(rotation.defaultOverlap);
    const maxMs = rotation?.maxOverlap === undefined ? DEFAULT_OVERLAP_MS : parseDuration(rotation.maxOverlap);
    if (defaultMs != null && maxMs != null && defaultMs > maxMs) {
      report(merged.tokens, "/rotation/defaultOverlap", `default overlap \`${rotation!.defaultOverlap}\` exceeds the maximum overlap \`${rotation?.maxOverlap ?? "90d"}\``, "lower `defaultOverlap` or raise `maxOverlap`");
    }
  }

  // Token exchange: DESIGN.md caps an exchanged JWT at 15 minutes, and a JWT that expires as it is issued is useless.
  const exchangeLifetime = merged.policySet.value.tokenExchange?.maxLifetime;
  if (exchangeLifetime !== undefined) {
    const lifetimeMs = parseDuration(exchangeLifetime);
    if (lifetimeMs !== null && (lifetimeMs < 1_000 || lifetimeMs > MAX_JWT_LIFETIME_MS)) {
      report(merged.policySet, "/tokenExchange/maxLifetime", `jwt lifetime \`${exchangeLifetime}\` is outside \`1s\` to \`15m\``, "exchanged jwts live at most 15 minutes");
    }
  }

  return errors;
}

/** A template with parameter names erased, so `/a/{id}` and `/a/{x}` compare equal. */
function shapeOf(segments: readonly string[]): string {
  return segments.map((s) => (isParameterSegment(s) ? "{}" : s)).join("/");
}

/**
 * The environment header and the upstream header names: none may be a header
 * that carries the credential or that proxies own, and two forwarded fields may
 * not share a name (the second would overwrite the first upstream).
 */
function checkHeaderNames(settings: PolicySetSettings, report: (suffix: string, message: string) => void): void {
  const environmentHeader = settings.environmentHeader?.toLowerCase();
  if (environmentHeader !== undefined && RESERVED_ENVIRONMENT_HEADER_NAMES.has(environmentHeader)) {
    report("/environmentHeader", `\`${settings.environmentHeader}\` cannot name the environment: it carries the credential or the target host`);
  }
  const seen = new Map<string, string>();
  for (const [field, name] of Object.entries(settings.upstream?.headers ?? {}) as [UpstreamField, string][]) {
    const lower = name.toLowerCase();
    const suffix = `/upstream/headers/${field}`;
    if (RESERVED_UPSTREAM_HEADER_NAMES.has(lower)) report(suffix, `\`${name}\` cannot carry an identity field upstream: proxies and servers read it for other things`);
    const first = seen.get(lower);
    if (first !== undefined) report(suffix, `header \`${name}\` already carries \`${first}\`; give \`${field}\` a header of its own`);
    else seen.set(lower, field);
  }
}

const RESERVED_ENVIRONMENT_HEADER_NAMES: ReadonlySet<string> = new Set(["authorization", "proxy-authorization", "host"]);
