/**
 * Interleaved A/B of one Envoy `Check` allow, bytes in to bytes out
 * (`createEnvoyCheck`: decode, authorize, encode), for a `tenant_operator`
 * token of the bundled policies under two `policySet.upstream` choices:
 *
 * - A, "scopes forwarded": every identity field as a header, scopes included,
 *   and scopes in the metadata: the answer every allow carried before the
 *   policy set could choose (same fields, same bytes);
 * - B, the default: no scope list, role in the metadata.
 *
 * Rounds alternate which variant runs first; each batch is timed in CPU time
 * (`process.cpuUsage`, user + system) per call, and each round gives one B/A
 * ratio, so the machine's drift between rounds cancels out.
 *
 * Run: `npm run build && node --expose-gc dist/bench/check-upstream-ab.js [rounds] [calls per batch]`.
 */
import fs from "node:fs";
import path from "node:path";
import { DEFAULT_UPSTREAM_HEADER_NAMES } from "../src/policy/upstream.js";
import { createEnvoyCheck } from "../src/transport/envoy.js";
import { settledNow } from "../src/service/maybe-promise.js";
import { buildTrustedProxyMatcher } from "../src/transport/trusted-proxies.js";
import { generateToken } from "../src/token/index.js";
import { loadCheckCodec } from "./envoy-check.js";
import { BUNDLED_POLICY_DIR, loadPolicyOrThrow, tempDir, tokenRecord } from "./fixtures.js";
import { benchAuthorizer } from "./in-process.js";
import { median } from "./stats.js";

const rounds = Number(process.argv[2] ?? 21);
const calls = Number(process.argv[3] ?? 20_000);

// every field as a header under its default name, scopes in the metadata too
const SCOPES_FORWARDED = {
  headers: { ...DEFAULT_UPSTREAM_HEADER_NAMES },
  metadata: ["tokenId", "tenant", "workspace", "environment", "scopes"],
};

function policyWithUpstream(upstream: unknown): string {
  const dir = tempDir("check-upstream-ab");
  for (const name of fs.readdirSync(BUNDLED_POLICY_DIR)) {
    if (!name.endsWith(".json")) continue;
    fs.copyFileSync(path.join(BUNDLED_POLICY_DIR, name), path.join(dir, name));
  }
  const file = path.join(dir, "policy-set.json");
  const set = JSON.parse(fs.readFileSync(file, "utf8"));
  set.policySet.upstream = upstream;
  fs.writeFileSync(file, JSON.stringify(set));
  return dir;
}

const live = generateToken("sk_live_");
const tokens = new Map([[live, tokenRecord()]]);
const codec = loadCheckCodec();
const request = codec.encode({
  method: "GET",
  path: "/api/payouts/po_123?page=2",
  host: "api.example.com",
  headers: { authorization: `Bearer ${live}`, "user-agent": "bench/1.0", accept: "application/json", "x-request-id": "bench-1" },
  sourceIp: "203.0.113.10",
});

const dirA = policyWithUpstream(SCOPES_FORWARDED);
const variants = [
  { name: "A scopes forwarded", dir: dirA },
  { name: "B default", dir: BUNDLED_POLICY_DIR },
].map(({ name, dir }) => {
  const policy = loadPolicyOrThrow(dir);
  const authorize = benchAuthorizer(policy, tokens);
  const envoyCheck = createEnvoyCheck({ authorize, trustedProxies: buildTrustedProxyMatcher([]) });
  const check = (bytes: Buffer) => settledNow(envoyCheck(bytes));
  const answer = check(request);
  // INVARIANT: the 5-byte gRPC prefix comes first; the rest is the CheckResponse message.
  if (codec.statusCode(answer.subarray(5)) !== 0) throw new Error(`${name}: Check did not allow`);
  return { name, check, answerBytes: answer.length - 5, cpuUsPerCall: [] as number[] };
});
fs.rmSync(dirA, { recursive: true, force: true });

const gc = (globalThis as { gc?: () => void }).gc ?? (() => undefined);
for (const variant of variants) for (let i = 0; i < calls; i++) variant.check(request); // warm-up
const ratios: number[] = [];
for (let round = 0; round < rounds; round++) {
  const order = round % 2 === 0 ? variants : [...variants].reverse();
  for (const variant of order) {
    gc();
    const start = process.cpuUsage();
    let bytes = 0;
    for (let i = 0; i < calls; i++) bytes += variant.check(request).length;
    const used = process.cpuUsage(start);
    if (bytes === 0) throw new Error("no bytes");
    variant.cpuUsPerCall.push((used.user + used.system) / calls);
  }
  ratios.push(variants[1]!.cpuUsPerCall[round]! / variants[0]!.cpuUsPerCall[round]!);
}

const fmt = (n: number) => n.toFixed(2);
for (const v of variants) {
  const sorted = [...v.cpuUsPerCall].sort((a, b) => a - b);
  console.log(`${v.name}: answer ${v.answerBytes} bytes; CPU per Check median ${fmt(median(sorted))} µs [${fmt(sorted[0]!)} – ${fmt(sorted[sorted.length - 1]!)}] over ${rounds} rounds of ${calls}`);
}
const sortedRatios = [...ratios].sort((a, b) => a - b);
console.log(`B/A per round: median ${median(sortedRatios).toFixed(3)} [${sortedRatios[0]!.toFixed(3)} – ${sortedRatios[sortedRatios.length - 1]!.toFixed(3)}]`);
