/**
 * What an allow forwards upstream: the policy set's `upstream` section with its
 * defaults applied, compiled once per revision so that no request pays for the choice.
 */
import type { CompiledUpstream, UpstreamField, UpstreamSpec } from "./types.js";

/** Every field in the order headers and metadata are written. */
export const UPSTREAM_FIELDS: readonly UpstreamField[] = ["tokenId", "tenant", "workspace", "environment", "tokenType", "role", "scopes"];

/** The header each field goes under unless the policy set names another. */
export const DEFAULT_UPSTREAM_HEADER_NAMES: Readonly<Record<UpstreamField, string>> = {
  tokenId: "x-portcullis-token-id",
  tenant: "x-portcullis-tenant",
  workspace: "x-portcullis-workspace",
  environment: "x-portcullis-environment",
  tokenType: "x-portcullis-token-type",
  role: "x-portcullis-role",
  scopes: "x-portcullis-scopes",
};

/** The dynamic metadata key of each field: snake-case, as Envoy access logs and RBAC name them. */
export const UPSTREAM_METADATA_KEYS: Readonly<Record<UpstreamField, string>> = {
  tokenId: "token_id",
  tenant: "tenant",
  workspace: "workspace",
  environment: "environment",
  tokenType: "token_type",
  role: "role",
  scopes: "scopes",
};

// why: the scope list is the one field that grows with the catalog (about 1.9 KB
// for a tenant operator, twice over); upstreams that need it ask for it
const DEFAULT_HEADER_FIELDS: ReadonlySet<UpstreamField> = new Set(["tokenId", "tenant", "workspace", "environment", "tokenType", "role"]);
const DEFAULT_METADATA_FIELDS: ReadonlySet<UpstreamField> = new Set(["tokenId", "tenant", "workspace", "environment", "role"]);

/**
 * Applies the defaults: a list the policy set gives replaces its default whole.
 * Header names are lower-cased (HTTP/2 and Envoy require it).
 *
 * INVARIANT: the schema allows only known fields, and the cross-checks refused
 * two fields under one header name and reserved names.
 */
export function compileUpstream(spec: UpstreamSpec | undefined): CompiledUpstream {
  const headers = spec?.headers;
  const metadata = spec?.metadata === undefined ? DEFAULT_METADATA_FIELDS : new Set(spec.metadata);
  return Object.freeze({
    headers: Object.freeze(
      UPSTREAM_FIELDS.flatMap((field) => {
        if (headers === undefined) return DEFAULT_HEADER_FIELDS.has(field) ? [Object.freeze([field, DEFAULT_UPSTREAM_HEADER_NAMES[field]] as const)] : [];
        const name = headers[field];
        return name === undefined ? [] : [Object.freeze([field, name.toLowerCase()] as const)];
      }),
    ),
    metadata: Object.freeze(UPSTREAM_FIELDS.filter((field) => metadata.has(field)).map((field) => Object.freeze([field, UPSTREAM_METADATA_KEYS[field]] as const))),
  });
}

/**
 * Header names an upstream header may not take: the credential, the hop-by-hop
 * and framing fields a proxy owns, and the forwarding fields Portcullis itself
 * trusts. Overwriting any of them upstream would change what the request means.
 */
export const RESERVED_UPSTREAM_HEADER_NAMES: ReadonlySet<string> = new Set([
  "authorization",
  "proxy-authorization",
  "cookie",
  "host",
  "connection",
  "keep-alive",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "content-length",
  "content-type",
  "x-forwarded-for",
  "x-real-ip",
  "x-request-id",
]);
