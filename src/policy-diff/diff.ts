/**
 * `portcullis policy diff`: what changes in effective permissions between two
 * compiled policy sets. Permissions are judged with the engine's own
 * route matcher and `holdsScope`, for a service token of every role and key
 * level, so the diff says what the server would decide differently.
 */
import { holdsScope } from "../engine/scope.js";
import { roleProbeToken } from "../explain/probe-token.js";
import { isParameterSegment, splitPath } from "../policy/compile.js";
import type { CompiledControlEntry, CompiledPolicySet, RouteTableEntry } from "../policy/types.js";

/** Routes gained or lost by one role and key level (`null`: no key level). */
export interface PermissionChange {
  readonly role: string;
  readonly keyLevel: string | null;
  /** `METHOD path`, e.g. `DELETE /api/payouts/{id}` or `write /api/payouts/**` for a group. */
  readonly gained: readonly string[];
  readonly lost: readonly string[];
}

/** What {@link diffPolicySets} found. */
export interface PolicyDiff {
  readonly oldRevision: string;
  readonly newRevision: string;
  readonly permissions: readonly PermissionChange[];
  readonly scopesAdded: readonly string[];
  readonly scopesRemoved: readonly string[];
  /** Routes of either set whose request now needs another scope; `(no route)` when nothing covers it. */
  readonly scopeChanges: readonly { readonly route: string; readonly from: string; readonly to: string }[];
  readonly routesAdded: readonly string[];
  readonly routesRemoved: readonly string[];
  /** Control entries added, removed, or whose selector or kinds changed. */
  readonly controlChanges: readonly { readonly id: string; readonly change: "added" | "removed" | "changed"; readonly from?: string; readonly to?: string }[];
  /** Whether any role and key level lost a route: CI asks for a review. */
  readonly lost: boolean;
}

const routeKey = (r: RouteTableEntry) => `${r.method} ${r.path}`;

/** A concrete request standing for one route of either set, labelled by the route it came from. */
interface Probe {
  readonly label: string;
  readonly method: string;
  readonly segments: readonly string[];
  readonly isWrite: boolean;
}

// why: a literal no template is likely to name, so a parameter segment matches it and a literal does not
const PROBE_SEGMENT = "\u0000probe";

/**
 * One probe per route of both sets: an operation's template with its
 * parameters filled, a group's base path with one segment below it (a read
 * is GET, a write POST). Judging each probe with the compiled route matcher
 * catches routes that moved between rules: an operation carved out of a
 * group changes what that path needs even though the group is unchanged.
 */
function probesOf(tables: readonly (readonly RouteTableEntry[])[]): Probe[] {
  const probes = new Map<string, Probe>();
  for (const table of tables) {
    for (const r of table) {
      const label = routeKey(r);
      if (probes.has(label)) continue;
      const group = r.method === "read" || r.method === "write";
      const template = group ? r.path.slice(0, -3) : r.path;
      const segments = splitPath(template === "" ? "/" : template).map((s) => (isParameterSegment(s) ? PROBE_SEGMENT : s));
      const method = group ? (r.method === "read" ? "GET" : "POST") : r.method;
      probes.set(label, { label, method, segments: group ? [...segments, PROBE_SEGMENT] : segments, isWrite: !["GET", "HEAD", "OPTIONS"].includes(method) });
    }
  }
  return [...probes.values()].sort((a, b) => (a.label < b.label ? -1 : a.label > b.label ? 1 : 0));
}

/** The scope a probe needs under a policy set, or `null` when no route covers it (default deny). */
function requiredScope(policy: CompiledPolicySet, probe: Probe): string | null {
  return policy.routes.match(probe.method, probe.segments, probe.isWrite)?.scope ?? null;
}

function allowedRoutes(policy: CompiledPolicySet, probes: readonly Probe[], role: string, keyLevel: string | null): Set<string> {
  const token = roleProbeToken(role, keyLevel);
  const allowed = new Set<string>();
  for (const probe of probes) {
    const scope = requiredScope(policy, probe);
    if (scope !== null && holdsScope(token, policy, scope)) allowed.add(probe.label);
  }
  return allowed;
}

/** A control entry's selection, as one comparable line. */
function describeControl(entry: CompiledControlEntry): string {
  const selector = Object.entries(entry.selector).map(([k, v]) => `${k}=${String(v)}`).join(",");
  return `selects ${selector}; sets ${Object.keys(entry.controls).sort().join(", ")}`;
}

const sorted = (set: Iterable<string>) => [...set].sort();
const minus = (a: ReadonlySet<string>, b: ReadonlySet<string>) => sorted([...a].filter((x) => !b.has(x)));

