/** `grpc.health.v1.Health` as a grpc-js client calls it, on the gRPC server with only this service. */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  HealthCheckRequestSchema,
  HealthCheckResponse_ServingStatus as ServingStatus,
  HealthCheckResponseSchema,
  HealthListResponseSchema,
} from "../../src/gen/grpc/health/v1/health_pb.js";
import { createGrpcServer, type GrpcServer } from "../../src/transport/grpc-server.js";
import { Health } from "../../src/transport/health.js";

const health = new Health({ "": "SERVING", "portcullis.v1.AuthorizationService": "NOT_SERVING" });
let server: GrpcServer;
let client: grpc.Client;

beforeAll(async () => {
  server = createGrpcServer({ methods: health.methods(), maxMessageBytes: 1024 });
  client = new grpc.Client(`127.0.0.1:${await server.listen("127.0.0.1", 0)}`, grpc.credentials.createInsecure());
});
afterAll(async () => {
  client.close();
  await server.close(1_000);
});

const bytes = (b: Buffer): Buffer => b;
const request = (service: string): Buffer => Buffer.from(toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema, { service })));
const statusOf = (message: Buffer): ServingStatus => fromBinary(HealthCheckResponseSchema, message).status;

function unary(method: string, body: Buffer): Promise<{ error: grpc.ServiceError | null; response: Buffer | undefined }> {
  return new Promise((resolve) => client.makeUnaryRequest(`/grpc.health.v1.Health/${method}`, bytes, bytes, body, (error, response) => resolve({ error, response })));
}

describe("Health", () => {
  it("answers Check with each service's status, and NOT_FOUND for one never set", async () => {
    expect(statusOf((await unary("Check", request(""))).response!)).toBe(ServingStatus.SERVING);
    expect(statusOf((await unary("Check", request("portcullis.v1.AuthorizationService"))).response!)).toBe(ServingStatus.NOT_SERVING);
    expect((await unary("Check", request("nope"))).error).toMatchObject({ code: grpc.status.NOT_FOUND, details: "no health status for service `nope`" });
    expect((await unary("Check", Buffer.from([0xff]))).error!.code).toBe(grpc.status.INTERNAL);
  });

  it("lists every status", async () => {
    const listed = fromBinary(HealthListResponseSchema, (await unary("List", Buffer.alloc(0))).response!);
    expect(Object.fromEntries(Object.entries(listed.statuses).map(([service, value]) => [service, value.status]))).toEqual({
      "": ServingStatus.SERVING,
      "portcullis.v1.AuthorizationService": ServingStatus.NOT_SERVING,
    });
  });

  it("streams Watch: the current status (SERVICE_UNKNOWN before any), then each change, until the client cancels", async () => {
    const seen: ServingStatus[] = [];
    const watch = client.makeServerStreamRequest("/grpc.health.v1.Health/Watch", bytes, bytes, request("later"));
    watch.on("data", (message: Buffer) => seen.push(statusOf(message)));
    watch.on("error", () => undefined);
    await expect.poll(() => seen).toEqual([ServingStatus.SERVICE_UNKNOWN]);
    health.setStatus("later", "SERVING");
    health.setStatus("other", "NOT_SERVING");
    health.setStatus("later", "NOT_SERVING");
    await expect.poll(() => seen).toEqual([ServingStatus.SERVICE_UNKNOWN, ServingStatus.SERVING, ServingStatus.NOT_SERVING]);
    watch.cancel();
    // A cancelled watcher is dropped: later changes reach nobody and break nothing.
    await new Promise((resolve) => setTimeout(resolve, 50));
    health.setStatus("later", "SERVING");
    expect(seen).toHaveLength(3);
    expect(statusOf((await unary("Check", request("later"))).response!)).toBe(ServingStatus.SERVING);
  });
});
