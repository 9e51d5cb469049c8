/** The StoreError a call throws; fails the test when it throws something else or nothing. */
import { expect } from "vitest";
import { StoreError } from "../../src/store/store-error.js";

export function storeError(run: () => unknown): StoreError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(StoreError);
    return error as StoreError;
  }
  throw new Error("expected a store error");
}

/** The StoreError an asynchronous call rejects with; fails the test when it rejects with something else or resolves. */
export async function storeErrorAsync(run: () => Promise<unknown>): Promise<StoreError> {
  try {
    await run();
  } catch (error) {
    expect(error).toBeInstanceOf(StoreError);
    return error as StoreError;
  }
  throw new Error("expected a store error");
}
