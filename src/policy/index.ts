/**
 * The policy module: load a policy folder into a {@link CompiledPolicySet}, or
 * get back every error, placed and sorted.
 */
export type * from "./types.js";
export { PolicyLoadError, formatPolicyErrors, type PolicyError } from "./errors.js";
export { loadPolicySet, type LoadPolicySetResult } from "./load.js";
export {
  buildRouteMatcher,
  compilePolicySet,
  expandScopePatterns,
  type Located,
  type MergedPolicySet,
  type RevisionSource,
} from "./compile.js";
export { checkPathTemplate, crossCheckPolicySet, suggest } from "./crosscheck.js";
export { POLICY_SCHEMA, validatePolicyFile } from "./schema.js";
export { compileConditionalAccess, compileControls, compileMtls, normalizePin, type Compiled, type ControlError } from "./controls.js";
export { buildIpAllowlistMatcher, parseIpAddress, parseNetwork } from "./ip-allowlist-matcher.js";
export { buildPathPatternMatcher, checkPathPattern } from "./path-pattern-matcher.js";
export { resolveZoneClock } from "./zone-clock.js";
