/**
 * IP addresses and allowlists: parsed once (request addresses once per request,
 * CIDRs once at policy load or token-cache fill) and matched through a binary
 * prefix trie, so membership costs at most 32 or 128 steps however long the
 * list is.
 */
import { isIP } from "node:net";
import ipaddr from "ipaddr.js";
import type { CompiledIpAllowlist, IpAddress } from "./types.js";

/** A problem with one control value; `pointer` is relative to the control. */
export interface ControlError {
  readonly pointer: string;
  readonly message: string;
  readonly hint?: string;
}

/** Value or the errors that prevent it, as every control compiler returns. */
export type Compiled<T> = { ok: true; value: T } | { ok: false; errors: ControlError[] };

// ::ffff:0:0/96 (RFC 4291 §2.5.5.2): the first 80 bits zero, then 16 one bits.
const MAPPED_PREFIX = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

/**
 * Parses an address strictly (Node's `isIP`, so `127.1` or `0x7f.0.0.1` are
 * refused). An IPv4-mapped IPv6 address (`::ffff:203.0.113.10`) comes back as
 * its IPv4 address, so both forms are judged alike. `null` when unparseable.
 *
 * This runs once per request, so after `isIP` has validated the syntax the
 * bytes are read directly rather than through ipaddr.js's regular expressions.
 */
export function parseIpAddress(text: string): IpAddress | null {
  const version = isIP(text);
  if (version === 4) return { version: 4, bytes: dottedQuadBytes(text) };
  if (version === 0) return null;
  const bytes = ipv6Bytes(text);
  for (let i = 0; i < 12; i++) if (bytes[i] !== MAPPED_PREFIX[i]) return { version: 6, bytes };
  return { version: 4, bytes: bytes.slice(12) };
}

// INVARIANT: callers pass only text that `isIP` accepted, so it is four decimal octets.
function dottedQuadBytes(text: string): number[] {
  const bytes = [0, 0, 0, 0];
  let index = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code === 46 /* . */) index++;
    else bytes[index] = bytes[index]! * 10 + (code - 48);
  }
  return bytes;
}

// INVARIANT: callers pass only text that `isIP` accepted as IPv6 (at most one `::`, valid groups).
function ipv6Bytes(text: string): number[] {
  const zone = text.indexOf("%");
  const address = zone === -1 ? text : text.slice(0, zone);
  const elision = address.indexOf("::");
  const head = groupsOf(elision === -1 ? address : address.slice(0, elision));
  const tail = elision === -1 ? [] : groupsOf(address.slice(elision + 2));
  const groups = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  const bytes = new Array<number>(16);
  for (let i = 0; i < 8; i++) {
    bytes[2 * i] = groups[i]! >> 8;
    bytes[2 * i + 1] = groups[i]! & 0xff;
  }
  return bytes;
}

/** 16-bit groups of one side of `::`; a trailing dotted quad counts as two groups. */
function groupsOf(side: string): number[] {
  if (side === "") return [];
  const groups: number[] = [];
  for (const part of side.split(":")) {
    if (part.includes(".")) {
      const [a, b, c, d] = dottedQuadBytes(part) as [number, number, number, number];
      groups.push((a << 8) | b, (c << 8) | d);
    } else {
      groups.push(parseInt(part, 16));
    }
  }
  return groups;
}

/** A network: address bytes with host bits clear, and prefix length. */
interface Network {
  readonly version: 4 | 6;
  readonly bytes: readonly number[];
  readonly prefix: number;
}

/**
 * Parses `address` or `address/prefix`. A CIDR with host bits set is refused
 * with the network it probably meant as a hint; an IPv4-mapped IPv6 network
 * of prefix 96 or longer becomes the IPv4 network it covers.
 */
export function parseNetwork(text: string): { ok: true; network: Network } | { ok: false; message: string; hint?: string } {
  const slash = text.indexOf("/");
  const addressText = slash === -1 ? text : text.slice(0, slash);
  const version = isIP(addressText);
  if (version === 0) return { ok: false, message: `\`${text}\` is not an ip address or cidr` };
  // why: read by hand after `isIP` validated the syntax; ipaddr.js's regular expressions cost most of a 10,000-entry compile
  const raw = version === 4 ? dottedQuadBytes(addressText) : ipv6Bytes(addressText);
  const bits = raw.length * 8;
  let prefix = bits;
  if (slash !== -1) {
    prefix = prefixLength(text, slash + 1);
    if (prefix < 0 || prefix > bits) {
      return { ok: false, message: `cidr \`${text}\` has an invalid prefix length: expected 0 to ${bits}` };
    }
  }
  const masked = maskBytes(raw, prefix);
  if (!sameBytes(masked, raw)) {
    const network = `${ipaddr.fromByteArray(masked).toString()}/${prefix}`;
    return { ok: false, message: `cidr \`${text}\` has host bits set`, hint: `did you mean \`${network}\`?` };
  }
  if (version === 6 && prefix >= 96 && MAPPED_PREFIX.every((b, i) => masked[i] === b)) {
    return { ok: true, network: { version: 4, bytes: masked.slice(12), prefix: prefix - 96 } };
  }
  return { ok: true, network: { version: version === 4 ? 4 : 6, bytes: masked, prefix } };
}

