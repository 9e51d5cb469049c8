/** The `workspace_restricted` stage (HTTP 423). */
import type { CompiledPolicySet } from "../policy/types.js";
import type { PreparedRequest } from "./request.js";
import type { StageResult, TokenRecord } from "./types.js";
import { restrictionModeOf, type WorkspaceRestrictionFact } from "./workspace-restriction-mode.js";

/**
 * While the token's workspace is restricted (`portcullis workspaces
 * restrict`), refuses what its mode covers: in mode `writes`, protected
 * operations (every write, or exactly the policy set's
 * `workspaceRestriction.protect` list when it has one); in mode `all`, every
 * operation. Other operations pass. The denial's details carry the mode.
 */
export function checkWorkspace(
  request: PreparedRequest,
  token: TokenRecord,
  policy: CompiledPolicySet,
  facts: { readonly workspaceRestricted: WorkspaceRestrictionFact },
): StageResult {
  const mode = restrictionModeOf(facts.workspaceRestricted);
  if (mode === null) return { ok: true };
  if (mode === "writes" && !isProtected(request, policy)) return { ok: true };
  const state = mode === "all" ? "frozen" : "temporarily restricted";
  return {
    ok: false,
    denial: {
      reason: "restricted",
      message: `workspace \`${token.tenant}/${token.workspace}\` is ${state}: \`${request.method} ${request.target.path}\` is not allowed`,
      ruleId: "workspace-restriction",
      details: { tenant: token.tenant, workspace: token.workspace, mode },
    },
  };
}

/** Whether a workspace restricted for writes refuses this request. */
function isProtected(request: PreparedRequest, policy: CompiledPolicySet): boolean {
  const protect = policy.workspaceRestriction.protect;
  return protect === null ? request.isWrite : protect.match(request.method, request.target.segments);
}
