/**
 * `grpc.health.v1.Health` (https://github.com/grpc/grpc/blob/master/doc/health-checking.md):
 * Check, List and Watch over the statuses the server sets as it starts and drains.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  HealthCheckRequestSchema,
  HealthCheckResponse_ServingStatus as ServingStatus,
  HealthCheckResponseSchema,
  HealthListResponseSchema,
} from "../gen/grpc/health/v1/health_pb.js";
import { GrpcError, GrpcStatus, type GrpcMethod } from "./grpc-server.js";

export type HealthState = "SERVING" | "NOT_SERVING";

/** Past this many services, List answers RESOURCE_EXHAUSTED, as the protocol allows. */
const LIST_LIMIT = 100;

/** The statuses by service name (`""` is the server as a whole) and who watches them. */
export class Health {
  private readonly statuses = new Map<string, HealthState>();
  private readonly watchers = new Map<string, Set<(status: ServingStatus) => void>>();

  constructor(initial: Readonly<Record<string, HealthState>> = {}) {
    for (const [service, state] of Object.entries(initial)) this.statuses.set(service, state);
  }

  setStatus(service: string, state: HealthState): void {
    this.statuses.set(service, state);
    for (const watcher of this.watchers.get(service) ?? []) watcher(ServingStatus[state]);
  }

  /** The three methods, by gRPC path. */
  methods(): Map<string, GrpcMethod> {
    return new Map<string, GrpcMethod>([
      ["/grpc.health.v1.Health/Check", { kind: "unary", handle: (request) => this.check(request) }],
      ["/grpc.health.v1.Health/List", { kind: "unary", handle: () => this.list() }],
      ["/grpc.health.v1.Health/Watch", { kind: "server-streaming", handle: (request, _call, send) => this.watch(request, send) }],
    ]);
  }

  private check(request: Buffer): Uint8Array {
    const service = serviceOf(request);
    const state = this.statuses.get(service);
    if (state === undefined) throw new GrpcError(GrpcStatus.NOT_FOUND, `no health status for service \`${service}\``);
    return response(ServingStatus[state]);
  }

  private list(): Uint8Array {
    if (this.statuses.size > LIST_LIMIT) throw new GrpcError(GrpcStatus.RESOURCE_EXHAUSTED, `more than ${LIST_LIMIT} services`);
    const statuses: Record<string, { status: ServingStatus }> = {};
    for (const [service, state] of this.statuses) statuses[service] = { status: ServingStatus[state] };
    return toBinary(HealthListResponseSchema, create(HealthListResponseSchema, { statuses }));
  }

  /** Sends the current status (SERVICE_UNKNOWN for a service never set), then every change, until the call ends. */
  private watch(request: Buffer, send: (message: Uint8Array) => void): () => void {
    const service = serviceOf(request);
    const watcher = (status: ServingStatus) => send(response(status));
    let watchers = this.watchers.get(service);
    if (watchers === undefined) this.watchers.set(service, (watchers = new Set()));
    watchers.add(watcher);
    const state = this.statuses.get(service);
    watcher(state === undefined ? ServingStatus.SERVICE_UNKNOWN : ServingStatus[state]);
    return () => {
      watchers.delete(watcher);
      if (watchers.size === 0) this.watchers.delete(service);
    };
  }
}

function serviceOf(request: Buffer): string {
  try {
    return fromBinary(HealthCheckRequestSchema, request).service;
  } catch {
    throw new GrpcError(GrpcStatus.INTERNAL, "the request does not decode as a HealthCheckRequest");
  }
}

function response(status: ServingStatus): Uint8Array {
  return toBinary(HealthCheckResponseSchema, create(HealthCheckResponseSchema, { status }));
}
