/**
 * The modes a workspace restriction has (`portcullis workspaces restrict
 * --mode`): a leaf module shared by the engine, the store, the CLI and the
 * policy tests.
 */

/** Every mode, the default first. */
export const WORKSPACE_RESTRICTION_MODES = ["writes", "all"] as const;

/**
 * What a restricted workspace refuses:
 * - `writes`: its protected operations, every write or the policy set's `workspaceRestriction.protect` list;
 * - `all`: every operation, reads too (a frozen workspace).
 */
export type WorkspaceRestrictionMode = (typeof WORKSPACE_RESTRICTION_MODES)[number];

/**
 * A workspace's restriction as the engine is told it: `false` when it is not
 * restricted, else its mode. `true` means `writes`, the only behaviour before
 * modes existed, so callers and test files that say `true` keep their meaning.
 */
export type WorkspaceRestrictionFact = boolean | WorkspaceRestrictionMode;

/** Whether `value` names a mode. */
export function isWorkspaceRestrictionMode(value: unknown): value is WorkspaceRestrictionMode {
  return (WORKSPACE_RESTRICTION_MODES as readonly unknown[]).includes(value);
}

/** The mode of a restriction fact, or `null` when the workspace is not restricted. */
export function restrictionModeOf(fact: WorkspaceRestrictionFact): WorkspaceRestrictionMode | null {
  if (fact === false) return null;
  return fact === true ? "writes" : fact;
}
