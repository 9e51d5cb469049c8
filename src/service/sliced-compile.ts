/**
 * Compiles a token's long IP allowlist in slices, each on a turn of the event
 * loop of its own, so that other decisions keep being answered meanwhile:
 * 10,000 CIDRs compiled at once would hold every in-flight request for
 * milliseconds (tens on cold code). The engine then finds the compiled list
 * kept for this record version (`engine/token-allowlists.ts`).
 *
 * Why slices on the event loop rather than a worker thread: the compiled
 * trie would have to cross threads (structured clone of a 150,000-node trie,
 * or typed arrays plus glue), a worker costs a thread and its heap for a rare
 * event, and with the server pinned to one core a worker shares that core
 * anyway. Slices bound the stall to one slice (about 0.1 ms warm) and need no
 * new moving parts.
 */
import { allowlistCompileSteps } from "../engine/token-allowlists.js";
import type { TokenRecord } from "../engine/types.js";

// One compile per token and list: concurrent first decisions for the same token wait on the same slices.
const compiling = new Map<string, { entries: readonly string[] | undefined; done: Promise<void> }>();

/** Resolves once `token`'s allowlist is compiled and kept; rejects if compiling threw (the decision then fails closed). */
export function compileAllowlistInSlices(token: TokenRecord): Promise<void> {
  const entries = token.controls.ipAllowlist;
  const running = compiling.get(token.id);
  if (running !== undefined && running.entries === entries) return running.done;
  const steps = allowlistCompileSteps(token);
  const done = new Promise<void>((resolve, reject) => {
    const step = (): void => {
      try {
        if (steps.next().done === true) resolve();
        else setImmediate(step);
      } catch (error) {
        reject(error instanceof Error ? error : new Error(String(error)));
      }
    };
    // why: setImmediate runs after pending I/O callbacks, so requests that arrived meanwhile are answered between slices
    setImmediate(step);
  }).finally(() => {
    if (compiling.get(token.id)?.done === done) compiling.delete(token.id);
  });
  compiling.set(token.id, { entries, done });
  return done;
}
