/**
 * The protobuf wire format of Envoy's `CheckRequest` and `CheckResponse`,
 * written by hand for the fields Portcullis reads and writes. Check runs on
 * every request behind Envoy: the reflective codec of the generated subset
 * (`src/gen/envoy/…`) costs about 30 µs to decode a typical request and far
 * more to encode a `Struct`, against a budget of a few microseconds, so this
 * module reads straight into the header map and writes into one reused buffer.
 *
 * Field numbers are those of `proto/envoy/…` (Envoy's own, see
 * https://github.com/envoyproxy/envoy/tree/main/api/envoy/service/auth/v3);
 * test/envoy/ checks both directions against Envoy's full protos and against
 * the generated subset. Unknown fields are skipped, as protobuf requires.
 */
import type { HeaderField, MetadataEntry } from "../engine/types.js";

/** What Check reads from a `CheckRequest`, already in the shape a transport wants. */
export interface CheckAttributes {
  /** `attributes.source.address.socket_address.address`; `""` when absent. */
  sourceAddress: string;
  /** `attributes.source.principal`: the peer certificate's URI or DNS SAN (or subject). */
  principal: string;
  /** `attributes.source.certificate`: URL-encoded PEM; only with `include_peer_certificate`. */
  certificate: string;
  /** `attributes.tls_session.sni`; only with `include_tls_session`. */
  sni: string;
  /** `attributes.request.http.id`: Envoy's request id. */
  requestId: string;
  method: string;
  /** The raw request target, query included. */
  path: string;
  host: string;
  scheme: string;
  protocol: string;
  /**
   * Headers from `headers` and `header_map`, lower-case names, pseudo-headers
   * left out, repeats merged with `", "` as Envoy itself merges them.
   */
  readonly headers: Map<string, string>;
  /** Headers whose names `isSetAside` picked, kept out of `headers`; `null` when none came. */
  setAside: Map<string, string> | null;
}

/** A `google.protobuf.Value` as Check writes it: a string or a list of strings. */
export type MetadataValue = string | readonly string[];

/** What Check writes into a `CheckResponse`. */
export interface CheckAnswer {
  /** `status.code`, a google.rpc.Code: 0 allows, anything else denies. */
  readonly rpcCode: number;
  readonly rpcMessage: string;
  /** `denied_response`, or `ok_response` when `null`. */
  readonly denied: { readonly httpStatus: number; readonly headers: readonly HeaderField[]; readonly body: string } | null;
  /** `ok_response.headers`: added upstream, each overwriting what the client sent. */
  readonly upstreamHeaders: readonly HeaderField[];
  /** `ok_response.headers_to_remove`. */
  readonly headersToRemove: readonly string[];
  /** `ok_response.response_headers_to_add`. */
  readonly responseHeadersToAdd: readonly HeaderField[];
  /** `dynamic_metadata`, a `google.protobuf.Struct`: the entries that change with each request. */
  readonly metadata: ReadonlyMap<string, MetadataValue>;
  /**
   * The identity's entries of `dynamic_metadata`, as the policy set chose them
   * (`[]` when the token is unknown). Kept apart because they are the same for
   * every request of a token: the encoding of a frozen list is cached.
   */
  readonly identityMetadata: readonly MetadataEntry[];
}

/** A `CheckRequest` that is not valid protobuf. */
export class CheckDecodeError extends Error {
  override readonly name = "CheckDecodeError";
}

const VARINT = 0;
const FIXED64 = 1;
const LEN = 2;
const FIXED32 = 5;

/** `envoy.config.core.v3.HeaderValueOption.HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD`. */
const OVERWRITE_IF_EXISTS_OR_ADD = 2;

/**
 * Decodes a `CheckRequest`. Headers named by `isSetAside` (lower-case) go to
 * `setAside` instead of `headers`. Throws {@link CheckDecodeError} on bytes
 * that are not protobuf.
 */
