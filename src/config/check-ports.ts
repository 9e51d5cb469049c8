/**
 * Checks, before anything slow is loaded, that both ports can be bound, and
 * turns a bind failure into a {@link ConfigError} that names the flag and the
 * variable, as every other configuration error does.
 */
import net from "node:net";
import { ConfigError } from "./config.js";

/** A port as configured, with the names an operator would change it by. */
export interface ConfiguredPort {
  readonly port: number;
  readonly flag: string;
  readonly envName: string;
}

/** The two ports of `serve`, named as its flags and variables name them. */
export function servePorts(config: { readonly grpcPort: number; readonly httpPort: number }): ConfiguredPort[] {
  return [
    { port: config.grpcPort, flag: "--grpc-port", envName: "PORTCULLIS_GRPC_PORT" },
    { port: config.httpPort, flag: "--http-port", envName: "PORTCULLIS_HTTP_PORT" },
  ];
}

/**
 * Binds and releases each port on `host` (0: any free one); throws {@link ConfigError}
 * for the first that cannot be bound, or when two are the same. The real bind
 * follows within milliseconds; a port taken in between still fails there, and
 * {@link listenErrorOf} words that failure the same way.
 */
export async function checkPortsFree(host: string, ports: readonly ConfiguredPort[]): Promise<void> {
  const fixed = ports.filter((entry) => entry.port !== 0);
  for (const [index, entry] of fixed.entries()) {
    const twin = fixed.slice(index + 1).find((other) => other.port === entry.port);
    if (twin !== undefined) {
      throw new ConfigError(`${name(entry)} and ${name(twin)} are both ${entry.port}: give each its own port`);
    }
  }
  // Port 0 is probed too: it still tells whether the host is an address of this machine.
  for (const entry of ports) {
    await new Promise<void>((resolve, reject) => {
      const probe = net.createServer();
      probe.once("error", (error) => reject(listenErrorOf(error, host, entry)));
      probe.listen({ host, port: entry.port, exclusive: true }, () => probe.close(() => resolve()));
    });
  }
}

/** A bind failure in an operator's words; errors that are not a known bind failure are returned unchanged. */
export function listenErrorOf(error: unknown, host: string, entry: ConfiguredPort): unknown {
  switch ((error as NodeJS.ErrnoException | null)?.code) {
    case "EADDRINUSE":
      return new ConfigError(`${name(entry)} ${entry.port} is already in use on ${host}: stop what listens there, or choose another port`);
    case "EACCES":
      return new ConfigError(`${name(entry)} ${entry.port} needs privileges on ${host}: choose a port above 1023`);
    case "EADDRNOTAVAIL":
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return new ConfigError(`--host (PORTCULLIS_HOST) \`${host}\` is not an address of this machine`);
    default:
      return error;
  }
}

function name(entry: ConfiguredPort): string {
  return `${entry.flag} (${entry.envName})`;
}
