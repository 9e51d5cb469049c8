/**
 * A faster UTF-8 path for protobuf-es. Every string field it encodes goes
 * through `TextEncoder.encode`, whose per-call overhead dominates for the short
 * ASCII strings decisions are made of (codes, ids, scopes, header names): an
 * `AuthorizeResponse` holds about sixty. Short ASCII strings are copied byte for
 * byte here; anything longer or non-ASCII still takes the standard path, so the
 * bytes are identical either way.
 */
import { configureTextEncoding } from "@bufbuild/protobuf/wire";

// Past this length the native encoder's per-byte speed wins over its per-call cost.
const SHORT = 64;

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const strictDecoder = new TextDecoder("utf-8", { fatal: true });

/** UTF-8 bytes of `text`; identical to `TextEncoder.encode`. */
export function encodeUtf8(text: string): Uint8Array<ArrayBuffer> {
  const length = text.length;
  if (length > SHORT) return encoder.encode(text);
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) {
    const code = text.charCodeAt(i);
    if (code >= 0x80) return encoder.encode(text);
    bytes[i] = code;
  }
  return bytes;
}

/** Text of UTF-8 `bytes`; identical to `TextDecoder.decode`, throwing on invalid bytes when `strict`. */
export function decodeUtf8(bytes: Uint8Array, strict?: boolean): string {
  const length = bytes.length;
  if (length <= SHORT) {
    let text = "";
    for (let i = 0; i < length; i++) {
      const byte = bytes[i]!;
      if (byte >= 0x80) return (strict ? strictDecoder : decoder).decode(bytes);
      text += String.fromCharCode(byte);
    }
    return text;
  }
  return (strict ? strictDecoder : decoder).decode(bytes);
}

/** Whether `text` is well-formed UTF-16 (no lone surrogates), so that it encodes to valid UTF-8. */
export function checkUtf8(text: string): boolean {
  return text.isWellFormed();
}

let installed = false;

/** Makes protobuf-es use these functions; idempotent. Call before the first message is encoded. */
export function installFastTextEncoding(): void {
  if (installed) return;
  configureTextEncoding({ encodeUtf8, decodeUtf8, checkUtf8 });
  installed = true;
}
