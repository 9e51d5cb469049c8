/**
 * What the policy explorer page shows, computed from a compiled policy set:
 * the route table, the role and key level matrix (judged with the engine's
 * `holdsScope`) and the control entries with what they select. Pure.
 */
import { holdsScope } from "../engine/scope.js";
import { roleProbeToken } from "../explain/probe-token.js";
import type { CompiledControlEntry, CompiledPolicySet, RouteTableEntry } from "../policy/types.js";

/** One row of the matrix: the scopes a role at a key level holds. */
export interface MatrixRow {
  readonly role: string;
  /** `null`: no key level cap. */
  readonly keyLevel: string | null;
  readonly allowed: readonly string[];
}

/** A control entry, described for people. */
export interface ControlSummary {
  readonly id: string;
  readonly level: string;
  readonly selector: Readonly<Record<string, string>>;
  /** One line per kind the entry sets. */
  readonly sets: readonly string[];
}

/** Everything the page renders. */
export interface ExplorerModel {
  readonly name: string;
  readonly revision: string;
  readonly routes: readonly RouteTableEntry[];
  /** Modules and their actions, sorted: the matrix columns. */
  readonly modules: readonly { readonly module: string; readonly actions: readonly string[] }[];
  readonly matrix: readonly MatrixRow[];
  readonly controls: readonly ControlSummary[];
}

const WEEKDAYS = ["", "mon", "tue", "wed", "thu", "fri", "sat", "sun"];

function describeControls(entry: CompiledControlEntry): string[] {
  const { ipAllowlist, mtls, conditionalAccess: ca, quota } = entry.controls;
  const sets: string[] = [];
  if (ipAllowlist !== undefined) sets.push(`ip allowlist: ${ipAllowlist.entries.join(", ")}`);
  if (mtls !== undefined) sets.push(`mtls: ${mtls.fingerprints.size} certificate pin(s), ${mtls.caFingerprints.size} CA pin(s)${mtls.required ? ", required" : ""}`);
  if (ca !== undefined) {
    const parts = [`zone ${ca.clock.zone}`];
    if (ca.hours !== null) parts.push(`hours ${ca.hours.text}`);
    if (ca.weekdays !== null) parts.push(`days ${[...ca.weekdays].map((d) => WEEKDAYS[d]).join(" ")}`);
    if (ca.routeList.length > 0) parts.push(`routes ${ca.routeList.join(" ")}`);
    if (ca.methods !== null) parts.push(`methods ${[...ca.methods].join(" ")}`);
    if (ca.environments !== null) parts.push(`environments ${[...ca.environments].join(" ")}`);
    if (ca.readOnly) parts.push("read-only");
    if (ca.requireIdempotencyKey) parts.push("idempotency key on writes");
    sets.push(`conditional access: ${parts.join("; ")}`);
  }
  if (quota !== undefined) sets.push(`quota: ${quota.limitPerMinute ?? "-"}/minute, ${quota.limitPerDay ?? "-"}/day`);
  return sets;
}

/** Builds the page's model from the policy set in force. */
export function buildExplorerModel(policy: CompiledPolicySet): ExplorerModel {
  const byModule = new Map<string, string[]>();
  for (const scope of [...policy.scopes].sort()) {
    const colon = scope.indexOf(":");
    const module = scope.slice(0, colon);
    byModule.set(module, [...(byModule.get(module) ?? []), scope.slice(colon + 1)]);
  }
  const levels: (string | null)[] = [null, ...policy.keyLevels.keys()];
  const matrix: MatrixRow[] = [];
  for (const role of policy.roles.keys()) {
    for (const keyLevel of levels) {
      const token = roleProbeToken(role, keyLevel);
      matrix.push({ role, keyLevel, allowed: [...policy.scopes].filter((scope) => holdsScope(token, policy, scope)).sort() });
    }
  }
  return {
    name: policy.name,
    revision: policy.revision,
    routes: policy.routeTable,
    modules: [...byModule].map(([module, actions]) => ({ module, actions })),
    matrix,
    controls: policy.controls.map((entry) => ({
      id: entry.id,
      level: entry.level,
      selector: Object.fromEntries(Object.entries(entry.selector).filter(([, v]) => v !== undefined)) as Record<string, string>,
      sets: describeControls(entry),
    })),
  };
}
