/**
 * Watches a policy folder and calls back once its files have settled: after
 * a quiet period (debounced), and only with a set of files that did not
 * change while it was read, so that a half-written file is never applied.
 */
import { watch, readdirSync, statSync, type FSWatcher } from "node:fs";
import { join } from "node:path";

/** A running watch; `close` stops it and cancels any pending callback. */
export interface PolicyFolderWatcher {
  close(): void;
}

/** What {@link watchPolicyFolder} calls and how long it waits. */
export interface WatchPolicyFolderOptions {
  /**
   * Called when the files settled. Reads the folder (e.g. `loadPolicySet`)
   * and returns a function that applies what it read, or `null` when nothing
   * is to be applied. The apply step runs only if no file changed meanwhile.
   */
  readonly onSettled: () => (() => void) | null;
  /** Quiet time after the last change before reading; default 250 ms. */
  readonly debounceMs?: number;
  /** Told when the folder cannot be watched any more (deleted, permissions). */
  readonly onError?: (error: unknown) => void;
}

/**
 * Name, size, modification time and inode of every `*.json` file directly in
 * `dir`: equal fingerprints before and after a read mean the read saw one
 * consistent set (an editor's rename-into-place changes the inode).
 */
export function policyFolderFingerprint(dir: string): string {
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => n.endsWith(".json")).sort();
  } catch {
    return "";
  }
  return names
    .map((name) => {
      try {
        const s = statSync(join(dir, name));
        return `${name}\u0000${s.size}\u0000${s.mtimeMs}\u0000${s.ino}`;
      } catch {
        return `${name}\u0000gone`;
      }
    })
    .join("\n");
}

/**
 * Starts watching `dir` (not its subfolders: only its `*.json` files are
 * policy files).
 *
 * @example
 * const watcher = watchPolicyFolder("policies", { onSettled: () => { const next = loadPolicySet("policies"); return next.ok ? () => use(next.policy) : null; } });
 * watcher.close();
 */
export function watchPolicyFolder(dir: string, options: WatchPolicyFolderOptions): PolicyFolderWatcher {
  const debounceMs = options.debounceMs ?? 250;
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  const schedule = () => {
    if (closed) return;
    clearTimeout(timer);
    timer = setTimeout(settle, debounceMs);
    // why: a pending reload must not keep a stopping process alive
    timer.unref();
  };
  const settle = () => {
    if (closed) return;
    const before = policyFolderFingerprint(dir);
    const apply = options.onSettled();
    if (closed || apply === null) return;
    // a file changed while it was read: the read may mix old and new, so read again once quiet
    if (policyFolderFingerprint(dir) !== before) return schedule();
    apply();
  };
  let watcher: FSWatcher;
  try {
    // why: every event counts, not only `*.json` names: a Kubernetes ConfigMap
    // swaps a `..data` symlink, and the files change through it; a read that
    // finds the same revision applies nothing
    watcher = watch(dir, { persistent: false }, schedule);
  } catch (error) {
    options.onError?.(error);
    return { close() {} };
  }
  watcher.on("error", (error) => options.onError?.(error));
  return {
    close() {
      closed = true;
      clearTimeout(timer);
      watcher.close();
    },
  };
}
