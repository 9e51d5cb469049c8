/**
 * The first stage: turn raw request strings into facts the later stages read,
 * or answer `invalid_request` when the request cannot be judged at all.
 */
import { parseIpAddress } from "../policy/ip-allowlist-matcher.js";
import type { CompiledPolicySet, IpAddress } from "../policy/types.js";
import { normalizePath, type NormalizedTarget, type PathRejection } from "./path.js";
import type { AuthzInput } from "./types.js";

/** A request whose method, path, host and source address have been read. */
export interface PreparedRequest {
  readonly input: AuthzInput;
  /** The method exactly as sent: methods are case-sensitive (RFC 9110 §9.1), so `get` is not `GET`. */
  readonly method: string;
  /** `GET`, `HEAD` and `OPTIONS` are reads; every other method (`get` included) is a write. */
  readonly isWrite: boolean;
  readonly target: NormalizedTarget;
  /**
   * Environment the request targets: named by the policy set's environment
   * header when it names one and the request carries it, else by host, else
   * the policy set's default.
   */
  readonly environment: string;
  /** The source IP as given, validated; `""` when the caller sent none. */
  readonly sourceIp: string;
  /**
   * The source IP parsed once for every stage that reads it; an IPv4-mapped
   * IPv6 address is its IPv4 address. `null` when unknown, which fails every allowlist.
   */
  readonly sourceAddress: IpAddress | null;
}

/** Why a request is `invalid_request`. */
export interface InvalidRequest {
  readonly reason: string;
  readonly message: string;
}

const READ_METHODS: ReadonlySet<string> = new Set(["GET", "HEAD", "OPTIONS"]);
// RFC 9110 §5.6.2 tchar, so that a method can never smuggle separators.
const METHOD_PATTERN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

const PATH_MESSAGES: Record<PathRejection, string> = {
  not_origin_form: "request path must start with `/`",
  bad_percent_encoding: "request path has a malformed percent-encoding",
  encoded_slash: "request path contains an encoded slash (`%2F`)",
  encoded_backslash: "request path contains an encoded backslash (`%5C`)",
  encoded_nul: "request path contains an encoded nul (`%00`)",
  forbidden_character: "request path contains a character that must be percent-encoded",
  dot_segment_parameters: "request path has a dot or empty segment with `;` parameters, which servlet containers resolve",
  path_parameters: "request path has a `;` parameter, which this policy set refuses",
  double_encoding: "request path contains a doubly percent-encoded character (`%25` and two hex digits)",
  invalid_utf8: "request path has percent-encoded bytes that are not well-formed utf-8",
  unnormalized_unicode: "request path has unicode characters that normalise (nfkc) to other characters",
  ambiguous_dot_segment: "request path has a segment of dots and spaces other than `.` and `..`",
};

/**
 * Reads method, path, host and source IP. Returns the invalid-request reason
 * when any of them cannot be understood; never throws.
 */
export function prepareRequest(
  input: AuthzInput,
  policy: CompiledPolicySet,
): { ok: true; request: PreparedRequest } | { ok: false; invalid: InvalidRequest } {
  // why: never case-fold; `toUpperCase` turns `get` into a read and `gıt` into `GIT`
  const method = input.method;
  if (!METHOD_PATTERN.test(method)) {
    return { ok: false, invalid: { reason: "bad_method", message: `request method \`${input.method}\` is not a valid http method` } };
  }
  const normalized = normalizePath(input.path, { parameters: policy.pathParameters });
  if (!normalized.ok) {
    return { ok: false, invalid: { reason: normalized.reason, message: PATH_MESSAGES[normalized.reason] } };
  }
  const sourceAddress = input.sourceIp === "" ? null : parseIpAddress(input.sourceIp);
  if (input.sourceIp !== "" && sourceAddress === null) {
    return { ok: false, invalid: { reason: "bad_source_ip", message: `source ip \`${input.sourceIp}\` is not an ip address` } };
  }
  const environment = environmentOfRequest(input, policy);
  if (!environment.ok) return environment;
  return {
    ok: true,
    request: {
      input,
      method,
      isWrite: !READ_METHODS.has(method),
      target: normalized.value,
      environment: environment.name,
      sourceIp: input.sourceIp,
      sourceAddress,
    },
  };
}

/**
 * The environment a request targets. When the policy set names an environment
 * header and the request carries it, its value must be exactly one
 * environment's name, and it wins over the host. Anything else in it (an
 * unknown name, an empty value, two headers, which every transport merges into
 * one value joined by `", "`) is `invalid_request`: guessing would judge the
 * request for an environment the upstream, which routes by the same header,
 * may not serve, and falling back to the host would let a typo slip a request
 * past the environment check.
 */
export function environmentOfRequest(
  input: AuthzInput,
  policy: CompiledPolicySet,
): { ok: true; name: string } | { ok: false; invalid: InvalidRequest } {
  const header = policy.environmentHeader;
  const value = header === null ? undefined : input.headers.get(header);
  if (value === undefined) return { ok: true, name: environmentOfHost(input.host, policy) };
  if (policy.environmentNames.has(value)) return { ok: true, name: value };
  if (value.includes(",")) {
    return { ok: false, invalid: { reason: "repeated_environment_header", message: `request carries more than one \`${header}\` header` } };
  }
  const shown = value.length > 64 ? `${value.slice(0, 64)}…` : value;
  return { ok: false, invalid: { reason: "unknown_environment", message: `\`${header}\` names no environment of this api: \`${shown}\`` } };
}

/** The environment a host names, ignoring port and case; the policy set's default otherwise. */
export function environmentOfHost(host: string, policy: CompiledPolicySet): string {
  if (host === "" || policy.environmentByHost.size === 0) return policy.defaultEnvironment;
  let name = host;
  if (name.startsWith("[")) {
    const close = name.indexOf("]");
    name = close === -1 ? name : name.slice(0, close + 1);
  } else {
    const colon = name.lastIndexOf(":");
    if (colon !== -1) name = name.slice(0, colon);
  }
  if (name.endsWith(".")) name = name.slice(0, -1);
  return policy.environmentByHost.get(name.toLowerCase()) ?? policy.defaultEnvironment;
}
