/**
 * Exchange and verification in process, with a pinned clock: the exchange is
 * judged like a request of its token, and a JWT is accepted only with our
 * signature, issuer, audience and times, and only while its token is.
 */
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { SignJWT, decodeJwt, decodeProtectedHeader } from "jose";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { TokenRecord } from "../../src/engine/types.js";
import { createJwtCredentials, type JwtCredentials } from "../../src/jwt/jwt-credentials.js";
import { openKeyRing, RETIRED_KEY_VERIFIES_MS, rotateSigningKey, type KeyRing } from "../../src/jwt/key-ring.js";
import { createTokenExchange, type ExchangeOutcome, type ExchangeRequest, type TokenExchange } from "../../src/jwt/token-exchange.js";
import { loadPolicySet } from "../../src/policy/load.js";
import type { CompiledPolicySet } from "../../src/policy/types.js";
import { createMemoryQuotaCounter } from "../../src/quota/memory-quota-counter.js";
import { createAuthorizer, type AuthorizeResult, type Authorizer } from "../../src/service/authorize.js";
import { isPromise } from "../../src/service/maybe-promise.js";
import { createTokenCache } from "../../src/service/token-cache.js";
import { makeToken, NOW_MS, request } from "../support/fixtures.js";
import { AUDIENCE, ISSUER, jwtPolicyDir, memorySigningKeyStore } from "./support.js";

const secret = randomBytes(32);
let policy: CompiledPolicySet;
let plainPolicy: CompiledPolicySet;
let clock = NOW_MS;
// lru-cache treats an entry stored at time 0 as never stale: the monotonic clock starts later
let mono = 1_000_000;
const byToken = new Map<string, TokenRecord>();
const byId = new Map<string, TokenRecord>();
const suspended = new Set<string>();
let keyStore: ReturnType<typeof memorySigningKeyStore>;
let ring: KeyRing;
let jwt: JwtCredentials;
let authorize: Authorizer;
let exchange: TokenExchange;
let current: () => CompiledPolicySet;

function store(overrides: Partial<TokenRecord> = {}, prefix = "sk_live_"): { token: string; record: TokenRecord } {
  const made = makeToken(overrides, prefix);
  byToken.set(made.token, made.record);
  byId.set(made.record.id, made.record);
  return made;
}

/** Replaces a stored record, as a revocation or an update in another process would. */
function restore(token: string, record: TokenRecord): void {
  byToken.set(token, record);
  byId.set(record.id, record);
}

function exchangeRequest(token: string, fields: Parameters<typeof request>[0] = {}): ReturnType<typeof request> {
  return request({ method: "POST", path: "/v1/auth/exchange", token, ...fields });
}

async function exchanged(token: string, asked: ExchangeRequest = {}, fields: Parameters<typeof request>[0] = {}): Promise<string> {
  const outcome = await exchange.exchange(exchangeRequest(token, fields), asked);
  if (!outcome.ok) throw new Error(`exchange refused: ${outcome.decision.code} ${outcome.decision.message}`);
  return outcome.accessToken;
}

async function judge(bearer: string, fields: Parameters<typeof request>[0] = {}): Promise<AuthorizeResult> {
  return authorize(request({ token: bearer, ...fields }));
}

/** A JWT signed by `key` (our ring's by default) with our claims, overridden by `claims` and `header`. */
async function forge(claims: Record<string, unknown>, header: Record<string, unknown> = {}, key = ring.signingKey()!.privateKey, kid = ring.signingKey()!.kid): Promise<string> {
  const nowSeconds = Math.floor(clock / 1_000);
  return new SignJWT({ iss: ISSUER, aud: AUDIENCE, sub: byToken.get(operator)!.id, tenant: "acme", workspace: "main", environment: "production", scope: "payouts:read", iat: nowSeconds, nbf: nowSeconds, exp: nowSeconds + 600, jti: "j1", ...claims })
    .setProtectedHeader({ alg: "EdDSA", kid, typ: "at+jwt", ...header })
    .sign(key);
}

function b64(value: object): string {
  return Buffer.from(JSON.stringify(value)).toString("base64url");
}

