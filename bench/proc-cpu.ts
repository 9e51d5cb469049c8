/**
 * CPU time and memory of another process, read from procfs (Linux only).
 *
 * `/proc/PID/stat` fields 14 and 15 (utime, stime) are the whole thread group's
 * CPU time in clock ticks, so libuv's thread pool and V8's GC threads count too.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

let ticksPerSecond: number | undefined;

/** `getconf CLK_TCK`, read once; 100 on every Linux this will meet. */
export function clockTicksPerSecond(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

/** User plus system CPU time the process has used so far, in microseconds. */
export function cpuMicros(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // The command name (field 2) may hold spaces and parentheses: count fields after the last `)`.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // fields[0] is field 3 (state), so utime (14) is fields[11] and stime (15) fields[12].
  const ticks = Number(fields[11]) + Number(fields[12]);
  return (ticks * 1e6) / clockTicksPerSecond();
}

/** A `Vm*` line of `/proc/PID/status` (e.g. `VmRSS`, `VmHWM` for peak RSS), in MiB. */
export function statusMiB(pid: number, field: "VmRSS" | "VmHWM"): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status);
  return match === null ? Number.NaN : Number(match[1]) / 1024;
}

/**
 * Time the hypervisor ran something else while this machine's CPUs wanted to
 * run (the `steal` column of `/proc/stat`), all CPUs together, in microseconds.
 */
export function stealMicros(): number {
  const cpu = /^cpu\s+(.*)$/m.exec(readFileSync("/proc/stat", "utf8"));
  const steal = Number(cpu?.[1]?.trim().split(/\s+/)[7]);
  return Number.isFinite(steal) ? (steal * 1e6) / clockTicksPerSecond() : Number.NaN;
}
