import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { resolveSecret } from "../../src/store/resolve-secret.js";
import { storeError } from "../support/store-error.js";

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-"));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

const NO_ENV: NodeJS.ProcessEnv = {};

describe("resolveSecret from the secret file", () => {
  it("creates secret.key with mode 0600 holding 32 random bytes in hex on first run", () => {
    const secret = resolveSecret(dir, NO_ENV);
    const file = path.join(dir, "secret.key");
    expect(secret).toHaveLength(32);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(fs.readFileSync(file, "utf8").trim()).toBe(secret.toString("hex"));
    // No temporary file is left behind.
    expect(fs.readdirSync(dir)).toEqual(["secret.key"]);
  });

  it("reuses the existing file on later runs", () => {
    const first = resolveSecret(dir, NO_ENV);
    expect(resolveSecret(dir, NO_ENV).equals(first)).toBe(true);
  });

  it.each([
    ["group-readable", 0o640],
    ["world-readable", 0o644],
    ["group-writable only", 0o620],
  ])("refuses a %s file and suggests chmod 600", (_name, mode) => {
    resolveSecret(dir, NO_ENV);
    fs.chmodSync(path.join(dir, "secret.key"), mode);
    const error = storeError(() => resolveSecret(dir, NO_ENV));
    expect(error.kind).toBe("secret");
    expect(error.message).toContain("chmod 600");
    expect(error.message).toContain(path.join(dir, "secret.key"));
  });

  it.each([
    ["too short", "ab".repeat(16)],
    ["too long", "ab".repeat(33)],
    ["not hex", "zz".repeat(32)],
    ["empty", ""],
  ])("refuses a file whose content is %s", (_name, content) => {
    fs.writeFileSync(path.join(dir, "secret.key"), content, { mode: 0o600 });
    const error = storeError(() => resolveSecret(dir, NO_ENV));
    expect(error.kind).toBe("secret");
    expect(error.message).toMatch(/64 hex characters/);
  });

  it("reports an unwritable folder as unwritable", () => {
    const file = path.join(dir, "plain-file");
    fs.writeFileSync(file, "x");
    const error = storeError(() => resolveSecret(path.join(file, "data"), NO_ENV));
    expect(error.kind).toBe("unwritable");
  });
});

describe("resolveSecret from PORTCULLIS_TOKEN_SECRET", () => {
  const bytes = randomBytes(32);
  it.each([
    ["hex", bytes.toString("hex")],
    ["upper-case hex", bytes.toString("hex").toUpperCase()],
    ["base64", bytes.toString("base64")],
    ["base64url", bytes.toString("base64url")],
    ["hex with a trailing newline", bytes.toString("hex") + "\n"],
  ])("accepts %s and creates no file", (_name, value) => {
    const secret = resolveSecret(dir, { PORTCULLIS_TOKEN_SECRET: value });
    expect(secret.equals(bytes)).toBe(true);
    expect(fs.existsSync(path.join(dir, "secret.key"))).toBe(false);
  });

  it("accepts a secret longer than 32 bytes", () => {
    const long = randomBytes(64);
    expect(resolveSecret(dir, { PORTCULLIS_TOKEN_SECRET: long.toString("base64") }).equals(long)).toBe(true);
  });

  it.each([
    ["16 bytes of hex", randomBytes(16).toString("hex"), /at least 32 bytes, got 16/],
    ["31 bytes of base64", randomBytes(31).toString("base64"), /at least 32 bytes, got 31/],
    ["an empty value", "", /at least 32 bytes|hex or base64/],
    ["characters outside hex and base64", "not a secret! ".repeat(5), /hex or base64/],
  ])("refuses %s", (_name, value, message) => {
    const error = storeError(() => resolveSecret(dir, { PORTCULLIS_TOKEN_SECRET: value }));
    expect(error.kind).toBe("secret");
    expect(error.message).toMatch(message);
    expect(error.message).toContain("PORTCULLIS_TOKEN_SECRET");
  });
});
