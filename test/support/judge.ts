/** Runs both halves of the engine over an in-memory token table, as the service does over the store. */
import { decide, readRequest } from "../../src/engine/decide.js";
import type { AuthzInput, Decision, TokenRecord } from "../../src/engine/types.js";
import type { WorkspaceRestrictionFact } from "../../src/engine/workspace-restriction-mode.js";
import type { CompiledPolicySet } from "../../src/policy/types.js";

export function judge(
  input: AuthzInput,
  policy: CompiledPolicySet,
  tokens: ReadonlyMap<string, TokenRecord>,
  nowMs: number,
  state: { tenantSuspended?: boolean; workspaceRestricted?: WorkspaceRestrictionFact } = {},
): Decision {
  const reading = readRequest(input, policy);
  if (reading.done) return reading.decision;
  const token = tokens.get(reading.credential.token);
  const facts = { token, tenantSuspended: state.tenantSuspended ?? false, workspaceRestricted: state.workspaceRestricted ?? false };
  return decide(reading.request, reading.credential, policy, facts, nowMs);
}
