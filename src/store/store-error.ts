/**
 * The one error type the token store throws. Callers switch on `kind`; the
 * message is for people and names the path or id involved.
 */

/** What went wrong, coarse enough to pick an exit code or an RPC status. */
export type StoreErrorKind =
  /** The data folder or database cannot be created or written. */
  | "unwritable"
  /** The database file is not a SQLite database, or not one we can migrate. */
  | "corrupt"
  /** The database was written by a newer Portcullis with a schema this build does not know. */
  | "too_new"
  /** The server secret is missing, too short, malformed or readable by others. */
  | "secret"
  /** A write clashed with an existing row. */
  | "conflict"
  /** No token with the given id. */
  | "not_found"
  /** A command that only reads found no store at the data folder (and created none). */
  | "missing"
  /** The caller's input was rejected before any write. */
  | "invalid"
  /**
   * The store cannot be read or written right now, and a retry may succeed:
   * another process holds the write lock, the disk is full, an I/O error, or
   * the database file was replaced or deleted under the server.
   */
  | "unavailable";

/** A token store failure, with a {@link StoreErrorKind} to switch on. */
export class StoreError extends Error {
  override readonly name = "StoreError";

  constructor(
    readonly kind: StoreErrorKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * SQLite result codes that say "not now" rather than "never": the write lock
 * is held elsewhere (BUSY, LOCKED), the disk is full (FULL), or the file
 * system failed (IOERR, CANTOPEN), as https://sqlite.org/rescode.html lists them.
 */
const TRANSIENT_SQLITE_CODE = /^SQLITE_(BUSY|LOCKED|FULL|IOERR|CANTOPEN)(_|$)/;
const TRANSIENT_ERRNO = new Set(["ENOSPC", "EDQUOT", "EIO", "EBUSY"]);

/**
 * Turns a raw SQLite or file-system error into a `StoreError` of kind
 * `unavailable` when a retry may succeed; returns `undefined` for anything
 * else (a bug, which callers report as internal).
 */
export function transientStoreError(error: unknown): StoreError | undefined {
  if (error instanceof StoreError) return error.kind === "unavailable" ? error : undefined;
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== "string") return undefined;
  if (TRANSIENT_SQLITE_CODE.test(code) || TRANSIENT_ERRNO.has(code)) {
    const message = error instanceof Error ? error.message : String(error);
    return new StoreError("unavailable", `the token store cannot be used right now (${code}): ${message}`, { cause: error });
  }
  return undefined;
}

/** Whether `error` is SQLite saying another connection holds the lock it needs (worth retrying soon). */
export function isLockBusy(error: unknown): boolean {
  const code = ((error instanceof StoreError ? error.cause : error) as { code?: unknown } | null)?.code;
  return typeof code === "string" && /^SQLITE_(BUSY|LOCKED)(_|$)/.test(code);
}
