/** Checks a token's own controls, as every creation and update does. */
import type { TokenControls } from "../engine/types.js";
import { compileControls } from "../policy/controls.js";
import { validateControlsShape } from "../policy/schema.js";

/**
 * Checks a token's controls: the policy schema's `tokenControls` shape, then
 * every value (CIDRs without host bits, fingerprints, time zones, windows).
 * Returns one message naming every problem with its pointer, or `null`.
 */
export function checkTokenControls(controls: unknown): string | null {
  const shape = validateControlsShape(controls);
  const problems = shape.length > 0 ? shape : (() => {
    const compiled = compileControls(controls as TokenControls, "token");
    return compiled.ok ? [] : compiled.errors;
  })();
  if (problems.length === 0) return null;
  return problems
    .map((p) => `controls${p.pointer === "" ? "" : ` ${p.pointer}`}: ${p.message}${p.hint === undefined ? "" : ` (${p.hint})`}`)
    .join("; ");
}