/** Compares two policy sets; see {@link PolicyDiff}. */
export function diffPolicyFolders(before: CompiledPolicySet, after: CompiledPolicySet): PolicyDiff {
  const roles = sorted(new Set([...before.roles.keys(), ...after.roles.keys()]));
  const levels: (string | null)[] = [null, ...sorted(new Set([...before.keyLevels.keys(), ...after.keyLevels.keys()]))];
  const probes = probesOf([before.routeTable, after.routeTable]);
  const permissions: PermissionChange[] = [];
  for (const role of roles) {
    for (const keyLevel of levels) {
      const was = allowedRoutes(before, probes, role, keyLevel);
      const now = allowedRoutes(after, probes, role, keyLevel);
      const gained = minus(now, was);
      const lost = minus(was, now);
      if (gained.length > 0 || lost.length > 0) permissions.push({ role, keyLevel, gained, lost });
    }
  }
  const oldRoutes = new Map(before.routeTable.map((r) => [routeKey(r), r]));
  const newRoutes = new Map(after.routeTable.map((r) => [routeKey(r), r]));
  const scopeChanges = probes
    .map((probe) => ({ route: probe.label, from: requiredScope(before, probe) ?? "(no route)", to: requiredScope(after, probe) ?? "(no route)" }))
    .filter((c) => c.from !== c.to);
  const oldControls = new Map(before.controls.map((c) => [c.id, describeControl(c)]));
  const newControls = new Map(after.controls.map((c) => [c.id, describeControl(c)]));
  const controlChanges: PolicyDiff["controlChanges"][number][] = [];
  for (const id of sorted(new Set([...oldControls.keys(), ...newControls.keys()]))) {
    const from = oldControls.get(id);
    const to = newControls.get(id);
    if (from === undefined) controlChanges.push({ id, change: "added", to: to! });
    else if (to === undefined) controlChanges.push({ id, change: "removed", from });
    else if (from !== to) controlChanges.push({ id, change: "changed", from, to });
  }
  return {
    oldRevision: before.revision,
    newRevision: after.revision,
    permissions,
    scopesAdded: minus(after.scopes, before.scopes),
    scopesRemoved: minus(before.scopes, after.scopes),
    scopeChanges,
    routesAdded: minus(new Set(newRoutes.keys()), new Set(oldRoutes.keys())),
    routesRemoved: minus(new Set(oldRoutes.keys()), new Set(newRoutes.keys())),
    controlChanges,
    lost: permissions.some((p) => p.lost.length > 0),
  };
}

/** Formats a diff for a terminal: losses first, then gains and catalog changes, then a summary line. */
export function formatPolicyDiff(diff: PolicyDiff): string {
  const lines = [`policy diff ${diff.oldRevision.slice(0, 12)} -> ${diff.newRevision.slice(0, 12)}`];
  const who = (p: PermissionChange) => `role \`${p.role}\`, key level \`${p.keyLevel ?? "none"}\``;
  const section = (title: string, items: string[]) => {
    if (items.length === 0) return;
    lines.push(`${title}:`);
    for (const item of items) lines.push(`  ${item}`);
  };
  section("permissions lost", diff.permissions.flatMap((p) => p.lost.map((r) => `- ${who(p)}: ${r}`)));
  section("permissions gained", diff.permissions.flatMap((p) => p.gained.map((r) => `+ ${who(p)}: ${r}`)));
  section("scopes added", diff.scopesAdded.map((s) => `+ ${s}`));
  section("scopes removed", diff.scopesRemoved.map((s) => `- ${s}`));
  section("routes added", diff.routesAdded.map((r) => `+ ${r}`));
  section("routes removed", diff.routesRemoved.map((r) => `- ${r}`));
  section("routes whose scope changed", diff.scopeChanges.map((c) => `~ ${c.route}: ${c.from} -> ${c.to}`));
  section("controls", diff.controlChanges.map((c) => (c.change === "added" ? `+ ${c.id}: ${c.to}` : c.change === "removed" ? `- ${c.id}: ${c.from}` : `~ ${c.id}: ${c.from} -> ${c.to}`)));
  const lost = diff.permissions.reduce((n, p) => n + p.lost.length, 0);
  const gained = diff.permissions.reduce((n, p) => n + p.gained.length, 0);
  lines.push(`${lost} permission${lost === 1 ? "" : "s"} lost, ${gained} gained${diff.lost ? " (review needed)" : ""}`);
  return lines.join("\n") + "\n";
}
