/** The `tenant_suspended` stage: an administratively paused tenant's tokens do nothing. */
import type { StageResult, TokenRecord } from "./types.js";

/**
 * Denies every request of a suspended tenant's tokens. The suspension is read
 * from the store by the service (`portcullis tenants suspend`), so the stage
 * only reads the fact it was given. The operator's reason is not shown to the client.
 */
export function checkTenant(token: TokenRecord, facts: { readonly tenantSuspended: boolean }): StageResult {
  if (!facts.tenantSuspended) return { ok: true };
  return {
    ok: false,
    denial: {
      reason: "suspended",
      message: `tenant \`${token.tenant}\` is suspended`,
      ruleId: "tenant-suspension",
      details: { tenant: token.tenant },
    },
  };
}