let operator: string;

beforeAll(async () => {
  const folder = jwtPolicyDir();
  const loaded = loadPolicySet(folder.dir);
  folder.remove();
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.errors));
  policy = loaded.policy;
  const plain = jwtPolicyDir(null);
  const loadedPlain = loadPolicySet(plain.dir);
  plain.remove();
  if (!loadedPlain.ok) throw new Error(JSON.stringify(loadedPlain.errors));
  plainPolicy = loadedPlain.policy;
});

beforeEach(async () => {
  clock = NOW_MS;
  mono = 1_000_000;
  byToken.clear();
  byId.clear();
  suspended.clear();
  current = () => policy;
  keyStore = memorySigningKeyStore();
  ring = await openKeyRing({ store: keyStore, secret, now: () => clock, refreshEveryMs: 0 });
  const tokens = createTokenCache({ find: (token) => byToken.get(token) }, { clockMs: () => mono });
  const tokensById = createTokenCache({ find: (id) => byId.get(id) }, { clockMs: () => mono });
  jwt = createJwtCredentials({ ring, tokensById });
  const tenantState = { tenantSuspended: (tenant: string) => suspended.has(tenant), workspaceRestricted: () => false as const };
  const onError = (error: unknown) => {
    throw error;
  };
  authorize = createAuthorizer({ policy: () => current(), tokens, tenantState, now: () => clock, onError, jwt });
  exchange = createTokenExchange({ policy: () => current(), tokens, tenantState, ring, quota: createMemoryQuotaCounter(), now: () => clock, onError });
  operator = store().token;
});

afterAll(() => ring?.close());

