/**
 * Local time per zone for conditional access. Zones are resolved with luxon
 * at load; luxon handles DST and historical offsets, never arithmetic by hand.
 *
 * Resolving a local time with luxon costs microseconds, too much for every
 * request, so each clock remembers the local minute of day and weekday of the
 * last UTC minute it was asked about. That is a pure cache: every zone in use
 * today has a whole-minute offset, so every instant of one UTC minute has the
 * same local minute, and the answer depends on `nowMs` alone.
 */
import { DateTime, FixedOffsetZone, IANAZone, type Zone } from "luxon";
import type { LocalTime, ZoneClock } from "./types.js";

const clocks = new Map<string, ZoneClock>();

/**
 * Returns the clock of an IANA zone name (`Europe/Berlin`) or `UTC`, shared
 * by every control that names the zone; `null` for an unknown zone.
 */
export function resolveZoneClock(name: string): ZoneClock | null {
  const cached = clocks.get(name);
  if (cached !== undefined) return cached;
  let zone: Zone;
  if (name === "UTC") zone = FixedOffsetZone.utcInstance;
  else if (IANAZone.isValidZone(name)) zone = IANAZone.create(name);
  else return null;
  const clock = createZoneClock(name, zone);
  clocks.set(name, clock);
  return clock;
}

function createZoneClock(name: string, zone: Zone): ZoneClock {
  let cachedMinute = Number.NaN;
  let cached: LocalTime = { minuteOfDay: 0, weekday: 1 };
  return Object.freeze({
    zone: name,
    at(nowMs: number): LocalTime {
      const minute = Math.floor(nowMs / 60_000);
      if (minute !== cachedMinute) {
        const local = DateTime.fromMillis(minute * 60_000, { zone });
        cached = Object.freeze({ minuteOfDay: local.hour * 60 + local.minute, weekday: local.weekday });
        cachedMinute = minute;
      }
      return cached;
    },
  });
}
