/** The settings of `serve` for fleets: the gRPC max connection age, its grace, and the number of worker processes. */
import os from "node:os";
import { describe, expect, it } from "vitest";
import { ConfigError, resolveServeConfig } from "../../src/config/config.js";

describe("--grpc-max-connection-age and its grace", () => {
  it("default to 10 minutes and 30 seconds", () => {
    const config = resolveServeConfig({}, {});
    expect(config.grpcMaxConnectionAgeMs).toBe(600_000);
    expect(config.grpcMaxConnectionAgeGraceMs).toBe(30_000);
  });

  it("read flags over the environment, and 0s turns the age off", () => {
    const env = { PORTCULLIS_GRPC_MAX_CONNECTION_AGE: "2h", PORTCULLIS_GRPC_MAX_CONNECTION_AGE_GRACE: "1m" };
    expect(resolveServeConfig({}, env)).toMatchObject({ grpcMaxConnectionAgeMs: 7_200_000, grpcMaxConnectionAgeGraceMs: 60_000 });
    expect(resolveServeConfig({ grpcMaxConnectionAge: "0s", grpcMaxConnectionAgeGrace: "5s" }, env)).toMatchObject({ grpcMaxConnectionAgeMs: 0, grpcMaxConnectionAgeGraceMs: 5_000 });
  });

  it.each(["10", "ten minutes", "-1m", "25d"])("refuses %s, naming the flag and the variable", (value) => {
    expect(() => resolveServeConfig({ grpcMaxConnectionAge: value }, {})).toThrow(ConfigError);
    expect(() => resolveServeConfig({}, { PORTCULLIS_GRPC_MAX_CONNECTION_AGE_GRACE: value })).toThrow(/--grpc-max-connection-age-grace \(PORTCULLIS_GRPC_MAX_CONNECTION_AGE_GRACE\)/);
  });
});

describe("--workers", () => {
  it("defaults to 1, reads a number or auto (one per core)", () => {
    expect(resolveServeConfig({}, {}).workers).toBe(1);
    expect(resolveServeConfig({}, { PORTCULLIS_WORKERS: "4" }).workers).toBe(4);
    expect(resolveServeConfig({ workers: "2" }, { PORTCULLIS_WORKERS: "4" }).workers).toBe(2);
    expect(resolveServeConfig({ workers: "auto" }, {}).workers).toBe(os.availableParallelism());
  });

  it.each(["0", "-2", "1.5", "many", "257"])("refuses %s", (value) => {
    expect(() => resolveServeConfig({ workers: value }, {})).toThrow(new ConfigError(`invalid --workers (PORTCULLIS_WORKERS) \`${value}\`: expected a number of processes from 1 to 256, or auto (one per core)`));
  });
});