describe("exchange", () => {
  it("answers a JWT of 15 minutes carrying the token, its tenant, workspace, environment and effective scopes", async () => {
    const outcome = await exchange.exchange(exchangeRequest(operator), {});
    expect(outcome).toMatchObject({ ok: true, expiresIn: 900, tokenType: "Bearer" });
    const accessToken = (outcome as Extract<ExchangeOutcome, { ok: true }>).accessToken;
    expect(decodeProtectedHeader(accessToken)).toEqual({ alg: "EdDSA", kid: ring.signingKey()!.kid, typ: "at+jwt" });
    const claims = decodeJwt(accessToken);
    const record = byToken.get(operator)!;
    expect(claims).toMatchObject({ iss: ISSUER, aud: AUDIENCE, sub: record.id, tenant: "acme", workspace: "main", environment: "production" });
    expect(claims.exp! - claims.iat!).toBe(900);
    expect(claims.iat).toBe(Math.floor(NOW_MS / 1_000));
    expect(typeof claims.jti).toBe("string");
    expect((claims.scope as string).split(" ")).toContain("payouts:write");
  });

  it("narrows the scopes and the lifetime when asked", async () => {
    const accessToken = await exchanged(operator, { scopes: ["payouts:read"], lifetimeSeconds: 60 });
    const claims = decodeJwt(accessToken);
    expect(claims.scope).toBe("payouts:read");
    expect(claims.exp! - claims.iat!).toBe(60);
    expect((await judge(accessToken)).decision.code).toBe("ok");
    const write = (await judge(accessToken, { method: "POST" })).decision;
    expect(write).toMatchObject({ code: "scope_denied", httpStatus: 403 });
  });

  it.each([
    ["a scope the token does not hold", { scopes: ["api_tokens:write"] }, /does not hold scope/],
    ["a lifetime beyond the policy set's maximum", { lifetimeSeconds: 901 }, /lifetime must be from 1 to 900 seconds/],
    ["a negative lifetime", { lifetimeSeconds: -1 }, /lifetime/],
  ])("refuses %s with invalid_request", async (_name, asked, message) => {
    const outcome = await exchange.exchange(exchangeRequest(operator), asked);
    expect(outcome.ok).toBe(false);
    if (!outcome.ok) {
      expect(outcome.decision).toMatchObject({ code: "invalid_request", httpStatus: 400 });
      expect(outcome.decision.message).toMatch(message);
    }
  });

  it("is judged as a request of the token: unauthenticated, suspended tenant, IP allowlist, mTLS, time conditions", async () => {
    const revoked = store({ revokedAtMs: NOW_MS - 1 }).token;
    const initech = store({ tenant: "initech" }).token;
    suspended.add("initech");
    const allowlisted = store({ controls: { ipAllowlist: ["198.51.100.0/24"] } }).token;
    const pinned = store({ controls: { mtls: { fingerprints: ["a".repeat(64)] } } }).token;
    const weekend = store({ controls: { conditionalAccess: { weekdays: ["sat", "sun"], timeZone: "UTC" } } }).token;
    const readOnly = store({ controls: { conditionalAccess: { readOnly: true } } }).token;
    const cases: [string, string, string][] = [
      ["unknown", "sk_live_" + "x".repeat(10), "unauthenticated"],
      ["revoked", revoked, "unauthenticated"],
      ["suspended", initech, "tenant_suspended"],
      ["allowlisted", allowlisted, "ip_allowlist_blocked"],
      ["pinned", pinned, "mtls_required"],
      ["weekend only", weekend, "conditional_access_blocked"],
      // a read-only token may exchange: the POST is not an API write, and its JWT stays read-only
      ["read-only", readOnly, "ok"],
    ];
    for (const [name, token, code] of cases) {
      const outcome = await exchange.exchange(exchangeRequest(token), {});
      expect(outcome.ok ? "ok" : outcome.decision.code, name).toBe(code);
    }
    const readOnlyJwt = await exchanged(readOnly);
    expect((await judge(readOnlyJwt, { method: "POST" })).decision.code).toBe("conditional_access_blocked");
  });

  it("never exchanges a JWT", async () => {
    const accessToken = await exchanged(operator);
    const outcome = await exchange.exchange(exchangeRequest(accessToken), {});
    expect(outcome.ok).toBe(false);
    if (!outcome.ok) expect(outcome.decision).toMatchObject({ code: "unauthenticated", message: "a jwt cannot be exchanged: exchange the api token it came from" });
  });

  it("is rate limited to 10 per minute per token, with Retry-After", async () => {
    const other = store().token;
    for (let i = 0; i < 10; i++) expect((await exchange.exchange(exchangeRequest(operator), {})).ok).toBe(true);
    const refused = await exchange.exchange(exchangeRequest(operator), {});
    expect(refused.ok).toBe(false);
    if (!refused.ok) {
      expect(refused.decision).toMatchObject({ code: "quota_exceeded", httpStatus: 429, ruleId: "token_exchange" });
      expect(refused.response.headers).toContainEqual(["retry-after", "60"]);
    }
    // per token: another token still exchanges, and the JWTs already issued still work
    expect((await exchange.exchange(exchangeRequest(other), {})).ok).toBe(true);
    clock += 60_000;
    expect((await exchange.exchange(exchangeRequest(operator), {})).ok).toBe(true);
  });

  it("is off without the policy section: no exchange, and JWTs are not credentials", async () => {
    const accessToken = await exchanged(operator);
    current = () => plainPolicy;
    const outcome = await exchange.exchange(exchangeRequest(operator), {});
    expect(outcome.ok ? "ok" : outcome.decision.code).toBe("unavailable");
    expect((await judge(accessToken)).decision).toMatchObject({ code: "unauthenticated", reason: "malformed" });
  });
});

