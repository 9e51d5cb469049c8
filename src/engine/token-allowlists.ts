/**
 * Compiled IP allowlists of tokens, kept per record version: a token's list
 * is compiled once, however often its record is read from the store again
 * (a token-cache refresh, an eviction and a later miss), until the list
 * itself changes.
 *
 * A short list compiles within the decision that needs it. A long one (10,000
 * CIDRs take milliseconds) would stall every other decision on the event
 * loop, so the service compiles it first, in slices between which other
 * requests run ({@link allowlistCompileSteps}), and the decision then finds it
 * here. Pure memo, no I/O: the slicing itself belongs to the caller.
 */
import { LRUCache } from "lru-cache";
import { buildIpAllowlistMatcher, ipAllowlistCompileSteps, type Compiled } from "../policy/ip-allowlist-matcher.js";
import type { CompiledIpAllowlist } from "../policy/types.js";
import type { TokenRecord } from "./types.js";

/** Entries a decision may compile itself: about 0.2 ms at most on this machine's warm code. */
export const INLINE_COMPILE_ENTRIES = 1_000;

/** Entries per slice of a long compile: each slice holds up the event loop for about a tenth of a millisecond. */
export const COMPILE_SLICE_ENTRIES = 500;

interface Kept {
  readonly tokenId: string;
  readonly entries: readonly string[];
  readonly compiled: Compiled<CompiledIpAllowlist>;
}

// By the list object (a cached record keeps its list), then by token id with
// the list compared entry by entry (a record read again holds an equal list).
const byList = new WeakMap<readonly string[], Kept>();
const byTokenId = new LRUCache<string, Kept>({ max: 1_000 });

/** The token's compiled allowlist if this record version was compiled before; `undefined` otherwise. */
export function keptAllowlist(token: TokenRecord): Compiled<CompiledIpAllowlist> | undefined {
  const entries = token.controls.ipAllowlist;
  if (entries === undefined) return undefined;
  // why: records built by spreading another share its list; the compiled list names its token in decisions
  const known = byList.get(entries);
  if (known !== undefined && known.tokenId === token.id) return known.compiled;
  const kept = byTokenId.get(token.id);
  if (kept === undefined || !sameEntries(kept.entries, entries)) return undefined;
  byList.set(entries, kept);
  return kept.compiled;
}

/** Whether deciding for `token` would compile a long allowlist on the spot: the caller should run {@link allowlistCompileSteps} first. */
export function needsSlicedCompile(token: TokenRecord): boolean {
  const entries = token.controls.ipAllowlist;
  return entries !== undefined && entries.length > INLINE_COMPILE_ENTRIES && keptAllowlist(token) === undefined;
}

/** The token's allowlist compiled in slices: yields between slices, then keeps the result for {@link tokenAllowlist}. */
export function* allowlistCompileSteps(token: TokenRecord): Generator<void, void, void> {
  const entries = token.controls.ipAllowlist;
  if (entries === undefined) return;
  const compiled = yield* ipAllowlistCompileSteps(entries, ruleIdOf(token), COMPILE_SLICE_ENTRIES);
  keep(token, entries, compiled);
}

/** The token's compiled allowlist: kept, or compiled now (and kept). */
export function tokenAllowlist(token: TokenRecord, entries: readonly string[]): Compiled<CompiledIpAllowlist> {
  const kept = token.controls.ipAllowlist === entries ? keptAllowlist(token) : undefined;
  if (kept !== undefined) return kept;
  const compiled = buildIpAllowlistMatcher(entries, ruleIdOf(token));
  keep(token, entries, compiled);
  return compiled;
}

function keep(token: TokenRecord, entries: readonly string[], compiled: Compiled<CompiledIpAllowlist>): void {
  const kept = { tokenId: token.id, entries, compiled };
  byList.set(entries, kept);
  byTokenId.set(token.id, kept);
}

/** The rule id decisions name for a token's own controls. */
export function ruleIdOf(token: TokenRecord): string {
  return `token:${token.id}`;
}

function sameEntries(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
