/**
 * Why a decision came out as it did: every stage of the engine, in precedence
 * order, with its verdict and the facts it read. Pure, like the engine.
 *
 * The verdicts come from the engine's own stage functions, called with the
 * same arguments `decide` gives them, and the final answer is `decide`'s own
 * decision; a test holds the first denying stage equal to the decision's code,
 * so this page cannot drift from what the server does.
 */
import { checkToken, readCredential } from "../engine/authenticate.js";
import { checkConditionalAccess } from "../engine/conditional-access.js";
import { decide, readRequest, type StoredFacts } from "../engine/decide.js";
import { effectiveControls, selectorMatches } from "../engine/effective-controls.js";
import { checkIpAllowlist } from "../engine/ip-allowlist.js";
import { checkMtls } from "../engine/mtls.js";
import { prepareRequest, type PreparedRequest } from "../engine/request.js";
import { checkScope } from "../engine/scope.js";
import { checkTenant } from "../engine/tenant.js";
import type { AuthzInput, Decision, TokenRecord } from "../engine/types.js";
import { checkWorkspace } from "../engine/workspace.js";
import { restrictionModeOf, type WorkspaceRestrictionFact } from "../engine/workspace-restriction-mode.js";
import type { CompiledPolicySet } from "../policy/types.js";
import { nearestMiss } from "./nearest-cidr.js";

/** Stage names in DESIGN.md's precedence order; `quota` comes last and is charged by the server. */
export const STAGES = [
  "request",
  "authentication",
  "tenant",
  "ip_allowlist",
  "mtls",
  "conditional_access",
  "scope",
  "workspace",
  "quota",
] as const;

/** One of {@link STAGES}. */
export type StageName = (typeof STAGES)[number];

/** `skipped`: an earlier stage decided, or the stage could not run without what it needs. */
export type Verdict = "pass" | "deny" | "skipped";

/** What one stage concluded and why, as lines a person reads. */
export interface ExplainedStage {
  readonly stage: StageName;
  readonly verdict: Verdict;
  /** The code this stage denies with (`scope_denied` …), set on `deny`. */
  readonly code?: string;
  readonly why: readonly string[];
}

/** A decision with the path that led to it. */
export interface Explanation {
  readonly decision: Decision;
  /** ISO time the decision was judged at. */
  readonly at: string;
  readonly stages: readonly ExplainedStage[];
}

const STAGE_CODES: Readonly<Record<StageName, string>> = {
  request: "invalid_request",
  authentication: "unauthenticated",
  tenant: "tenant_suspended",
  ip_allowlist: "ip_allowlist_blocked",
  mtls: "mtls_required",
  conditional_access: "conditional_access_blocked",
  scope: "scope_denied",
  workspace: "workspace_restricted",
  quota: "quota_exceeded",
};