export function decodeCheckRequest(bytes: Buffer, isSetAside: (name: string) => boolean): CheckAttributes {
  const out: CheckAttributes = {
    sourceAddress: "",
    principal: "",
    certificate: "",
    sni: "",
    requestId: "",
    method: "",
    path: "",
    host: "",
    scheme: "",
    protocol: "",
    headers: new Map(),
    setAside: null,
  };
  const r = new Reader(bytes, isSetAside, out);
  // CheckRequest { attributes = 1 }
  for (let end = bytes.length; r.pos < end; ) {
    const tag = r.varint();
    if (tag === ((1 << 3) | LEN)) r.attributes(r.lengthEnd(end));
    else r.skip(tag, end);
  }
  return out;
}

/**
 * A cursor over one message. Each `read…` method consumes one sub-message up
 * to its end offset, handles the fields Check reads and skips the rest. Plain
 * loops rather than callbacks: this runs for every request behind Envoy.
 */
class Reader {
  pos = 0;
  constructor(
    private readonly buf: Buffer,
    private readonly isSetAside: (name: string) => boolean,
    private readonly out: CheckAttributes,
  ) {}

  /** AttributeContext { source = 1; request = 4; tls_session = 12 } */
  attributes(end: number): void {
    while (this.pos < end) {
      const tag = this.varint();
      if (tag === ((1 << 3) | LEN)) this.peer(this.lengthEnd(end));
      else if (tag === ((4 << 3) | LEN)) this.request(this.lengthEnd(end));
      else if (tag === ((12 << 3) | LEN)) this.out.sni = this.stringField(this.lengthEnd(end), 1);
      else this.skip(tag, end);
    }
    this.expectEnd(end);
  }

  /** Peer { address = 1 { socket_address = 1 { address = 2 } }; principal = 4; certificate = 5 } */
  peer(end: number): void {
    while (this.pos < end) {
      const tag = this.varint();
      if (tag === ((1 << 3) | LEN)) {
        const addressEnd = this.lengthEnd(end);
        while (this.pos < addressEnd) {
          const inner = this.varint();
          if (inner === ((1 << 3) | LEN)) this.out.sourceAddress = this.stringField(this.lengthEnd(addressEnd), 2);
          else this.skip(inner, addressEnd);
        }
        this.expectEnd(addressEnd);
      } else if (tag === ((4 << 3) | LEN)) this.out.principal = this.string(this.lengthEnd(end));
      else if (tag === ((5 << 3) | LEN)) this.out.certificate = this.string(this.lengthEnd(end));
      else this.skip(tag, end);
    }
    this.expectEnd(end);
  }

  /** Request { http = 2 } */
  request(end: number): void {
    while (this.pos < end) {
      const tag = this.varint();
      if (tag === ((2 << 3) | LEN)) this.http(this.lengthEnd(end));
      else this.skip(tag, end);
    }
    this.expectEnd(end);
  }

  /** HttpRequest { id = 1; method = 2; headers = 3 (map); path = 4; host = 5; scheme = 6; protocol = 10; header_map = 13 } */
  http(end: number): void {
    const out = this.out;
    while (this.pos < end) {
      const tag = this.varint();
      if ((tag & 7) !== LEN) {
        this.skip(tag, end);
        continue;
      }
      const fieldEnd = this.lengthEnd(end);
      switch (tag >>> 3) {
        case 1:
          out.requestId = this.string(fieldEnd);
          break;
        case 2:
          out.method = this.string(fieldEnd);
          break;
        case 3:
          this.header(fieldEnd);
          break;
        case 4:
          out.path = this.string(fieldEnd);
          break;
        case 5:
          out.host = this.string(fieldEnd);
          break;
        case 6:
          out.scheme = this.string(fieldEnd);
          break;
        case 10:
          out.protocol = this.string(fieldEnd);
          break;
        case 13:
          // HeaderMap { repeated HeaderValue headers = 1 }
          while (this.pos < fieldEnd) {
            const inner = this.varint();
            if (inner === ((1 << 3) | LEN)) this.header(this.lengthEnd(fieldEnd));
            else this.skip(inner, fieldEnd);
          }
          break;
        default:
          break;
      }
      this.pos = fieldEnd;
    }
    this.expectEnd(end);
  }

