/**
 * "Did you mean" hints from edit distance over a catalog: scopes, roles,
 * environments, property names and time zones.
 */
import { closest, distance } from "fastest-levenshtein";

/**
 * Returns a "did you mean" hint for the candidate closest to `word` by edit
 * distance, when it is within 2 edits or a third of the word's length; else
 * `undefined`. `show` renders the candidate, e.g. to add back a `!` or `:*`.
 */
export function suggest(
  word: string,
  candidates: Iterable<string>,
  show: (candidate: string) => string = (c) => c,
): string | undefined {
  const list = [...candidates];
  if (list.length === 0) return undefined;
  const best = closest(word, list);
  const d = distance(word, best);
  return d > 0 && d <= Math.max(2, Math.floor(word.length / 3))
    ? `did you mean \`${show(best)}\`?`
    : undefined;
}

let zoneNames: readonly string[] | undefined;

/**
 * A hint for an unknown time zone: the IANA zone it most likely means (case
 * ignored first, so `europe/paris` finds `Europe/Paris`), else a generic one.
 */
export function suggestTimeZone(zone: string): string {
  // why: the runtime's own list is the set luxon can resolve; read it once
  zoneNames ??= ["UTC", ...Intl.supportedValuesOf("timeZone")];
  const lower = zone.toLowerCase();
  const sameLetters = zoneNames.find((z) => z.toLowerCase() === lower);
  if (sameLetters !== undefined) return `did you mean \`${sameLetters}\`?`;
  return suggest(zone, zoneNames) ?? "use an iana zone such as `Europe/Berlin`, or `UTC`";
}
