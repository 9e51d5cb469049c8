/**
 * A gRPC client for `envoy.service.auth.v3.Authorization/Check` built from
 * Envoy's own protos (shipped by `@grpc/grpc-js-xds` under `deps/`) with
 * `@grpc/proto-loader`: the independent reference the conformance test holds
 * Portcullis's hand-written codec to. Field names stay snake_case, enums stay
 * numbers, defaults are filled: what Envoy's C++ reads.
 */
import { createRequire } from "node:module";
import path from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

const require = createRequire(import.meta.url);

/** The folders under `@grpc/grpc-js-xds/deps` that Envoy's protos import from. */
export function envoyProtoIncludeDirs(): string[] {
  const deps = path.join(path.dirname(require.resolve("@grpc/grpc-js-xds/package.json")), "deps");
  return ["envoy-api", "xds", "googleapis", "protoc-gen-validate"].map((dir) => path.join(deps, dir));
}

let checkDefinition: protoLoader.MethodDefinition<object, object> | undefined;

/** `Authorization.Check` from Envoy's full `external_auth.proto`. */
export function envoyCheckMethod(): protoLoader.MethodDefinition<object, object> {
  if (checkDefinition !== undefined) return checkDefinition;
  const definition = protoLoader.loadSync("envoy/service/auth/v3/external_auth.proto", {
    includeDirs: envoyProtoIncludeDirs(),
    keepCase: true,
    longs: String,
    defaults: true,
    oneofs: true,
  });
  const service = definition["envoy.service.auth.v3.Authorization"] as protoLoader.ServiceDefinition;
  checkDefinition = service["Check"]!;
  return checkDefinition;
}

/** A `google.protobuf.Struct` as proto-loader decodes it, turned into plain JSON. */
export function structToJson(struct: any): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(struct?.fields ?? {})) out[key] = valueToJson(value);
  return out;
}

// protobufjs ships google.protobuf's types with camelCase names, whatever keepCase says.
function valueToJson(value: any): unknown {
  switch (value.kind) {
    case "stringValue":
      return value.stringValue;
    case "numberValue":
      return value.numberValue;
    case "boolValue":
      return value.boolValue;
    case "listValue":
      return (value.listValue.values ?? []).map(valueToJson);
    case "structValue":
      return structToJson(value.structValue);
    default:
      return null;
  }
}

export interface EnvoyCheckClient {
  /** Sends a `CheckRequest` (snake_case object) and resolves to the decoded `CheckResponse`. */
  check(request: object): Promise<any>;
  /** Sends raw bytes and resolves to the decoded `CheckResponse`. */
  checkBytes(bytes: Buffer): Promise<any>;
  close(): void;
}

/** A client for `address`; pass `credentials` (e.g. `grpc.credentials.createSsl(…)`) and channel options to call over TLS. */
export function envoyCheckClient(address: string, credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure(), options: grpc.ChannelOptions = {}): EnvoyCheckClient {
  const method = envoyCheckMethod();
  const client = new grpc.Client(address, credentials, options);
  const call = <T>(serialize: (value: T) => Buffer, value: T): Promise<any> =>
    new Promise((resolve, reject) =>
      client.makeUnaryRequest(method.path, serialize, method.responseDeserialize, value, (error, response) => (error ? reject(error) : resolve(response))),
    );
  return {
    check: (request) => call(method.requestSerialize, request),
    checkBytes: (bytes) => call((b: Buffer) => b, bytes),
    close: () => client.close(),
  };
}
