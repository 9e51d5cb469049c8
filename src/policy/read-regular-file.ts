/**
 * Reads a policy file without ever blocking on it: a FIFO, socket or device
 * named `*.json` in the policy folder would otherwise hang `open` (a FIFO
 * waits for a writer) at start or on reload.
 */
import { closeSync, constants, fstatSync, openSync, readFileSync, type Stats } from "node:fs";

/**
 * Opens `file` without blocking (`O_NONBLOCK`, which a FIFO honours at open),
 * then reads it only if the opened file is a regular one. Symbolic links are
 * followed, as a Kubernetes ConfigMap mount needs. Never throws.
 */
export function readRegularFile(file: string): { ok: true; text: string } | { ok: false; message: string } {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (error) {
    return { ok: false, message: `cannot read file: ${codeOf(error)}` };
  }
  try {
    // why: fstat of the opened descriptor, so that the file cannot be swapped between the check and the read
    const stat = fstatSync(fd);
    if (!stat.isFile()) return { ok: false, message: `not a regular file (${kindOf(stat)}); only regular files are read` };
    return { ok: true, text: readFileSync(fd, "utf8") };
  } catch (error) {
    return { ok: false, message: `cannot read file: ${codeOf(error)}` };
  } finally {
    closeSync(fd);
  }
}

function kindOf(stat: Stats): string {
  if (stat.isFIFO()) return "a fifo";
  if (stat.isSocket()) return "a socket";
  if (stat.isCharacterDevice() || stat.isBlockDevice()) return "a device";
  if (stat.isDirectory()) return "a folder";
  return "a special file";
}

function codeOf(error: unknown): string {
  return typeof error === "object" && error !== null && "code" in error ? String(error.code) : String(error);
}
