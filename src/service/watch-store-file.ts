/**
 * Notices a token store file that was replaced (a backup moved over it) or
 * deleted, by checking the file's identity on a short timer, so that
 * revocations written to the new file are seen within the second DESIGN.md
 * promises, and a missing file fails closed instead of serving from an
 * unlinked one.
 */
import type { StoreFileCheck } from "../store/sqlite/sqlite-store.js";

/** What {@link watchStoreFile} needs of the store; {@link SqliteStore} provides it. */
export interface WatchedStore {
  checkFile(): StoreFileCheck;
}

/** Told when the state of the file changes; each is called once per change, not per check. */
export interface StoreFileEvents {
  /** Another file took the old one's place and is open now. */
  readonly onReopened: () => void;
  /** No usable file: the store fails every call with `unavailable`. */
  readonly onMissing: () => void;
  /** A usable file is open again after {@link onMissing}. */
  readonly onBack: () => void;
}

/** How often the file's identity is compared; four times a second keeps the one-second promise with room. */
export const STORE_FILE_CHECK_INTERVAL_MS = 250;

/**
 * Checks `store`'s file every `intervalMs` (default 250) and reports changes.
 * Returns a function that stops the timer. The timer does not keep the
 * process alive.
 */
export function watchStoreFile(store: WatchedStore, events: StoreFileEvents, intervalMs = STORE_FILE_CHECK_INTERVAL_MS): () => void {
  let missing = false;
  const timer = setInterval(() => {
    const result = store.checkFile();
    if (result === "missing") {
      if (!missing) events.onMissing();
      missing = true;
      return;
    }
    if (result === "reopened") events.onReopened();
    if (missing) events.onBack();
    missing = false;
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