describe("verification", () => {
  it("allows the JWT, and judges it again without a Promise", async () => {
    const accessToken = await exchanged(operator);
    const first = await judge(accessToken);
    expect(first.decision).toMatchObject({ allowed: true, code: "ok" });
    expect(first.decision.identity?.tokenId).toBe(byToken.get(operator)!.id);
    const again = authorize(request({ token: accessToken }));
    expect(isPromise(again)).toBe(false);
    expect((again as AuthorizeResult).decision.code).toBe("ok");
  });

  it("accepts a JWT until its exp plus the 30 s clock skew, and from its nbf minus the skew", async () => {
    const accessToken = await exchanged(operator);
    const exp = decodeJwt(accessToken).exp!;
    clock = exp * 1_000 + 29_000;
    expect((await judge(accessToken)).decision.code).toBe("ok");
    clock = exp * 1_000 + 30_000;
    expect((await judge(accessToken)).decision).toMatchObject({ code: "unauthenticated", reason: "expired" });
  });

  it.each<[string, () => Promise<string>, string, RegExp]>([
    ["an expired JWT", () => forge({ iat: Math.floor(NOW_MS / 1_000) - 1_000, nbf: Math.floor(NOW_MS / 1_000) - 1_000, exp: Math.floor(NOW_MS / 1_000) - 31 }), "expired", /expired/],
    ["a JWT not yet valid (nbf)", () => forge({ nbf: Math.floor(NOW_MS / 1_000) + 120 }), "jwt_not_yet_valid", /not valid yet/],
    ["a JWT issued in the future (iat)", () => forge({ iat: Math.floor(NOW_MS / 1_000) + 120 }), "jwt_not_yet_valid", /not valid yet/],
    ["a wrong audience", () => forge({ aud: "https://other.example.com" }), "jwt_invalid", /audience/],
    ["a wrong issuer", () => forge({ iss: "https://evil.example.com" }), "jwt_invalid", /issuer/],
    ["a JWT of another type", () => forge({}, { typ: "JWT" }), "jwt_invalid", /typ|malformed|missing or invalid/],
    ["a JWT without a subject", () => forge({ sub: undefined }), "jwt_invalid", /claims are not those of an exchanged token/],
    ["a key from another JWKS", () => forge({}, {}, generateKeyPairSync("ed25519").privateKey, "someone-elses-kid"), "jwt_invalid", /key this service does not trust/],
    ["another key claiming our key id", () => forge({}, {}, generateKeyPairSync("ed25519").privateKey), "jwt_invalid", /signature does not verify/],
    [
      "alg none",
      async () => `${b64({ alg: "none", typ: "at+jwt", kid: ring.signingKey()!.kid })}.${(await forge({})).split(".")[1]}.`,
      "jwt_invalid",
      /algorithm|malformed/,
    ],
    [
      "HS256 keyed with our public key",
      async () => {
        const kid = ring.signingKey()!.kid;
        const publicX = ring.jwks(clock).keys[0]!.x!;
        return new SignJWT({ iss: ISSUER, aud: AUDIENCE, sub: "tok_x", exp: Math.floor(clock / 1_000) + 60, iat: Math.floor(clock / 1_000), jti: "x" })
          .setProtectedHeader({ alg: "HS256", kid, typ: "at+jwt" })
          .sign(Buffer.from(publicX));
      },
      "jwt_invalid",
      /algorithm/,
    ],
  ])("refuses %s", async (_name, make, reason, message) => {
    const decision = (await judge(await make())).decision;
    expect(decision).toMatchObject({ code: "unauthenticated", httpStatus: 401, reason });
    expect(decision.message).toMatch(message);
  });

  it("refuses a tampered payload, also once the genuine JWT is cached", async () => {
    const accessToken = await exchanged(operator, { scopes: ["payouts:read"] });
    expect((await judge(accessToken)).decision.code).toBe("ok");
    const [header, payload, signature] = accessToken.split(".");
    const claims = JSON.parse(Buffer.from(payload!, "base64url").toString());
    const widened = `${header}.${b64({ ...claims, scope: "payouts:read payouts:write" })}.${signature}`;
    expect((await judge(widened, { method: "POST" })).decision).toMatchObject({ code: "unauthenticated", reason: "jwt_invalid" });
    const otherToken = `${header}.${b64({ ...claims, sub: "tok_someone_else" })}.${signature}`;
    expect((await judge(otherToken)).decision).toMatchObject({ code: "unauthenticated", reason: "jwt_invalid" });
  });

  it("stops a JWT when its token is revoked in another process, within the cache's 1 s", async () => {
    const accessToken = await exchanged(operator);
    expect((await judge(accessToken)).decision.code).toBe("ok");
    const record = byToken.get(operator)!;
    restore(operator, { ...record, revokedAtMs: clock });
    // another process revoked it: the cached parent holds for at most 1 s
    mono += 999;
    expect((await judge(accessToken)).decision.code).toBe("ok");
    mono += 2;
    expect((await judge(accessToken)).decision).toMatchObject({ code: "unauthenticated", reason: "revoked" });
  });

  it("applies its token's controls to every use: tenant suspension, IP allowlist, rotation out", async () => {
    const allowlisted = store({ controls: { ipAllowlist: ["198.51.100.0/24"] } });
    const accessToken = await exchanged(allowlisted.token, {}, { sourceIp: "198.51.100.7" });
    expect((await judge(accessToken, { sourceIp: "198.51.100.7" })).decision.code).toBe("ok");
    expect((await judge(accessToken, { sourceIp: "203.0.113.10" })).decision.code).toBe("ip_allowlist_blocked");
    suspended.add("acme");
    expect((await judge(accessToken, { sourceIp: "198.51.100.7" })).decision.code).toBe("tenant_suspended");
    suspended.clear();
    restore(allowlisted.token, { ...allowlisted.record, successorId: "tok_next", overlapEndsAtMs: clock + 1_000 });
    mono += 1_001;
    expect((await judge(accessToken, { sourceIp: "198.51.100.7" })).decision.warnings.map((w) => w.code)).toContain("token_rotating");
    clock += 1_000;
    expect((await judge(accessToken, { sourceIp: "198.51.100.7" })).decision).toMatchObject({ code: "unauthenticated", reason: "rotated" });
  });

  it("refuses a JWT of one environment on another's host", async () => {
    const sandbox = store({ environment: "sandbox" }, "sk_sandbox_").token;
    const accessToken = await exchanged(sandbox);
    expect(decodeJwt(accessToken).environment).toBe("sandbox");
    expect((await judge(accessToken, { host: "sandbox.api.example.com" })).decision.code).toBe("ok");
    expect((await judge(accessToken)).decision).toMatchObject({ code: "unauthenticated", reason: "wrong_environment" });
  });
});

