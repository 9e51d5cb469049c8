import { describe, expect, it } from "vitest";
import { ConfigError, resolveServeConfig } from "../../src/config/config.js";

describe("watchPolicies config", () => {
  it.each([
    { name: "on by default", flags: {}, env: {}, want: true },
    { name: "off by --no-watch-policies", flags: { watchPolicies: false }, env: { PORTCULLIS_WATCH_POLICIES: "true" }, want: false },
    { name: "off by PORTCULLIS_WATCH_POLICIES=false", flags: { watchPolicies: true }, env: { PORTCULLIS_WATCH_POLICIES: "false" }, want: false },
    { name: "on by PORTCULLIS_WATCH_POLICIES=1", flags: {}, env: { PORTCULLIS_WATCH_POLICIES: "1" }, want: true },
  ])("$name", ({ flags, env, want }) => {
    expect(resolveServeConfig(flags, env).watchPolicies).toBe(want);
  });

  it("refuses a value that is not a boolean", () => {
    expect(() => resolveServeConfig({}, { PORTCULLIS_WATCH_POLICIES: "sometimes" })).toThrow(new ConfigError("invalid PORTCULLIS_WATCH_POLICIES `sometimes`: expected true or false"));
  });
});
