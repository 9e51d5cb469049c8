/**
 * The hand-written verifier (src/jwt/verify-jwt.ts) against jose's
 * `jwtVerify`, the library it replaces: on a table of hostile variants and on
 * random mutations of a genuine JWT, both accept exactly the same JWTs.
 */
import { sign as signBytes, generateKeyPairSync, randomBytes } from "node:crypto";
import fc from "fast-check";
import { errors, jwtVerify, SignJWT, type JWTHeaderParameters } from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import { JWT_CLOCK_SKEW_SECONDS, judgeClaims, readClaims } from "../../src/jwt/claims.js";
import { openKeyRing, type KeyRing } from "../../src/jwt/key-ring.js";
import { verifyJwt } from "../../src/jwt/verify-jwt.js";
import { compileTokenExchange } from "../../src/policy/compile.js";
import { isPromise } from "../../src/service/maybe-promise.js";
import { AUDIENCE, ISSUER, memorySigningKeyStore } from "./support.js";

const settings = compileTokenExchange({ issuer: ISSUER, audience: AUDIENCE })!;
// a whole second, so that jose's whole-second clock and ours agree at the boundaries
const NOW_MS = Date.UTC(2026, 10, 23, 10, 0, 0);
const NOW_S = NOW_MS / 1_000;
let ring: KeyRing;

async function ours(compact: string): Promise<boolean> {
  const verdict = verifyJwt(compact, ring, settings, NOW_MS);
  return (isPromise(verdict) ? await verdict : verdict).ok;
}

/** jose, then the same claim reading: what the verifier must agree with. */
async function reference(compact: string): Promise<boolean> {
  try {
    const { payload } = await jwtVerify(
      compact,
      async (header: JWTHeaderParameters) => {
        const key = typeof header.kid === "string" ? ring.verificationKey(header.kid, NOW_MS) : undefined;
        if (key === undefined) throw new errors.JWKSNoMatchingKey();
        return key;
      },
      { algorithms: ["EdDSA"], typ: "at+jwt", issuer: ISSUER, audience: AUDIENCE, clockTolerance: JWT_CLOCK_SKEW_SECONDS, currentDate: new Date(NOW_MS), requiredClaims: ["sub", "jti", "iat", "exp"] },
    );
    const claims = readClaims(payload);
    return claims !== null && judgeClaims(claims, settings, NOW_MS) === "ok";
  } catch {
    return false;
  }
}

function sign(claims: Record<string, unknown> = {}, header: Record<string, unknown> = {}, key = ring.signingKey()!.privateKey): Promise<string> {
  return new SignJWT({ iss: ISSUER, aud: AUDIENCE, sub: "tok_1", tenant: "acme", workspace: "main", environment: "production", scope: "payouts:read", iat: NOW_S, nbf: NOW_S, exp: NOW_S + 600, jti: "j", ...claims })
    .setProtectedHeader({ alg: "EdDSA", kid: ring.signingKey()!.kid, typ: "at+jwt", ...header })
    .sign(key);
}

/** Signed by our key over a header jose would refuse to write. */
function signedRaw(header: object, encodedPayload: string): string {
  const input = `${b64(header)}.${encodedPayload}`;
  return `${input}.${signBytes(null, Buffer.from(input), ring.signingKey()!.privateKey).toString("base64url")}`;
}

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");

beforeAll(async () => {
  ring = await openKeyRing({ store: memorySigningKeyStore(), secret: randomBytes(32), now: () => NOW_MS, refreshEveryMs: 0 });
  return () => ring.close();
});

describe("verify-jwt agrees with jose", () => {
  it("on hostile variants", async () => {
    const genuine = await sign();
    const [h, p, s] = genuine.split(".") as [string, string, string];
    const header = JSON.parse(Buffer.from(h, "base64url").toString());
    const variants: Record<string, string> = {
      genuine,
      "typ application/at+jwt": await sign({}, { typ: "application/at+jwt" }),
      "typ JWT": await sign({}, { typ: "JWT" }),
      "no typ": `${b64({ alg: "EdDSA", kid: header.kid })}.${p}.${s}`,
      "alg none": `${b64({ ...header, alg: "none" })}.${p}.`,
      "alg none with signature": `${b64({ ...header, alg: "none" })}.${p}.${s}`,
      "alg HS256": `${b64({ ...header, alg: "HS256" })}.${p}.${s}`,
      // jose also understands `b64` (RFC 7797) in `crit`; this verifier refuses every `crit`, since exchanged JWTs never carry one
      "crit header": signedRaw({ ...header, crit: ["x-unknown"], "x-unknown": 1 }, p),
      "no kid": `${b64({ alg: "EdDSA", typ: "at+jwt" })}.${p}.${s}`,
      "unknown kid": await sign({}, { kid: "nope" }),
      "foreign key": await sign({}, {}, generateKeyPairSync("ed25519").privateKey),
      "wrong issuer": await sign({ iss: "https://evil.example.com" }),
      "wrong audience": await sign({ aud: "https://other.example.com" }),
      "audience list with ours": await sign({ aud: ["https://other.example.com", AUDIENCE] }),
      expired: await sign({ exp: NOW_S - JWT_CLOCK_SKEW_SECONDS }),
      "expired within skew": await sign({ exp: NOW_S - JWT_CLOCK_SKEW_SECONDS + 1 }),
      "nbf beyond skew": await sign({ nbf: NOW_S + JWT_CLOCK_SKEW_SECONDS + 1 }),
      "nbf within skew": await sign({ nbf: NOW_S + JWT_CLOCK_SKEW_SECONDS }),
      "exp as string": await sign({ exp: String(NOW_S + 600) }),
      "no exp": await sign({ exp: undefined }),
      "payload not an object": `${h}.${b64([1, 2])}.${s}`,
      "tampered payload": `${h}.${b64({ ...JSON.parse(Buffer.from(p, "base64url").toString()), scope: "payouts:write" })}.${s}`,
      "truncated signature": `${h}.${p}.${s.slice(0, -4)}`,
      "padded parts": `${h}=.${p}.${s}`,
      "four parts": `${genuine}.${s}`,
      "two parts": `${h}.${p}`,
      "empty header": `.${p}.${s}`,
      "header not json": `${Buffer.from("{nope").toString("base64url")}.${p}.${s}`,
    };
    for (const [name, compact] of Object.entries(variants)) {
      expect(await ours(compact), name).toBe(await reference(compact));
    }
    expect(await ours(genuine)).toBe(true);
    expect(await ours(variants["tampered payload"]!)).toBe(false);
  });

  it("on random single-character changes of a genuine JWT", async () => {
    const genuine = await sign();
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.= ";
    await fc.assert(
      fc.asyncProperty(fc.nat({ max: genuine.length - 1 }), fc.constantFrom(...alphabet), async (at, char) => {
        const mutated = genuine.slice(0, at) + char + genuine.slice(at + 1);
        expect(await ours(mutated)).toBe(await reference(mutated));
      }),
      { numRuns: 300 },
    );
  });
});
