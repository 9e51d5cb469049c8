/**
 * A stand-in token record for asking "what may a role at a key level do":
 * `policy diff` and the explorer's matrix judge it with the engine's own
 * `holdsScope`, so both show what the server would decide.
 */
import type { TokenRecord } from "../engine/types.js";

/** A service token of `role`, capped by `keyLevel` (`null`: no cap), with no explicit scopes or controls. */
export function roleProbeToken(role: string, keyLevel: string | null): TokenRecord {
  return {
    id: "tok_probe",
    tenant: "",
    workspace: "",
    environment: "",
    type: "service",
    name: "probe",
    role,
    keyLevel,
    scopes: null,
    creatorRole: null,
    createdAtMs: 0,
    expiresAtMs: null,
    revokedAtMs: null,
    service: null,
    controls: {},
    lineageId: "tok_probe",
    successorId: null,
    overlapEndsAtMs: null,
  };
}
