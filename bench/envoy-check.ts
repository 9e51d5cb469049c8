/**
 * Envoy `CheckRequest`s for the bench, encoded from Envoy's own protos (the
 * copies `@grpc/grpc-js-xds` ships under `deps/`) with `@grpc/proto-loader`.
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import * as protoLoader from "@grpc/proto-loader";
import { REPO_ROOT } from "./fixtures.js";

/** The gRPC path of Envoy's ext_authz `Check`. */
export const CHECK_PATH = "/envoy.service.auth.v3.Authorization/Check";

/** Whether someone has added the Envoy transport to the source tree yet. */
export function envoyTransportExists(): boolean {
  return existsSync(path.join(REPO_ROOT, "src", "transport", "envoy.ts"));
}

/** The facts of one request, as Envoy would put them in `attributes`. */
export interface CheckFields {
  readonly method: string;
  readonly path: string;
  readonly host: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly sourceIp: string;
}

export interface CheckCodec {
  encode(fields: CheckFields): Buffer;
  /** `status.code` of a `CheckResponse`: 0 allows. */
  statusCode(bytes: Buffer): number;
}

/** Loads Envoy's `external_auth.proto`; throws when `@grpc/grpc-js-xds` is not installed. */
export function loadCheckCodec(): CheckCodec {
  const require = createRequire(import.meta.url);
  const deps = path.join(path.dirname(require.resolve("@grpc/grpc-js-xds/package.json")), "deps");
  const definition = protoLoader.loadSync("envoy/service/auth/v3/external_auth.proto", {
    includeDirs: ["envoy-api", "xds", "googleapis", "protoc-gen-validate"].map((dir) => path.join(deps, dir)),
    longs: String,
    enums: String,
    defaults: false,
    oneofs: true,
  });
  const service = definition["envoy.service.auth.v3.Authorization"] as protoLoader.ServiceDefinition;
  const check = service["Check"]!;
  return {
    encode: (fields) =>
      check.requestSerialize({
        attributes: {
          source: { address: { socketAddress: { address: fields.sourceIp, portValue: 40_000 } } },
          destination: { address: { socketAddress: { address: "10.0.0.2", portValue: 8080 } } },
          request: {
            http: {
              id: "1234567890",
              method: fields.method,
              path: fields.path,
              host: fields.host,
              scheme: "https",
              protocol: "HTTP/1.1",
              headers: { ":authority": fields.host, ":method": fields.method, ":path": fields.path, ...fields.headers },
            },
          },
        },
      }),
    statusCode: (bytes) => {
      const response = check.responseDeserialize(bytes) as { status?: { code?: number } };
      return response.status?.code ?? 0;
    },
  };
}