  /** A map entry { key = 1; value = 2 }, or a HeaderValue { key = 1; value = 2; raw_value = 3 }: the same numbers. */
  header(end: number): void {
    // Offsets first, strings after: a pseudo-header (`:path`, …, read from their own attributes) costs no string.
    let keyStart = 0;
    let keyEnd = 0;
    let valueStart = 0;
    let valueEnd = 0;
    let rawStart = 0;
    let rawEnd = 0;
    while (this.pos < end) {
      const tag = this.varint();
      if (tag === ((1 << 3) | LEN)) {
        keyEnd = this.lengthEnd(end);
        keyStart = this.pos;
        this.pos = keyEnd;
      } else if (tag === ((2 << 3) | LEN)) {
        valueEnd = this.lengthEnd(end);
        valueStart = this.pos;
        this.pos = valueEnd;
      } else if (tag === ((3 << 3) | LEN)) {
        rawEnd = this.lengthEnd(end);
        rawStart = this.pos;
        this.pos = rawEnd;
      } else this.skip(tag, end);
    }
    this.expectEnd(end);
    if (keyStart === keyEnd || this.buf[keyStart] === 58 /* ":" */) return;
    const value = valueStart !== valueEnd ? this.buf.toString("utf8", valueStart, valueEnd) : this.buf.toString("latin1", rawStart, rawEnd);
    this.addHeader(this.buf.toString("utf8", keyStart, keyEnd), value);
  }

  addHeader(rawName: string, value: string): void {
    const name = rawName.toLowerCase();
    if (this.isSetAside(name)) {
      const setAside = (this.out.setAside ??= new Map());
      const previous = setAside.get(name);
      setAside.set(name, previous === undefined ? value : `${previous}, ${value}`);
      return;
    }
    const headers = this.out.headers;
    const previous = headers.get(name);
    headers.set(name, previous === undefined ? value : `${previous}, ${value}`);
  }

  /** String field `wanted` of the message ending at `end`; the last occurrence wins, as protobuf says. */
  stringField(end: number, wanted: number): string {
    let value = "";
    const wantedTag = (wanted << 3) | LEN;
    while (this.pos < end) {
      const tag = this.varint();
      if (tag === wantedTag) value = this.string(this.lengthEnd(end));
      else this.skip(tag, end);
    }
    this.expectEnd(end);
    return value;
  }

  /** Reads a length prefix and returns where the field ends, which must lie within `end`. */
  lengthEnd(end: number): number {
    const length = this.varint();
    const fieldEnd = this.pos + length;
    if (fieldEnd > end) throw new CheckDecodeError("length runs past the end of the message");
    return fieldEnd;
  }

  /** The string from the cursor to `end`; moves the cursor to `end`. */
  string(end: number): string {
    const value = this.buf.toString("utf8", this.pos, end);
    this.pos = end;
    return value;
  }

  varint(): number {
    const buf = this.buf;
    if (this.pos >= buf.length) throw new CheckDecodeError("truncated varint");
    const first = buf[this.pos++]!;
    if (first < 0x80) return first;
    let result = first & 0x7f;
    let scale = 0x80;
    for (let i = 1; i < 10; i++) {
      if (this.pos >= buf.length) throw new CheckDecodeError("truncated varint");
      const byte = buf[this.pos++]!;
      // Bits past 2^53 only occur in fields skipped here; lengths and tags fit in 32 bits.
      if (i < 8) result += (byte & 0x7f) * scale;
      if (byte < 0x80) return result;
      scale *= 0x80;
    }
    throw new CheckDecodeError("varint longer than 10 bytes");
  }

  /** Skips the field whose tag was just read. */
  skip(tag: number, end: number): void {
    if (tag >>> 3 === 0) throw new CheckDecodeError("field number 0");
    switch (tag & 7) {
      case VARINT:
        this.varint();
        break;
      case FIXED64:
        this.pos += 8;
        break;
      case LEN:
        this.pos = this.lengthEnd(end);
        break;
      case FIXED32:
        this.pos += 4;
        break;
      default:
        throw new CheckDecodeError(`unsupported wire type ${tag & 7}`);
    }
    if (this.pos > end) throw new CheckDecodeError("field runs past the end of the message");
  }

