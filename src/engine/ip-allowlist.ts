/** The `ip_allowlist_blocked` stage. */
import type { CompiledIpAllowlist } from "../policy/types.js";
import type { PreparedRequest } from "./request.js";
import type { StageResult } from "./types.js";

/**
 * Passes when no allowlist applies or the source address is on it. An unknown
 * source (the enforcement point sent none) fails every allowlist. Membership
 * is a walk over at most 32 or 128 address bits, whatever the list length.
 */
export function checkIpAllowlist(request: PreparedRequest, allowlist: CompiledIpAllowlist | null): StageResult {
  if (allowlist === null) return { ok: true };
  const address = request.sourceAddress;
  if (address === null) {
    return {
      ok: false,
      denial: {
        reason: "unknown_source_ip",
        message: "source ip is unknown and this token only accepts requests from listed addresses",
        ruleId: allowlist.ruleId,
        details: { source_ip: "" },
      },
    };
  }
  if (allowlist.contains(address)) return { ok: true };
  return {
    ok: false,
    denial: {
      reason: "not_allowed",
      message: `source ip \`${request.sourceIp}\` is not on this token's ip allowlist`,
      ruleId: allowlist.ruleId,
      details: { source_ip: request.sourceIp },
    },
  };
}