const WEEKDAYS = ["", "mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/**
 * Explains one request. `decision` is what the server answered (after the
 * quota was charged, when it was); when absent, the engine's own
 * `readRequest` and `decide` produce it here without a quota charge.
 *
 * @example
 * const { decision, stages } = explainRequest(input, policy, { token, tenantSuspended: false, workspaceRestricted: false }, Date.parse("2026-03-02T09:00:00Z"));
 */
export function explainRequest(
  input: AuthzInput,
  policy: CompiledPolicySet,
  facts: StoredFacts,
  nowMs: number,
  decision: Decision = decideWithoutQuota(input, policy, facts, nowMs),
): Explanation {
  const stages: ExplainedStage[] = [];
  const add = (stage: StageName, verdict: Verdict, why: string[]) =>
    stages.push(verdict === "deny" ? { stage, verdict, code: STAGE_CODES[stage], why } : { stage, verdict, why });
  const finish = () => {
    for (const stage of STAGES) if (!stages.some((s) => s.stage === stage)) add(stage, "skipped", ["an earlier stage decided"]);
    return { decision, at: new Date(nowMs).toISOString(), stages };
  };

  const prepared = prepareRequest(input, policy);
  if (!prepared.ok) {
    add("request", "deny", [prepared.invalid.message]);
    return finish();
  }
  const request = prepared.request;
  add("request", "pass", [
    `\`${request.method} ${request.target.path}\` is a ${request.isWrite ? "write" : "read"}`,
    policy.environmentHeader !== null && input.headers.has(policy.environmentHeader)
      ? `header \`${policy.environmentHeader}\` selects the \`${request.environment}\` environment, over the host`
      : `host \`${input.host}\` targets the \`${request.environment}\` environment`,
    request.sourceIp === "" ? "no source ip given" : `source ip \`${request.sourceIp}\``,
  ]);

  const credential = readCredential(request, policy);
  if (!credential.ok) {
    add("authentication", "deny", [`${credential.failure.reason}: ${credential.failure.message}`]);
    return finish();
  }
  const failure = checkToken(facts.token, credential.credential, nowMs);
  if (failure !== null) {
    add("authentication", "deny", [`${failure.reason}: ${failure.message}`]);
    return finish();
  }
  // INVARIANT: checkToken returns null only for a stored token
  const token = facts.token!;
  add("authentication", "pass", [describeToken(token)]);

  const tenant = checkTenant(token, facts);
  if (!tenant.ok) {
    add("tenant", "deny", [tenant.denial.message]);
    return finish();
  }
  add("tenant", "pass", [`tenant \`${token.tenant}\` is active`]);

  const controls = effectiveControls(token, policy);
  const ip = checkIpAllowlist(request, controls.ipAllowlist);
  const ipWhy = [sourceOf("ipAllowlist", controls.ipAllowlist?.ruleId ?? null, token, policy)];
  if (controls.ipAllowlist !== null && request.sourceAddress !== null) {
    const list = controls.ipAllowlist.entries;
    const hit = list.find((cidr) => nearestMiss(request.sourceIp, [cidr])?.matched === true);
    if (hit !== undefined) ipWhy.push(`\`${request.sourceIp}\` is inside \`${hit}\``);
    else {
      const near = nearestMiss(request.sourceIp, list);
      if (near !== null) ipWhy.push(`nearest miss: \`${near.cidr}\` (${near.commonBits} leading bits in common)`);
    }
  }
  add("ip_allowlist", ip.ok ? "pass" : "deny", ip.ok ? ipWhy : [...ipWhy, ip.denial.message]);
  if (!ip.ok) return finish();

  const mtls = checkMtls(request, controls.mtls, nowMs, policy.trustedCas);
  const mtlsWhy = [sourceOf("mtls", controls.mtls?.ruleId ?? null, token, policy)];
  const cert = input.clientCertificate;
  if (controls.mtls !== null) {
    mtlsWhy.push(cert === null ? "no client certificate presented" : `client certificate \`${cert.sha256Fingerprint.slice(0, 16)}…\`, ${cert.verified ? "verified" : "not verified"}`);
  }
  add("mtls", mtls.ok ? "pass" : "deny", mtls.ok ? mtlsWhy : [...mtlsWhy, mtls.denial.message]);
  if (!mtls.ok) return finish();

  const ca = controls.conditionalAccess;
  const access = checkConditionalAccess(request, ca, nowMs);
  const accessWhy = [sourceOf("conditionalAccess", ca?.ruleId ?? null, token, policy)];
  if (ca !== null && (ca.hours !== null || ca.weekdays !== null)) {
    const local = ca.clock.at(nowMs);
    const hhmm = `${String(Math.floor(local.minuteOfDay / 60)).padStart(2, "0")}:${String(local.minuteOfDay % 60).padStart(2, "0")}`;
    const window = ca.hours === null ? "any hour" : `window \`${ca.hours.text}\``;
    const days = ca.weekdays === null ? "any day" : [...ca.weekdays].map((d) => WEEKDAYS[d]).join(", ");
    accessWhy.push(`local time \`${WEEKDAYS[local.weekday]} ${hhmm}\` in \`${ca.clock.zone}\`; ${window}, days ${days}`);
  }
  add("conditional_access", access.ok ? "pass" : "deny", access.ok ? accessWhy : [...accessWhy, access.denial.message]);
  if (!access.ok) return finish();

  const scope = checkScope(request, policy, token);
  if (!scope.ok) {
    const why = [scope.denial.message];
    if (scope.denial.reason === "missing_scope") why.push(`rule \`${scope.denial.ruleId}\` needs \`${scope.denial.details["required_scope"]}\`; in that module the token holds \`${scope.denial.details["current_scope"] || "nothing"}\``);
    add("scope", "deny", why);
    return finish();
  }
  add("scope", "pass", [`rule \`${scope.route.ruleId}\` matched and needs \`${scope.route.scope}\`, which the token holds`]);

  const workspace = checkWorkspace(request, token, policy, facts);
  add("workspace", workspace.ok ? "pass" : "deny", workspaceWhy(request, token, policy, facts.workspaceRestricted, workspace.ok ? null : workspace.denial.message));
  if (!workspace.ok) return finish();

  const quota = controls.quota;
  const quotaWhy = [sourceOf("quota", quota?.ruleId ?? null, token, policy)];
  if (decision.code === "quota_exceeded") add("quota", "deny", [...quotaWhy, decision.message]);
  else add("quota", "pass", quota === null ? quotaWhy : [...quotaWhy, `limits ${quota.policyHeader}; counted by the server, not here`]);
  return finish();
}

/** The decision the server's engine makes for the same input, without charging a quota. */
function decideWithoutQuota(input: AuthzInput, policy: CompiledPolicySet, facts: StoredFacts, nowMs: number): Decision {
  const reading = readRequest(input, policy);
  return reading.done ? reading.decision : decide(reading.request, reading.credential, policy, facts, nowMs);
}

function describeToken(token: TokenRecord): string {
  const parts = [`token \`${token.id}\` (${token.type}, tenant \`${token.tenant}\`, workspace \`${token.workspace}\`, environment \`${token.environment}\``];
  parts.push(`role \`${token.role ?? "none"}\`, key level \`${token.keyLevel ?? "none"}\``);
  if (token.scopes !== null) parts.push(`explicit scopes ${token.scopes.map((s) => `\`${s}\``).join(" ")}`);
  return `${parts.join(", ")})`;
}

/**
 * Which source set a control kind for the token, and which less specific
 * matching sources it replaced: the same selection `effectiveControls` makes.
 */
function sourceOf(kind: "ipAllowlist" | "mtls" | "conditionalAccess" | "quota", ruleId: string | null, token: TokenRecord, policy: CompiledPolicySet): string {
  const matching = policy.controls.filter((e) => e.controls[kind] !== undefined && selectorMatches(e.selector, token));
  if (ruleId === null) return `no \`${kind}\` applies to this token`;
  const level = ruleId.startsWith("token:") ? "token" : (matching.find((e) => e.id === ruleId)?.level ?? "policy");
  const replaced = matching.filter((e) => e.id !== ruleId).map((e) => `\`${e.id}\` (${e.level})`);
  return `\`${kind}\` from \`${ruleId}\` (${level})${replaced.length === 0 ? "" : `, replacing ${replaced.join(", ")}`}`;
}

