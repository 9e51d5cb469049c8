/**
 * Which store failures are "retry later" (`unavailable`) and which are bugs
 * (`internal`): SQLite's result codes for a lock held elsewhere, a full disk
 * and I/O errors, and the errno values behind them.
 */
import { describe, expect, it } from "vitest";
import { isLockBusy, StoreError, transientStoreError } from "../../src/store/store-error.js";

const withCode = (code: string) => Object.assign(new Error(`failure ${code}`), { code });

describe("transientStoreError", () => {
  it.each([
    ["SQLITE_BUSY", true, true],
    ["SQLITE_BUSY_SNAPSHOT", true, true],
    ["SQLITE_LOCKED", true, true],
    ["SQLITE_FULL", true, false],
    ["SQLITE_IOERR", true, false],
    ["SQLITE_IOERR_WRITE", true, false],
    ["SQLITE_CANTOPEN", true, false],
    ["ENOSPC", true, false],
    ["EDQUOT", true, false],
    ["SQLITE_CONSTRAINT_UNIQUE", false, false],
    ["SQLITE_ERROR", false, false],
    ["SQLITE_BUSYNESS", false, false],
  ])("%s: unavailable %s, lock busy %s", (code, transient, busy) => {
    const mapped = transientStoreError(withCode(code));
    expect(mapped?.kind).toBe(transient ? "unavailable" : undefined);
    expect(isLockBusy(withCode(code))).toBe(busy);
  });

  it("leaves errors without a code, and store refusals, alone", () => {
    expect(transientStoreError(new TypeError("bug"))).toBeUndefined();
    expect(transientStoreError(new StoreError("conflict", "no"))).toBeUndefined();
    const unavailable = new StoreError("unavailable", "gone");
    expect(transientStoreError(unavailable)).toBe(unavailable);
  });
});
