/**
 * The token format and keyed hash, in one import for the engine, the store and
 * tests. Pure: no I/O apart from `crypto`.
 */
export {
  BASE62_ALPHABET,
  TOKEN_BODY_LENGTH,
  TOKEN_CHECKSUM_LENGTH,
  TOKEN_RANDOM_LENGTH,
  generateToken,
  newTokenId,
  parseToken,
  type ParseTokenResult,
} from "./format.js";
export { constantTimeEqual, hashToken } from "./hash.js";