/** The first stage that denied, or `null` on allow. */
export function denyingStage(explanation: Explanation): ExplainedStage | null {
  return explanation.stages.find((s) => s.verdict === "deny") ?? null;
}

/** Formats an explanation as indented lines for a terminal. */
export function formatExplanation(explanation: Explanation, indent = ""): string {
  const d = explanation.decision;
  const lines = [`${indent}decision: ${d.code} (${d.httpStatus}) reason \`${d.reason}\` rule \`${d.ruleId}\` at ${explanation.at}`];
  for (const stage of explanation.stages) {
    lines.push(`${indent}  ${stage.verdict.padEnd(7)} ${stage.stage}${stage.code === undefined ? "" : ` -> ${stage.code}`}`);
    for (const why of stage.why) lines.push(`${indent}          ${why}`);
  }
  return lines.join("\n");
}

/** The workspace stage's lines: the outcome, then what the restriction's mode refuses. */
function workspaceWhy(request: PreparedRequest, token: TokenRecord, policy: CompiledPolicySet, fact: WorkspaceRestrictionFact, denial: string | null): string[] {
  const mode = restrictionModeOf(fact);
  if (mode === null) return [`workspace \`${token.workspace}\` is not restricted`];
  const refuses =
    mode === "all"
      ? "mode `all` refuses every operation, reads too"
      : `mode \`writes\` refuses ${policy.workspaceRestriction.protect === null ? "every write" : "the operations in the policy set's `workspaceRestriction.protect` list"}`;
  if (denial !== null) return [denial, refuses];
  return [`workspace is restricted for writes but \`${request.method} ${request.target.path}\` is not protected`, refuses];
}
