/**
 * JWT bearer credentials against the opaque token, in process, through the
 * authorizer (engine, look-ups and rendering; no transport): CPU time per
 * request for
 *
 * - the opaque token's allow (token cache hit),
 * - a repeated JWT's allow (verified-JWT cache hit, parent cache hit),
 * - a first-seen JWT's allow (Ed25519 signature check with node:crypto, then the same),
 *
 * and the exchange itself (judge, rate limit, sign). CPU time is
 * `process.cpuUsage()` (user + system, every thread of this process) around a
 * batch, divided by the batch size. Opaque and repeated JWT batches alternate
 * for `ROUNDS` rounds, so both see the same noise; the ratio is per round, the
 * figure its median. Run: `npm run build && node --expose-gc dist/bench/jwt.js`.
 */
import { cpSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { createJwtCredentials } from "../src/jwt/jwt-credentials.js";
import { openKeyRing } from "../src/jwt/key-ring.js";
import type { SigningKeyStore, StoredSigningKey } from "../src/jwt/signing-key-store.js";
import { createTokenExchange } from "../src/jwt/token-exchange.js";
import { createMemoryQuotaCounter } from "../src/quota/memory-quota-counter.js";
import { createAuthorizer, type AuthorizeResult } from "../src/service/authorize.js";
import { settledNow } from "../src/service/maybe-promise.js";
import { createTokenCache } from "../src/service/token-cache.js";
import { generateToken } from "../src/token/index.js";
import { BUNDLED_POLICY_DIR, input, loadPolicyOrThrow, tempDir, tokenRecord } from "./fixtures.js";
import { percentile } from "./stats.js";

const ROUNDS = 9;
const BATCH = 50_000;
const FIRST_SEEN = 3_000;

async function main(): Promise<void> {
  const dir = tempDir("jwt-policy");
  cpSync(BUNDLED_POLICY_DIR, dir, { recursive: true });
  const file = path.join(dir, "policy-set.json");
  const value = JSON.parse(readFileSync(file, "utf8"));
  value.policySet.tokenExchange = { issuer: "https://api.example.com", audience: "https://api.example.com/v1" };
  writeFileSync(file, JSON.stringify(value));
  const policy = loadPolicyOrThrow(dir);
  rmSync(dir, { recursive: true, force: true });

  const keys: StoredSigningKey[] = [];
  const store: SigningKeyStore = { listKeys: () => keys, addKey: (key) => void keys.push(key), retireKey: () => undefined };
  // why: the wall clock, not a pinned one: JWTs are signed now and judged now
  const now = Date.now;
  const ring = await openKeyRing({ store, secret: randomBytes(32), now, refreshEveryMs: 0 });
  const opaque = generateToken("sk_live_");
  const record = tokenRecord({ createdAtMs: now() - 86_400_000 });
  const tokens = createTokenCache({ find: (token) => (token === opaque ? record : undefined) });
  const tokensById = createTokenCache({ find: (id) => (id === record.id ? record : undefined) });
  const jwt = createJwtCredentials({ ring, tokensById });
  const tenantState = { tenantSuspended: () => false, workspaceRestricted: () => false as const };
  const onError = (error: unknown) => {
    throw error;
  };
  const authorize = createAuthorizer({ policy: () => policy, tokens, tenantState, now, onError, jwt });
  // why: a quota large enough that no exchange is refused while the bench runs
  const exchange = createTokenExchange({ policy: () => ({ ...policy, tokenExchange: { ...policy.tokenExchange!, quota: { ...policy.tokenExchange!.quota, limitPerMinute: 1e9 } } }), tokens, tenantState, ring, quota: createMemoryQuotaCounter(), now, onError });

  const exchangeInput = { ...input({ method: "POST", path: "/v1/auth/exchange", token: opaque }) };
  const exchangeOnce = async (): Promise<string> => {
    const outcome = await exchange.exchange(exchangeInput, {});
    if (!outcome.ok) throw new Error(`exchange refused: ${outcome.decision.message}`);
    return outcome.accessToken;
  };
  const repeated = await exchangeOnce();
  const opaqueInput = input({ token: opaque });
  const jwtInput = input({ token: repeated });
  const check = (result: AuthorizeResult): number => {
    if (!result.decision.allowed) throw new Error(`denied: ${result.decision.code} ${result.decision.message}`);
    return result.decision.httpStatus;
  };
  check(await authorize(jwtInput));

  const cpuPerCall = (run: () => number, calls: number): number => {
    (globalThis as { gc?: () => void }).gc?.();
    let sink = 0;
    const start = process.cpuUsage();
    for (let i = 0; i < calls; i++) sink += run();
    const used = process.cpuUsage(start);
    if (sink === 0) throw new Error("unreachable");
    return (used.user + used.system) / calls;
  };
  const opaqueCall = () => check(settledNow(authorize(opaqueInput)));
  const jwtCall = () => check(settledNow(authorize(jwtInput)));
  cpuPerCall(opaqueCall, BATCH);
  cpuPerCall(jwtCall, BATCH);

  const opaqueUs: number[] = [];
  const jwtUs: number[] = [];
  const ratios: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const o = cpuPerCall(opaqueCall, BATCH);
    const j = cpuPerCall(jwtCall, BATCH);
    opaqueUs.push(o);
    jwtUs.push(j);
    ratios.push(j / o);
  }

  // First sight: distinct JWTs, signed beforehand, each judged once (its signature verified).
  const fresh: string[] = [];
  for (let i = 0; i < FIRST_SEEN; i++) fresh.push(await exchangeOnce());
  (globalThis as { gc?: () => void }).gc?.();
  let start = process.cpuUsage();
  for (const token of fresh) check(await authorize(input({ token })));
  let used = process.cpuUsage(start);
  const firstUs = (used.user + used.system) / FIRST_SEEN;

  (globalThis as { gc?: () => void }).gc?.();
  start = process.cpuUsage();
  for (let i = 0; i < FIRST_SEEN; i++) await exchangeOnce();
  used = process.cpuUsage(start);
  const exchangeUs = (used.user + used.system) / FIRST_SEEN;
  ring.close();

  const median = (values: number[]) => percentile(values, 50);
  const rows: [string, string][] = [
    ["opaque token allow (cache hit)", `${median(opaqueUs).toFixed(2)} µs CPU/request`],
    ["repeated JWT allow (verified-JWT cache hit)", `${median(jwtUs).toFixed(2)} µs CPU/request`],
    ["repeated JWT / opaque (median of per-round ratios)", `${median(ratios).toFixed(3)}× (rounds: ${ratios.map((r) => r.toFixed(2)).join(" ")})`],
    ["first-seen JWT allow (Ed25519 verify, node:crypto)", `${firstUs.toFixed(1)} µs CPU/request (${FIRST_SEEN} JWTs)`],
    ["exchange (judge, rate limit, sign)", `${exchangeUs.toFixed(1)} µs CPU/exchange (${FIRST_SEEN} exchanges)`],
  ];
  process.stdout.write(`JWT bench, ${ROUNDS} rounds of ${BATCH} calls, node ${process.version}, JWT ${repeated.length} bytes\n`);
  for (const [name, figure] of rows) process.stdout.write(`${name.padEnd(54)} ${figure}\n`);
}

await main();
