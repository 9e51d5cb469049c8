/** The `workspace_restricted` stage (HTTP 423). */
import type { CompiledPolicySet } from "../policy/types.js";
import type { PreparedRequest } from "./request.js";
import type { StageResult, TokenRecord } from "./types.js";

/**
 * While the token's workspace is restricted (`portcullis workspaces
 * restrict`), refuses protected operations: every write, or exactly the
 * policy set's `workspaceRestriction.protect` list when it has one. Other
 * operations pass.
 */
export function checkWorkspace(
  request: PreparedRequest,
  token: TokenRecord,
  policy: CompiledPolicySet,
  facts: { readonly workspaceRestricted: boolean },
): StageResult {
  if (!facts.workspaceRestricted) return { ok: true };
  const protect = policy.workspaceRestriction.protect;
  const isProtected = protect === null ? request.isWrite : protect.match(request.method, request.target.segments);
  if (!isProtected) return { ok: true };
  return {
    ok: false,
    denial: {
      reason: "restricted",
      message: `workspace \`${token.tenant}/${token.workspace}\` is temporarily restricted: \`${request.method} ${request.target.path}\` is not allowed`,
      ruleId: "workspace-restriction",
      details: { tenant: token.tenant, workspace: token.workspace },
    },
  };
}