  expectEnd(end: number): void {
    if (this.pos !== end) throw new CheckDecodeError("message runs past its length");
  }
}

/**
 * Encodes a `CheckResponse`. The returned buffer is a fresh copy; the working
 * buffer is reused across calls (Check is synchronous, so calls never overlap).
 */
export function encodeCheckResponse(answer: CheckAnswer): Buffer {
  writer.pos = 0;
  writeCheckResponse(writer, answer);
  return Buffer.from(writer.buf.subarray(0, writer.pos));
}

/** Encodes a `CheckResponse` as one gRPC length-prefixed message (uncompressed), ready for the wire: one copy, not two. */
export function encodeFramedCheckResponse(answer: CheckAnswer): Buffer {
  const w = writer;
  w.pos = GRPC_PREFIX_BYTES;
  writeCheckResponse(w, answer);
  w.buf[0] = 0;
  w.buf.writeUInt32BE(w.pos - GRPC_PREFIX_BYTES, 1);
  return Buffer.from(w.buf.subarray(0, w.pos));
}

const GRPC_PREFIX_BYTES = 5;

function writeCheckResponse(w: Writer, answer: CheckAnswer): void {
  // status = 1: google.rpc.Status { code = 1; message = 2 }
  let start = w.beginLen(1);
  if (answer.rpcCode !== 0) w.varintField(1, answer.rpcCode);
  if (answer.rpcMessage !== "") w.stringField(2, answer.rpcMessage);
  w.endLen(start);

  if (answer.denied !== null) {
    // denied_response = 2: { status = 1 { code = 1 }; repeated headers = 2; body = 3 }
    start = w.beginLen(2);
    const status = w.beginLen(1);
    w.varintField(1, answer.denied.httpStatus);
    w.endLen(status);
    for (const [name, value] of answer.denied.headers) w.headerOption(2, name, value);
    if (answer.denied.body !== "") w.stringField(3, answer.denied.body);
    w.endLen(start);
  } else {
    // ok_response = 3: { repeated headers = 2; repeated headers_to_remove = 5; repeated response_headers_to_add = 6 }
    start = w.beginLen(3);
    w.bytes(encodedUpstreamHeaders(answer.upstreamHeaders));
    for (const name of answer.headersToRemove) w.stringField(5, name);
    for (const [name, value] of answer.responseHeadersToAdd) w.headerOption(6, name, value);
    w.endLen(start);
  }

  if (answer.metadata.size > 0 || answer.identityMetadata.length > 0) {
    // dynamic_metadata = 4: Struct { map<string, Value> fields = 1 }
    start = w.beginLen(4);
    writeStructEntries(w, answer.metadata);
    w.bytes(encodedIdentityEntries(answer.identityMetadata));
    w.endLen(start);
  }
}

/** Struct `fields` map entries: `{ key = 1; value = 2: Value { string_value = 3; list_value = 6 } }`. */
function writeStructEntries(w: Writer, entries: Iterable<readonly [string, MetadataValue]>): void {
  for (const [key, value] of entries) {
    const entry = w.beginLen(1);
    w.stringField(1, key);
    const valueStart = w.beginLen(2);
    if (typeof value === "string") w.stringField(3, value);
    else w.bytes(encodedList(value as readonly string[]));
    w.endLen(valueStart);
    w.endLen(entry);
  }
}

// The engine hands out one frozen list of identity metadata and one of upstream
// headers per token and policy revision, so their encodings are worth keeping:
// together they are most of an allow's bytes.
const encodedIdentities = new WeakMap<readonly MetadataEntry[], Buffer>();
const encodedUpstream = new WeakMap<readonly HeaderField[], Buffer>();

function encodedIdentityEntries(entries: readonly MetadataEntry[]): Buffer {
  let bytes = encodedIdentities.get(entries);
  if (bytes === undefined) {
    bytes = encodeStructEntries(entries);
    if (Object.isFrozen(entries)) encodedIdentities.set(entries, bytes);
  }
  return bytes;
}

