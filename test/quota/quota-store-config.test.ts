/** `--quota-store` and `--quota-key-prefix` (and their env variables) resolve into the serve config, or refuse the start. */
import { describe, expect, it } from "vitest";
import { ConfigError, resolveServeConfig } from "../../src/config/config.js";

describe("quota store settings", () => {
  it.each([
    ["none given: in memory", {}, {}, { quotaStoreUrl: undefined, quotaKeyPrefix: undefined }],
    ["the flag", { quotaStore: "redis://127.0.0.1:6379" }, {}, { quotaStoreUrl: "redis://127.0.0.1:6379" }],
    ["the env", {}, { PORTCULLIS_QUOTA_STORE_URL: "rediss://user:pw@redis.internal:6380/2" }, { quotaStoreUrl: "rediss://user:pw@redis.internal:6380/2" }],
    ["the flag over the env", { quotaStore: "redis://a:6379" }, { PORTCULLIS_QUOTA_STORE_URL: "redis://b:6379" }, { quotaStoreUrl: "redis://a:6379" }],
    ["an empty env is none", {}, { PORTCULLIS_QUOTA_STORE_URL: " " }, { quotaStoreUrl: undefined }],
    ["a key prefix", { quotaStore: "redis://a:6379", quotaKeyPrefix: "fleet-a:" }, {}, { quotaStoreUrl: "redis://a:6379", quotaKeyPrefix: "fleet-a:" }],
    ["a key prefix from the env", {}, { PORTCULLIS_QUOTA_STORE_URL: "redis://a:6379", PORTCULLIS_QUOTA_KEY_PREFIX: "q:" }, { quotaKeyPrefix: "q:" }],
  ])("%s", (_name, flags, env, expected) => {
    const config = resolveServeConfig(flags, env);
    expect({ quotaStoreUrl: config.quotaStoreUrl, quotaKeyPrefix: config.quotaKeyPrefix }).toMatchObject(expected);
  });

  it.each([["http://127.0.0.1:6379"], ["127.0.0.1:6379"], ["redis://"], ["postgres://user:secret@db/portcullis"]])("refuses `%s`, without echoing it (it may hold a password)", (url) => {
    const resolve = () => resolveServeConfig({ quotaStore: url }, {});
    expect(resolve).toThrow(ConfigError);
    expect(resolve).toThrow(/--quota-store \(PORTCULLIS_QUOTA_STORE_URL\)/);
    expect(resolve).not.toThrow(/secret/);
  });
});
