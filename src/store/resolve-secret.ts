/**
 * Finds the server secret that keys token hashes. Losing or changing it makes
 * every stored token unknown, so it is created once, atomically, and guarded.
 */
import { randomBytes } from "node:crypto";
import {
  closeSync,
  fsyncSync,
  linkSync,
  openSync,
  statSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import path from "node:path";
import { readRegularFile } from "../policy/read-regular-file.js";
import { StoreError } from "./store-error.js";

/** Environment variable that, when set, supplies the secret instead of the file. */
export const SECRET_ENV_VAR = "PORTCULLIS_TOKEN_SECRET";

/** Name of the secret file inside the data folder. */
export const SECRET_FILE_NAME = "secret.key";

/** Shortest secret accepted: HMAC-SHA-256 gains nothing from a longer key, and a shorter one is guessable sooner. */
export const MIN_SECRET_BYTES = 32;

const HEX = /^[0-9a-fA-F]+$/;
const BASE64 = /^(?:[A-Za-z0-9+/]+={0,2}|[A-Za-z0-9_-]+)$/;
const SECRET_FILE_CONTENT = /^[0-9a-f]{64}$/i;

/**
 * Returns the server secret: from `PORTCULLIS_TOKEN_SECRET` when set, else from
 * `<dataDir>/secret.key`, creating that file (32 random bytes, hex, mode 0600)
 * on first run. `dataDir` must exist; {@link TokenStore.open} creates it.
 *
 * The environment value is read as hex when it is all hex digits of even
 * length, else as base64 or base64url. A set but empty variable is refused
 * rather than ignored, since it usually means a deployment template went wrong.
 *
 * @param env - the environment to read, a parameter so tests need not touch `process.env`
 * @param onCreate - told the file's path when this call created a new secret
 * @throws {@link StoreError} of kind `secret` for a short or malformed secret or a
 * secret file that others can read; `unwritable` when the file cannot be created
 */
export function resolveSecret(dataDir: string, env: NodeJS.ProcessEnv = process.env, onCreate?: (file: string) => void): Buffer {
  const fromEnv = env[SECRET_ENV_VAR];
  if (fromEnv !== undefined) return decodeEnvSecret(fromEnv.trim());

  const file = path.join(dataDir, SECRET_FILE_NAME);
  const existing = readSecretFile(file);
  if (existing !== undefined) return existing;
  const created = createSecretFile(file);
  onCreate?.(file);
  return created;
}

function decodeEnvSecret(value: string): Buffer {
  let secret: Buffer;
  if (HEX.test(value) && value.length % 2 === 0) secret = Buffer.from(value, "hex");
  else if (BASE64.test(value)) secret = Buffer.from(value, "base64");
  else throw new StoreError("secret", `\`${SECRET_ENV_VAR}\` must be hex or base64`);
  if (secret.length < MIN_SECRET_BYTES) {
    throw new StoreError(
      "secret",
      `\`${SECRET_ENV_VAR}\` must decode to at least ${MIN_SECRET_BYTES} bytes, got ${secret.length}`,
    );
  }
  return secret;
}

/** Reads and checks an existing secret file; `undefined` when there is none yet. */
function readSecretFile(file: string): Buffer | undefined {
  let mode: number;
  try {
    const stat = statSync(file);
    if (!stat.isFile()) throw new StoreError("secret", `secret file \`${file}\` is not a regular file`);
    mode = stat.mode;
  } catch (error) {
    if (error instanceof StoreError) throw error;
    if (isErrno(error, "ENOENT")) return undefined;
    if (isErrno(error, "ENOTDIR")) {
      throw new StoreError("unwritable", `data folder \`${path.dirname(file)}\` is not a folder`, { cause: error });
    }
    throw new StoreError("secret", `cannot read secret file \`${file}\`: ${describe(error)}`, { cause: error });
  }
  // Anyone who can read the secret can test guesses against a copied database.
  if ((mode & 0o077) !== 0) {
    throw new StoreError(
      "secret",
      `secret file \`${file}\` is accessible by group or others (mode ${(mode & 0o777).toString(8).padStart(4, "0")}); run \`chmod 600 ${file}\``,
    );
  }
  // why: not a plain read, so that a file swapped for a FIFO after the check above cannot block start
  const read = readRegularFile(file);
  if (!read.ok) throw new StoreError("secret", `secret file \`${file}\`: ${read.message}`);
  const content = read.text.trim();
  if (!SECRET_FILE_CONTENT.test(content)) {
    throw new StoreError(
      "secret",
      `secret file \`${file}\` must hold exactly ${MIN_SECRET_BYTES * 2} hex characters (${MIN_SECRET_BYTES} bytes)`,
    );
  }
  return Buffer.from(content, "hex");
}

/**
 * Creates the secret file without ever exposing a partial one: the secret is
 * written and synced to a private temporary file, then hard-linked into place.
 * A link, unlike a rename, fails when the name exists, so two processes
 * starting at once cannot each keep a different secret: the loser reads the
 * winner's file.
 */
function createSecretFile(file: string): Buffer {
  const temp = `${file}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`;
  try {
    const fd = openSync(temp, "wx", 0o600);
    try {
      writeSync(fd, randomBytes(MIN_SECRET_BYTES).toString("hex") + "\n");
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    try {
      linkSync(temp, file);
    } catch (error) {
      if (!isErrno(error, "EEXIST")) throw error;
    }
    syncFolder(path.dirname(file));
  } catch (error) {
    throw new StoreError("unwritable", `cannot create secret file \`${file}\`: ${describe(error)}`, { cause: error });
  } finally {
    try {
      unlinkSync(temp);
    } catch {
      // Nothing to clean up when the temporary file was never created.
    }
  }
  const secret = readSecretFile(file);
  if (secret === undefined) throw new StoreError("secret", `secret file \`${file}\` vanished after creation`);
  return secret;
}

/** Makes the new directory entry durable; best effort, as some platforms cannot sync folders. */
function syncFolder(dir: string): void {
  try {
    const fd = openSync(dir, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // Durability of the link is a nicety; the secret itself was already synced.
  }
}

function isErrno(error: unknown, code: string): boolean {
  return error instanceof Error && (error as NodeJS.ErrnoException).code === code;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