function encodeStructEntries(entries: Iterable<readonly [string, MetadataValue]>): Buffer {
  const w = new Writer(256);
  writeStructEntries(w, entries);
  return Buffer.from(w.buf.subarray(0, w.pos));
}

/** `ok_response.headers = 2` options, tags included. */
function encodedUpstreamHeaders(headers: readonly HeaderField[]): Buffer {
  const cached = encodedUpstream.get(headers);
  if (cached !== undefined) return cached;
  const w = new Writer(512);
  for (const [name, value] of headers) w.headerOption(2, name, value);
  const bytes = Buffer.from(w.buf.subarray(0, w.pos));
  if (Object.isFrozen(headers)) encodedUpstream.set(headers, bytes);
  return bytes;
}

/** `list_value = 6: ListValue { repeated Value values = 1 { string_value = 3 } }`, field tag included. */
function encodedList(items: readonly string[]): Buffer {
  const w = new Writer(256);
  const list = w.beginLen(6);
  for (const item of items) {
    const value = w.beginLen(1);
    w.stringField(3, item);
    w.endLen(value);
  }
  w.endLen(list);
  return w.buf.subarray(0, w.pos);
}

/** A protobuf writer into one growing buffer; shared with `authorize-wire.ts`. */
export class Writer {
  buf: Buffer;
  pos = 0;

  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size);
  }

  ensure(bytes: number): void {
    if (this.pos + bytes <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + bytes));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  /** A non-negative varint below 2^31, which is all Check writes: tags, lengths, codes and statuses. */
  varint(value: number): void {
    this.ensure(5);
    const buf = this.buf;
    let v = value;
    while (v > 0x7f) {
      buf[this.pos++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    buf[this.pos++] = v;
  }

  varintField(field: number, value: number): void {
    this.varint((field << 3) | VARINT);
    this.varint(value);
  }

  /** Writes a tag and reserves one length byte; {@link endLen} fills it, widening when the content passed 127 bytes. */
  beginLen(field: number): number {
    this.varint((field << 3) | LEN);
    this.ensure(1);
    return this.pos++;
  }

  endLen(lengthAt: number): void {
    const length = this.pos - lengthAt - 1;
    if (length < 0x80) {
      this.buf[lengthAt] = length;
      return;
    }
    let extra = 0;
    for (let v = length; v > 0x7f; v >>>= 7) extra++;
    this.ensure(extra);
    const buf = this.buf;
    buf.copyWithin(lengthAt + 1 + extra, lengthAt + 1, this.pos);
    this.pos += extra;
    let v = length;
    let at = lengthAt;
    while (v > 0x7f) {
      buf[at++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    buf[at] = v;
  }

  stringField(field: number, value: string): void {
    const start = this.beginLen(field);
    // UTF-8 takes at most three bytes per UTF-16 code unit.
    this.ensure(value.length * 3);
    const buf = this.buf;
    const length = value.length;
    let i = 0;
    // Short ASCII strings (header names, ids) are copied inline: cheaper than a call into the native encoder.
    if (length <= 64) {
      for (; i < length; i++) {
        const code = value.charCodeAt(i);
        if (code > 0x7f) break;
        buf[this.pos + i] = code;
      }
    }
    this.pos += i === length ? length : buf.write(value, this.pos);
    this.endLen(start);
  }

  bytes(value: Buffer): void {
    this.ensure(value.length);
    value.copy(this.buf, this.pos);
    this.pos += value.length;
  }

  /** A `HeaderValueOption { header = 1 { key = 1; value = 2 }; append_action = 3 }`. */
  headerOption(field: number, name: string, value: string): void {
    const start = this.beginLen(field);
    const header = this.beginLen(1);
    this.stringField(1, name);
    if (value !== "") this.stringField(2, value);
    this.endLen(header);
    this.varintField(3, OVERWRITE_IF_EXISTS_OR_ADD);
    this.endLen(start);
  }
}

const writer = new Writer(16 * 1024);
