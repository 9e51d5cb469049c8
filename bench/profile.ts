/**
 * Summarises a V8 `.cpuprofile` (from `node --cpu-prof`): the functions with
 * the most self time, so a bench run can say where the server's CPU went.
 */
import { readFileSync } from "node:fs";

interface ProfileNode {
  readonly id: number;
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number };
}

interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

/** The top `limit` functions by self time, one line each: share, ms, function and where it lives. */
export function summariseProfile(file: string, limit: number): string {
  const profile = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfUs = new Map<string, number>();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const node = byId.get(id);
    const delta = profile.timeDeltas[i] ?? 0;
    if (node === undefined) return;
    const { functionName, url, lineNumber } = node.callFrame;
    const where = url === "" ? "" : ` ${url.replace(/^.*node_modules\//, "").replace(/^file:\/\/.*?\/(dist\/)/, "$1")}:${lineNumber + 1}`;
    const key = `${functionName || "(anonymous)"}${where}`;
    selfUs.set(key, (selfUs.get(key) ?? 0) + delta);
    total += delta;
  });
  const idle = selfUs.get("(idle)") ?? 0;
  const busy = total - idle;
  const line = ([key, us]: [string, number]) => `${((100 * us) / busy).toFixed(1).padStart(5)}%  ${(us / 1000).toFixed(0).padStart(6)} ms  ${key}`;
  const byArea = new Map<string, number>();
  for (const [key, us] of selfUs) if (key !== "(idle)") byArea.set(areaOf(key), (byArea.get(areaOf(key)) ?? 0) + us);
  return [
    "by area:",
    ...[...byArea.entries()].sort((a, b) => b[1] - a[1]).map(line),
    "by function:",
    ...[...selfUs.entries()].filter(([key]) => key !== "(idle)").sort((a, b) => b[1] - a[1]).slice(0, limit).map(line),
  ].join("\n");
}

/** Which library a profile entry belongs to, from its location. */
function areaOf(key: string): string {
  if (key.startsWith("(garbage collector)")) return "V8 garbage collector";
  if (key.startsWith("(program)")) return "V8 / native (program)";
  if (/ dist\/src\//.test(key)) return "portcullis (dist/src)";
  if (/ node:internal\/http2/.test(key)) return "node:http2";
  if (/ node:/.test(key)) return "node core (other)";
  const pkg = / (@[^/]+\/[^/]+|[^/ @][^/ ]*)\//.exec(key);
  if (pkg !== null) return pkg[1]!;
  return "native / builtins";
}
