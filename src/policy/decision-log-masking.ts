/**
 * The policy set's `decisionLog` section with its defaults applied, compiled
 * once per revision: which parts of a request a decision log record may hold.
 */
import type { CompiledDecisionLogMasking, DecisionLogSpec } from "./types.js";

/**
 * Headers whose value never reaches a record, even when a policy set names
 * them under `headers`: they carry the credential or a session.
 */
export const ALWAYS_MASKED_HEADERS: ReadonlySet<string> = new Set(["authorization", "proxy-authorization", "cookie"]);

/** Applies the defaults: no headers, the query dropped. Names are lower-cased; a header named twice is masked. */
export function compileDecisionLogMasking(spec: DecisionLogSpec | undefined): CompiledDecisionLogMasking {
  const masked = new Set((spec?.maskHeaders ?? []).map((name) => name.toLowerCase()));
  const headers: string[] = [];
  for (const raw of spec?.headers ?? []) {
    const name = raw.toLowerCase();
    if (ALWAYS_MASKED_HEADERS.has(name)) masked.add(name);
    else if (!masked.has(name) && !headers.includes(name)) headers.push(name);
  }
  return Object.freeze({
    query: spec?.query ?? "drop",
    maskQueryParameters: new Set(spec?.maskQueryParameters ?? []),
    headers: Object.freeze(headers),
    maskHeaders: Object.freeze([...masked]),
  });
}
