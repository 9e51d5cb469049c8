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
  /** The caller's input was rejected before any write. */
  | "invalid";

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
