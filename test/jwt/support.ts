/** Fixtures for the JWT tests: the bundled policy set with a `tokenExchange` section, and an in-memory key store. */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { SigningKeyStore, StoredSigningKey } from "../../src/jwt/signing-key-store.js";
import type { TokenExchangeSpec } from "../../src/policy/types.js";
import { EXAMPLE_POLICY_DIR } from "../support/fixtures.js";

export const ISSUER = "https://api.example.com";
export const AUDIENCE = "https://api.example.com/v1";

/** A copy of the bundled policy folder whose policy set exchanges tokens; `null` leaves the section out. Removed by the returned `remove`. */
export function jwtPolicyDir(exchange: Partial<TokenExchangeSpec> | null = {}): { dir: string; remove(): void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-jwt-policy-"));
  fs.cpSync(EXAMPLE_POLICY_DIR, dir, { recursive: true });
  if (exchange !== null) {
    const file = path.join(dir, "policy-set.json");
    const value = JSON.parse(fs.readFileSync(file, "utf8"));
    value.policySet.tokenExchange = { issuer: ISSUER, audience: AUDIENCE, ...exchange };
    fs.writeFileSync(file, JSON.stringify(value, null, 2));
  }
  return { dir, remove: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** A {@link SigningKeyStore} in memory: the interface's reference behaviour, for tests that need no file. */
export function memorySigningKeyStore(): SigningKeyStore & { keys: StoredSigningKey[] } {
  const keys: StoredSigningKey[] = [];
  return {
    keys,
    listKeys: () => [...keys].sort((a, b) => a.createdAtMs - b.createdAtMs || (a.kid < b.kid ? -1 : 1)),
    addKey: (key) => void keys.push(key),
    retireKey: (kid, atMs) => {
      const i = keys.findIndex((key) => key.kid === kid && key.retiredAtMs === null);
      if (i !== -1) keys[i] = { ...keys[i]!, retiredAtMs: atMs };
    },
  };
}
