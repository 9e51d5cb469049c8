/**
 * Durations as policy files and the CLI write them: a whole number and one
 * unit, `s`, `m`, `h`, `d` or `w` (`90d`, `12h`, `0s`).
 */

const DURATION = /^(\d{1,9})(s|m|h|d|w)$/;
const UNIT_MS: ReadonlyMap<string, number> = new Map([
  ["s", 1_000],
  ["m", 60_000],
  ["h", 3_600_000],
  ["d", 86_400_000],
  ["w", 604_800_000],
]);

/** Parses a duration into milliseconds, zero included; `null` when malformed. */
export function parseDuration(value: string): number | null {
  const match = DURATION.exec(value.trim());
  if (match === null) return null;
  const ms = Number(match[1]) * UNIT_MS.get(match[2]!)!;
  return Number.isSafeInteger(ms) ? ms : null;
}
