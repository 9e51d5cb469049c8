/**
 * Reading the JSON columns of a stored token or audit row, the same way for
 * every store. A damaged column never throws on the request path and never
 * widens what a token may do: it fails closed.
 */
import type { TokenControls } from "../engine/types.js";

/**
 * Reads the scopes column. Damaged JSON fails closed: `[]` narrows the token to
 * nothing rather than widening it to the whole role (which `null` would mean).
 */
export function parseScopes(text: string | null): readonly string[] | null {
  if (text === null) return null;
  try {
    const value: unknown = JSON.parse(text);
    if (Array.isArray(value) && value.every((scope) => typeof scope === "string")) return value as string[];
  } catch {
    // Fall through to the fail-closed answer.
  }
  return [];
}

const NO_CONTROLS: TokenControls = Object.freeze({});

/**
 * Reads the controls column. Damaged JSON fails closed: an empty allowlist,
 * which the engine cannot compile, so every request of the token is answered
 * `unavailable` (and logged) instead of passing without its controls.
 */
export function parseControls(text: string | null): TokenControls {
  // Most tokens carry none: one shared frozen object instead of a parse and an object per look-up.
  if (text === null || text === "{}") return NO_CONTROLS;
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value === "object" && value !== null && !Array.isArray(value)) return value as TokenControls;
  } catch {
    // Fall through to the fail-closed answer.
  }
  return { ipAllowlist: [] };
}

/** Reads an audit row's data; an unreadable payload is shown as empty rather than hiding the row. */
export function parseObject(text: string): Readonly<Record<string, unknown>> {
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value === "object" && value !== null && !Array.isArray(value)) return value as Record<string, unknown>;
  } catch {
    // Fall through to the empty payload.
  }
  return {};
}
