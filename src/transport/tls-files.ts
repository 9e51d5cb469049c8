/**
 * TLS for both ports from files: a certificate chain and its key, and
 * optionally a CA bundle that client certificates must chain to. The files are
 * watched, and a changed pair is loaded for new connections without a restart,
 * so that a rotated certificate (cert-manager, a Kubernetes secret, an ACME
 * client) takes effect on its own. A pair that does not load (the key written
 * before its certificate, say) leaves the previous one in force until the next
 * change.
 */
import fs from "node:fs";
import * as tls from "node:tls";
import { readRegularFile } from "../policy/read-regular-file.js";

/** Where the TLS material lives (`--tls-cert`, `--tls-key`, `--tls-client-ca`). */
export interface TlsFiles {
  /** PEM certificate chain, leaf first. */
  readonly certFile: string;
  /** PEM private key of the leaf. */
  readonly keyFile: string;
  /** PEM CA bundle; when set, every client must present a certificate that chains to it. */
  readonly clientCaFile?: string;
}

/** What `https.createServer` and `http2.createSecureServer` take from the files. */
export interface TlsServerOptions extends tls.SecureContextOptions {
  readonly requestCert: boolean;
  readonly rejectUnauthorized: boolean;
  /** TLS 1.2 at least: older versions have no place between a proxy and its authorizer. */
  readonly minVersion: tls.SecureVersion;
}

/** A TLS file that cannot be read or used; the message names the file. */
export class TlsFilesError extends Error {
  override readonly name = "TlsFilesError";
}

/**
 * Reads the files into server options, checking that they form a usable
 * context (the key matches the certificate, the PEM parses). Throws
 * {@link TlsFilesError}.
 */
export function loadTlsFiles(files: TlsFiles): TlsServerOptions {
  // why: the files are re-read on the event loop whenever they change; a FIFO swapped in would block every decision
  const read = (file: string, what: string) => {
    const result = readRegularFile(file);
    if (!result.ok) throw new TlsFilesError(`cannot read the tls ${what} \`${file}\`: ${result.message.replace(/^cannot read file: /, "")}`);
    return result.text;
  };
  const cert = read(files.certFile, "certificate");
  const key = read(files.keyFile, "key");
  const ca = files.clientCaFile === undefined ? undefined : read(files.clientCaFile, "client ca bundle");
  const options: TlsServerOptions = {
    cert,
    key,
    ...(ca === undefined ? {} : { ca }),
    requestCert: ca !== undefined,
    rejectUnauthorized: ca !== undefined,
    minVersion: "TLSv1.2",
  };
  try {
    tls.createSecureContext(options);
  } catch (error) {
    throw new TlsFilesError(`the tls certificate \`${files.certFile}\` and key \`${files.keyFile}\` cannot be used: ${error instanceof Error ? error.message : String(error)}`);
  }
  return options;
}

/**
 * Watches the files (by polling their status every `intervalMs`, which also
 * sees a file replaced through a symlink swap, as Kubernetes updates secrets)
 * and hands every pair that loads to `apply`. Returns the function that stops
 * watching.
 */
export function watchTlsFiles(files: TlsFiles, apply: (options: TlsServerOptions) => void, onError: (error: TlsFilesError) => void, intervalMs = 1_000): () => void {
  const paths = [files.certFile, files.keyFile, ...(files.clientCaFile === undefined ? [] : [files.clientCaFile])];
  const changed = (current: fs.Stats, previous: fs.Stats) => {
    if (current.mtimeMs === previous.mtimeMs && current.size === previous.size && current.ino === previous.ino) return;
    let options: TlsServerOptions;
    try {
      options = loadTlsFiles(files);
    } catch (error) {
      onError(error instanceof TlsFilesError ? error : new TlsFilesError(String(error)));
      return;
    }
    apply(options);
  };
  for (const file of paths) fs.watchFile(file, { interval: intervalMs, persistent: false }, changed);
  return () => {
    for (const file of paths) fs.unwatchFile(file, changed);
  };
}
