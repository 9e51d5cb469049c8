import { describe, expect, it } from "vitest";
import { nearestMiss } from "../../src/explain/nearest-cidr.js";

describe("nearestMiss", () => {
  it.each([
    { name: "an address inside a CIDR", address: "198.51.100.20", cidrs: ["10.0.0.0/8", "198.51.100.0/24"], want: { cidr: "198.51.100.0/24", commonBits: 27, matched: true } },
    { name: "a miss names the CIDR sharing the most leading bits", address: "198.51.101.20", cidrs: ["10.0.0.0/8", "198.51.100.0/24"], want: { cidr: "198.51.100.0/24", commonBits: 23, matched: false } },
    { name: "an IPv4-mapped IPv6 address is judged as its IPv4 address", address: "::ffff:198.51.100.20", cidrs: ["198.51.100.0/24"], want: { cidr: "198.51.100.0/24", commonBits: 27, matched: true } },
    { name: "IPv6 against IPv6 only", address: "2001:db8:100::5", cidrs: ["198.51.100.0/24", "2001:db8:100::/48"], want: { cidr: "2001:db8:100::/48", commonBits: 125, matched: true } },
    { name: "a bare address is a /32", address: "203.0.113.9", cidrs: ["203.0.113.8"], want: { cidr: "203.0.113.8", commonBits: 31, matched: false } },
  ])("$name", ({ address, cidrs, want }) => {
    expect(nearestMiss(address, cidrs)).toEqual(want);
  });

  it("answers null when no CIDR is of the address's family", () => {
    expect(nearestMiss("2001:db8::1", ["10.0.0.0/8"])).toBeNull();
    expect(nearestMiss("not an ip", ["10.0.0.0/8"])).toBeNull();
  });
});
