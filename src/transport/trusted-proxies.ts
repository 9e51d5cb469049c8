/**
 * Trusted proxies: the peers whose forwarding headers (`X-Forwarded-For`,
 * `X-Real-IP`, `X-Forwarded-Host` and the client-certificate headers) are
 * believed. Every other peer's forwarding headers are ignored, so that a client
 * cannot choose its own source address or certificate.
 */
import { isIP } from "node:net";
import ipaddr from "ipaddr.js";

/** The configured trusted proxies, parsed once at start. */
export interface TrustedProxies {
  /** Whether none is configured: then every forwarding header is ignored without parsing anything. */
  readonly none: boolean;
  /** Whether `address` (IPv4, IPv6 or IPv4-mapped IPv6, optionally bracketed) is a trusted proxy. */
  isTrusted(address: string): boolean;
  /**
   * The client's address for a request from `peer`. Only when `peer` is trusted:
   * the rightmost address of `X-Forwarded-For` that is not itself a trusted proxy
   * (each hop appends the address it saw, so everything left of that one was
   * written by the client), else `X-Real-IP`; otherwise `peer` itself. An
   * unparseable hop is returned as is, so that the engine answers `invalid_request`
   * rather than guessing past it.
   */
  clientAddress(peer: string, forwardedFor: string | undefined, realIp: string | undefined): string;
}

type Range = [ipaddr.IPv4 | ipaddr.IPv6, number];

/** Whether `entry` is an IP address or a CIDR range `ipaddr.js` can parse. */
export function isTrustedProxyEntry(entry: string): boolean {
  const text = entry.trim();
  const slash = text.indexOf("/");
  if (slash === -1) return isIP(text) !== 0;
  if (isIP(text.slice(0, slash)) === 0) return false;
  try {
    ipaddr.parseCIDR(text);
    return true;
  } catch {
    return false;
  }
}

/**
 * Parses the configured entries (addresses or CIDR ranges, IPv4 or IPv6) once.
 * Throws on an entry that is neither; the config module rejects those first.
 *
 * @example
 * const proxies = buildTrustedProxyMatcher(["10.0.0.0/8", "::1"]);
 * proxies.clientAddress("10.1.2.3", "198.51.100.7, 10.0.0.9", undefined); // "198.51.100.7"
 */
export function buildTrustedProxyMatcher(entries: readonly string[]): TrustedProxies {
  const ranges: Range[] = entries.map((entry) => {
    const text = entry.trim();
    if (text.includes("/")) {
      const [address, bits] = ipaddr.parseCIDR(text);
      return [unmap(address), address.kind() === "ipv6" && unmap(address).kind() === "ipv4" ? bits - 96 : bits];
    }
    const address = unmap(ipaddr.parse(text));
    return [address, address.kind() === "ipv4" ? 32 : 128];
  });
  const none = ranges.length === 0;

  function isTrusted(address: string): boolean {
    if (none) return false;
    const parsed = parseAddress(address);
    if (parsed === null) return false;
    const kind = parsed.kind();
    for (const [range, bits] of ranges) {
      if (range.kind() === kind && (parsed as ipaddr.IPv4).match(range as ipaddr.IPv4, bits)) return true;
    }
    return false;
  }

  return {
    none,
    isTrusted,
    clientAddress(peer, forwardedFor, realIp) {
      if (none || !isTrusted(peer)) return peer;
      if (forwardedFor !== undefined && forwardedFor.trim() !== "") {
        const hops = forwardedFor.split(",");
        for (let i = hops.length - 1; i >= 0; i--) {
          const hop = stripPort(hops[i]!.trim());
          if (hop === "" || parseAddress(hop) === null) return hop;
          if (i === 0 || !isTrusted(hop)) return hop;
        }
      }
      if (realIp !== undefined && realIp.trim() !== "") return stripPort(realIp.trim());
      return peer;
    },
  };
}

/** `::ffff:192.0.2.1` -> `192.0.2.1`, which is how Node reports IPv4 peers on a dual-stack socket. */
export function unmapPeerAddress(address: string): string {
  return address.length > 7 && address.startsWith("::ffff:") && address.includes(".") ? address.slice(7) : address;
}

function parseAddress(text: string): ipaddr.IPv4 | ipaddr.IPv6 | null {
  const bare = text.startsWith("[") && text.endsWith("]") ? text.slice(1, -1) : text;
  // node:net is strict where ipaddr.js also takes `127.1` or hex octets, which no proxy writes.
  if (isIP(bare) === 0) return null;
  try {
    return unmap(ipaddr.parse(bare));
  } catch {
    return null;
  }
}

function unmap(address: ipaddr.IPv4 | ipaddr.IPv6): ipaddr.IPv4 | ipaddr.IPv6 {
  return address.kind() === "ipv6" && (address as ipaddr.IPv6).isIPv4MappedAddress() ? (address as ipaddr.IPv6).toIPv4Address() : address;
}

// X-Forwarded-For hops are bare addresses, but some proxies append a port: `192.0.2.1:4711`, `[2001:db8::1]:4711`.
function stripPort(hop: string): string {
  if (hop.startsWith("[")) {
    const close = hop.indexOf("]");
    return close === -1 ? hop : hop.slice(1, close);
  }
  const colon = hop.indexOf(":");
  return colon !== -1 && colon === hop.lastIndexOf(":") && hop.includes(".") ? hop.slice(0, colon) : hop;
}
