/** An authorizer with no policy set loaded: every decision is the fail-closed `unavailable`. */
import { createAuthorizer, type Authorizer } from "../../src/service/authorize.js";

export function noPolicyAuthorizer(): Authorizer {
  return createAuthorizer({
    policy: () => null,
    tokens: { find: () => undefined },
    tenantState: { tenantSuspended: () => false, workspaceRestricted: () => false },
    now: Date.now,
    onError: () => undefined,
  } as unknown as Parameters<typeof createAuthorizer>[0]);
}
