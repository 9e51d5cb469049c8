/** grpc-js client definitions for the gRPC port: the independent client the tests call it with. */
import { fromBinary, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";

/** A unary method definition whose messages are protobuf-es schemas. */
export function unaryMethod<I extends DescMessage, O extends DescMessage>(path: string, input: I, output: O): grpc.MethodDefinition<MessageShape<I>, MessageShape<O>> {
  return {
    path,
    requestStream: false,
    responseStream: false,
    requestSerialize: (message) => Buffer.from(toBinary(input, message)),
    requestDeserialize: (bytes) => fromBinary(input, bytes),
    responseSerialize: (message) => Buffer.from(toBinary(output, message)),
    responseDeserialize: (bytes) => fromBinary(output, bytes),
  };
}