describe("keys", () => {
  it("rotation: the new key signs, JWTs of the previous one verify until they expire, and it leaves the JWKS after", async () => {
    const before = await exchanged(operator);
    const oldKid = ring.signingKey()!.kid;
    clock += 60_000;
    await rotateSigningKey(keyStore, secret, clock);
    await ring.refresh();
    const newKid = ring.signingKey()!.kid;
    expect(newKid).not.toBe(oldKid);
    const after = await exchanged(operator);
    expect(decodeProtectedHeader(after).kid).toBe(newKid);
    expect(ring.jwks(clock).keys.map((key) => key.kid).sort()).toEqual([oldKid, newKid].sort());
    jwt.clear();
    expect((await judge(before)).decision.code).toBe("ok");
    expect((await judge(after)).decision.code).toBe("ok");
    // the old JWT expires 14 minutes after the rotation; its key verifies a little longer, then is gone
    clock += RETIRED_KEY_VERIFIES_MS;
    expect(ring.jwks(clock).keys.map((key) => key.kid)).toEqual([newKid]);
  });

  it("a JWT signed by a key this ring has not loaded yet is verified after a reload", async () => {
    const other = await openKeyRing({ store: keyStore, secret, now: () => clock, refreshEveryMs: 0 });
    await rotateSigningKey(keyStore, secret, clock);
    await other.refresh();
    const signedElsewhere = await forge({}, {}, other.signingKey()!.privateKey, other.signingKey()!.kid);
    other.close();
    expect((await judge(signedElsewhere)).decision.code).toBe("ok");
  });

  it("seals private keys with the server secret", async () => {
    const { unsealPrivateKey } = await import("../../src/jwt/sealed-key.js");
    const stored = keyStore.keys[0]!;
    expect(stored.sealedPrivateKey).not.toContain("PRIVATE KEY");
    expect(() => unsealPrivateKey(randomBytes(32), stored)).toThrow(/does not open with this server secret/);
    expect(() => unsealPrivateKey(secret, { ...stored, kid: "moved" })).toThrow(/does not open/);
    expect(unsealPrivateKey(secret, stored).asymmetricKeyType).toBe("ed25519");
  });
});
