import { describe, expect, it } from "vitest";
import { buildIpAllowlistMatcher, parseIpAddress, parseNetwork } from "../../src/policy/ip-allowlist-matcher.js";
import type { TokenRecord } from "../../src/engine/types.js";
import { loadExamplePolicy, makeToken, NOW_MS, request } from "../support/fixtures.js";
import { judge } from "../support/judge.js";

const LIST = ["198.51.100.0/24", "203.0.113.10", "10.0.0.0/8", "2001:db8::/48", "2001:db8:ffff::1/128", "192.0.2.7/32"];

function matcher(entries: readonly string[]) {
  const compiled = buildIpAllowlistMatcher(entries, "test");
  if (!compiled.ok) throw new Error(JSON.stringify(compiled.errors));
  return compiled.value;
}

describe("ip allowlist membership", () => {
  const list = matcher(LIST);
  it.each([
    ["first address of a /24", "198.51.100.0", true],
    ["last address of a /24", "198.51.100.255", true],
    ["just below a /24", "198.51.99.255", false],
    ["just above a /24", "198.51.101.0", false],
    ["a single address", "203.0.113.10", true],
    ["next to a single address", "203.0.113.11", false],
    ["a /32", "192.0.2.7", true],
    ["next to a /32", "192.0.2.8", false],
    ["first address of a /8", "10.0.0.0", true],
    ["last address of a /8", "10.255.255.255", true],
    ["first address of a /48", "2001:db8::", true],
    ["last address of a /48", "2001:db8:0:ffff:ffff:ffff:ffff:ffff", true],
    ["just above a /48", "2001:db8:1::", false],
    ["a /128", "2001:db8:ffff::1", true],
    ["next to a /128", "2001:db8:ffff::2", false],
    ["ipv4-mapped ipv6 inside a v4 range", "::ffff:198.51.100.7", true],
    ["ipv4-mapped ipv6 in hex form", "::ffff:c633:6407", true],
    ["ipv4-mapped ipv6 outside every range", "::ffff:198.51.101.7", false],
    ["an ipv6 address is not its ipv4-compatible twin", "::198.51.100.7", false],
    ["an unrelated v6 address", "fe80::1", false],
  ])("%s: %s → %s", (_name, address, expected) => {
    expect(list.contains(parseIpAddress(address)!)).toBe(expected);
  });

  it("covers every ipv4 address with ::/0, since mapped sources are judged as ipv4", () => {
    const all6 = matcher(["::/0"]);
    expect(all6.contains(parseIpAddress("203.0.113.1")!)).toBe(true);
    expect(matcher(["2001:db8::/32"]).contains(parseIpAddress("203.0.113.1")!)).toBe(false);
  });

  it("turns a mapped ipv6 cidr into the ipv4 network it covers", () => {
    const mapped = matcher(["::ffff:198.51.100.0/120"]);
    expect(mapped.contains(parseIpAddress("198.51.100.200")!)).toBe(true);
    expect(mapped.contains(parseIpAddress("198.51.101.0")!)).toBe(false);
  });

  it("0.0.0.0/0 allows every ipv4 address and no ipv6 address", () => {
    const all4 = matcher(["0.0.0.0/0"]);
    expect(all4.contains(parseIpAddress("255.255.255.255")!)).toBe(true);
    expect(all4.contains(parseIpAddress("2001:db8::1")!)).toBe(false);
  });

  it("does not get slower with a long list (trie depth is bounded by the address length)", () => {
    const entries = Array.from({ length: 20_000 }, (_, i) => `10.${(i >> 8) & 255}.${i & 255}.0/24`.replace(/^10\./, `${11 + (i >> 16)}.`));
    const big = matcher(entries);
    expect(big.contains(parseIpAddress("11.78.31.9")!)).toBe(true);
    expect(big.contains(parseIpAddress("9.0.0.1")!)).toBe(false);
  });
});

describe("ip allowlist entries are checked", () => {
  it.each([
    ["10.0.0.1/24", "cidr `10.0.0.1/24` has host bits set", "did you mean `10.0.0.0/24`?"],
    ["2001:db8::1/48", "cidr `2001:db8::1/48` has host bits set", "did you mean `2001:db8::/48`?"],
    ["10.0.0.0/33", "cidr `10.0.0.0/33` has an invalid prefix length: expected 0 to 32", undefined],
    ["10.0.0.0/08", "cidr `10.0.0.0/08` has an invalid prefix length: expected 0 to 32", undefined],
    ["300.1.1.1", "`300.1.1.1` is not an ip address or cidr", undefined],
    ["127.1", "`127.1` is not an ip address or cidr", undefined],
    ["example.com", "`example.com` is not an ip address or cidr", undefined],
  ])("%s is refused", (entry, message, hint) => {
    const parsed = parseNetwork(entry);
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) {
      expect(parsed.message).toBe(message);
      expect(parsed.hint).toBe(hint);
    }
  });
});

describe("the ip_allowlist_blocked stage", () => {
  const policy = loadExamplePolicy();
  const office = makeToken({ controls: { ipAllowlist: ["198.51.100.0/24", "2001:db8::/48"] } });
  const open = makeToken();
  const tokens = new Map<string, TokenRecord>([office, open].map((t) => [t.token, t.record]));
  it.each([
    ["inside the list", "198.51.100.1", "ok", "ok"],
    ["a mapped address inside the list", "::ffff:198.51.100.1", "ok", "ok"],
    ["an ipv6 address inside the list", "2001:db8::99", "ok", "ok"],
    ["outside the list", "203.0.113.10", "ip_allowlist_blocked", "not_allowed"],
    ["an unknown source fails any allowlist", "", "ip_allowlist_blocked", "unknown_source_ip"],
    ["an unparseable source is invalid_request", "198.51.100.300", "invalid_request", "bad_source_ip"],
  ])("%s (%s) → %s/%s", (_name, sourceIp, code, reason) => {
    const decision = judge(request({ token: office.token, sourceIp }), policy, tokens, NOW_MS);
    expect([decision.code, decision.reason]).toEqual([code, reason]);
    if (code === "ip_allowlist_blocked") {
      expect(decision.httpStatus).toBe(403);
      expect(decision.auditEvent).toBe("auth.api_token_ip_allowlist_blocked");
      expect(decision.ruleId).toBe(`token:${office.record.id}`);
      expect(decision.details.source_ip).toBe(sourceIp);
      expect(decision.identity?.tokenId).toBe(office.record.id);
    }
  });

  it("lets a token without an allowlist in from anywhere, even an unknown source", () => {
    expect(judge(request({ token: open.token, sourceIp: "" }), policy, tokens, NOW_MS).code).toBe("ok");
  });
});
