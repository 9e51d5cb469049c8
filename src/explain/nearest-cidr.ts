/**
 * For explanations only (never on the decision path): how close an address
 * comes to each CIDR of an allowlist, so that an author sees the entry a
 * blocked address nearly matched.
 */
import ipaddr from "ipaddr.js";

/** The CIDR sharing the most leading bits with the address. */
export interface CidrCloseness {
  readonly cidr: string;
  readonly commonBits: number;
  /** Whether the address is inside the CIDR. */
  readonly matched: boolean;
}

function bytesOf(address: string): number[] | null {
  if (!ipaddr.isValid(address)) return null;
  const parsed = ipaddr.parse(address);
  // why: the engine judges an IPv4-mapped IPv6 address as its IPv4 address
  if (parsed.kind() === "ipv6" && (parsed as ipaddr.IPv6).isIPv4MappedAddress()) return (parsed as ipaddr.IPv6).toIPv4Address().toByteArray();
  return parsed.toByteArray();
}

function commonPrefix(a: readonly number[], b: readonly number[]): number {
  let bits = 0;
  for (let i = 0; i < a.length; i++) {
    const x = (a[i] as number) ^ (b[i] as number);
    if (x === 0) {
      bits += 8;
      continue;
    }
    return bits + Math.clz32(x) - 24;
  }
  return bits;
}

/** The closest CIDR of `cidrs` to `address` (same family only); `null` when none is comparable. */
export function nearestMiss(address: string, cidrs: readonly string[]): CidrCloseness | null {
  const bytes = bytesOf(address);
  if (bytes === null) return null;
  let best: CidrCloseness | null = null;
  for (const cidr of cidrs) {
    const [base = "", lengthText] = cidr.split("/");
    const network = bytesOf(base);
    if (network === null || network.length !== bytes.length) continue;
    const prefix = lengthText === undefined ? bytes.length * 8 : Number(lengthText);
    const common = Math.min(commonPrefix(bytes, network), bytes.length * 8);
    const candidate = { cidr, commonBits: common, matched: common >= prefix };
    if (best === null || candidate.matched || (!best.matched && common > best.commonBits)) {
      if (best?.matched !== true) best = candidate;
    }
  }
  return best;
}