/** The decimal prefix length from `start` to the end of `text`: 1 to 3 digits, no leading zero; `-1` when it is not one. */
function prefixLength(text: string, start: number): number {
  const length = text.length - start;
  if (length < 1 || length > 3 || (length > 1 && text.charCodeAt(start) === 48)) return -1;
  let value = 0;
  for (let i = start; i < text.length; i++) {
    const digit = text.charCodeAt(i) - 48;
    if (digit < 0 || digit > 9) return -1;
    value = value * 10 + digit;
  }
  return value;
}

function maskBytes(bytes: readonly number[], prefix: number): number[] {
  const masked = new Array<number>(bytes.length);
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, prefix - i * 8));
    masked[i] = bytes[i]! & ((0xff << (8 - keep)) & 0xff);
  }
  return masked;
}

function sameBytes(a: readonly number[], b: readonly number[]): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** A binary trie over address bits; node 0 is the root, `-1` is no child. Typed arrays grown by doubling: a 10,000-entry list makes about 150,000 nodes. */
class PrefixTrie {
  private zero = new Int32Array(64).fill(-1);
  private one = new Int32Array(64).fill(-1);
  private terminal = new Uint8Array(64);
  private size = 1;

  insert(bytes: readonly number[], prefix: number): void {
    let node = 0;
    for (let bit = 0; bit < prefix; bit++) {
      if (this.terminal[node] === 1) return; // already covered by a shorter prefix
      const isOne = ((bytes[bit >> 3]! >> (7 - (bit & 7))) & 1) === 1;
      let next = (isOne ? this.one : this.zero)[node]!;
      if (next === -1) {
        next = this.add();
        // read the arrays after `add`, which may have replaced them
        (isOne ? this.one : this.zero)[node] = next;
      }
      node = next;
    }
    this.terminal[node] = 1;
  }

  private add(): number {
    if (this.size === this.terminal.length) {
      const capacity = this.size * 2;
      const grow = (old: Int32Array) => {
        const next = new Int32Array(capacity).fill(-1);
        next.set(old);
        return next;
      };
      this.zero = grow(this.zero);
      this.one = grow(this.one);
      const terminal = new Uint8Array(capacity);
      terminal.set(this.terminal);
      this.terminal = terminal;
    }
    return this.size++;
  }

  contains(bytes: readonly number[]): boolean {
    let node = 0;
    const bits = bytes.length * 8;
    for (let bit = 0; bit < bits; bit++) {
      if (this.terminal[node] === 1) return true;
      node = ((bytes[bit >> 3]! >> (7 - (bit & 7))) & 1) === 1 ? this.one[node]! : this.zero[node]!;
      if (node === -1) return false;
    }
    return this.terminal[node] === 1;
  }
}

/**
 * Compiles an allowlist into one trie per address family. An IPv6 network
 * that covers the whole IPv4-mapped block (`::/0`, `::/80`, …) also covers
 * every IPv4 address, since those are judged as IPv4.
 *
 * @example
 * const list = buildIpAllowlistMatcher(["198.51.100.0/24", "2001:db8::/48"], "token:tok_1");
 * list.ok && list.value.contains(parseIpAddress("::ffff:198.51.100.7")!); // true
 */
export function buildIpAllowlistMatcher(entries: readonly string[], ruleId: string): Compiled<CompiledIpAllowlist> {
  const steps = ipAllowlistCompileSteps(entries, ruleId, entries.length);
  for (;;) {
    const step = steps.next();
    if (step.done === true) return step.value;
  }
}

/**
 * {@link buildIpAllowlistMatcher} in slices of `sliceSize` entries: the
 * generator yields after each slice and returns the compiled list, so a caller
 * can spread a long list's compile over several turns of the event loop.
 */
export function* ipAllowlistCompileSteps(entries: readonly string[], ruleId: string, sliceSize: number): Generator<void, Compiled<CompiledIpAllowlist>, void> {
  const v4 = new PrefixTrie();
  const v6 = new PrefixTrie();
  const errors: ControlError[] = [];
  for (let i = 0; i < entries.length; i++) {
    if (i > 0 && i % sliceSize === 0) yield;
    const parsed = parseNetwork(entries[i]!);
    if (!parsed.ok) {
      errors.push({ pointer: `/${i}`, message: parsed.message, ...(parsed.hint === undefined ? {} : { hint: parsed.hint }) });
      continue;
    }
    const { network } = parsed;
    if (network.version === 4) {
      v4.insert(network.bytes, network.prefix);
      continue;
    }
    v6.insert(network.bytes, network.prefix);
    if (network.prefix < 96 && maskBytes(MAPPED_PREFIX.concat([0, 0, 0, 0]), network.prefix).every((b, j) => b === network.bytes[j])) {
      v4.insert([0, 0, 0, 0], 0);
    }
  }
  if (errors.length > 0) return { ok: false, errors };
  return {
    ok: true,
    value: Object.freeze({
      ruleId,
      entries: Object.freeze([...entries]),
      contains: (address: IpAddress) => (address.version === 4 ? v4 : v6).contains(address.bytes),
    }),
  };
}
