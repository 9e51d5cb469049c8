/**
 * Shapes of policy files as authors write them, and of the compiled policy set
 * the engine reads. Files are validated against `policy.schema.json` before
 * anything here is trusted.
 */

/** Error body dialects a policy set can choose. */
export type ErrorDialect =
  /** `{"message", "code", "errors": {...}, "request_id"}`. */
  | "canonical"
  /** `{"ok": false, "error": {"code": "AUTH_INVALID", "message", "requestId"}}`. */
  | "envelope"
  /** `{"error": {"code": "unauthorized" | "forbidden" | ..., "message", "details"}}`. */
  | "error_object";

/**
 * One policy file. Every section is optional in a single file; across the files
 * of one folder each section may appear once (arrays are concatenated), and the
 * merged set must have `policySet`, `environments`, `scopes` and `endpointGroups`.
 */
export interface PolicyFile {
  $schema?: string;
  policySet?: PolicySetSettings;
  environments?: EnvironmentSpec[];
  scopes?: ScopeModuleSpec[];
  endpointGroups?: EndpointGroupSpec[];
  operations?: OperationSpec[];
  roles?: RoleSpec[];
  keyLevels?: KeyLevelSpec[];
}

export interface PolicySetSettings {
  /** Name shown in logs and metrics. */
  name: string;
  /** Error body dialect; default `canonical`. */
  errorDialect?: ErrorDialect;
  /** Environment assumed when the request's host names none; must be one of `environments`. */
  defaultEnvironment: string;
  /** Ask the enforcement point to strip `Authorization` before forwarding upstream; default `true`. */
  stripCredential?: boolean;
}

export interface EnvironmentSpec {
  /** e.g. `production`. */
  name: string;
  /** Token prefix naming this environment, e.g. `sk_live_`: lower-case letters, digits and `_`, ending in `_`. */
  tokenPrefix: string;
  /** Hosts (without port, lower-case) whose requests target this environment. */
  hosts?: string[];
}

export interface ScopeModuleSpec {
  module: string;
  label?: string;
  scopes: { scope: string; description?: string }[];
}

export interface EndpointGroupSpec {
  /** Rule id; default `group:<basePath>`. */
  id?: string;
  /** Literal path prefix covered on whole segments, e.g. `/api/payouts`. */
  basePath: string;
  /** Scope needed by GET, HEAD and OPTIONS. */
  readScope: string;
  /** Scope needed by every other method. */
  writeScope: string;
}

export interface OperationSpec {
  /** Rule id; default `operation:<METHOD> <path>`. */
  id?: string;
  /** Upper-case method; a `GET` operation also covers `HEAD` unless a `HEAD` one exists. */
  method: string;
  /** Path template: literal segments and `{name}` parameters, each a whole segment. */
  path: string;
  scope: string;
  description?: string;
}

export interface RoleSpec {
  name: string;
  description?: string;
  /** Scopes or patterns: `payouts:read`, `payouts:*`, `*:read`, `*`. */
  scopes: string[];
}

export interface KeyLevelSpec {
  name: string;
  description?: string;
  /** Scopes or patterns this key level may use; intersected with the token's role. */
  scopes: string[];
}

/** What an operation or group lookup found for one request. */
export interface RouteMatch {
  /** Scope the request needs. */
  readonly scope: string;
  /** Id of the rule that supplied it. */
  readonly ruleId: string;
}

/** Routes compiled into tries; lookup cost grows with path depth, not route count. */
export interface CompiledRoutes {
  /**
   * Finds the scope a request needs. `segments` are the normalised path's
   * segments (no empty ones); `method` is upper-case; `isWrite` says whether the
   * method counts as a write. Operations win over groups; among operations a
   * literal segment beats a parameter; among groups the longest base path wins.
   * Returns `null` when nothing covers the path.
   */
  match(method: string, segments: readonly string[], isWrite: boolean): RouteMatch | null;
}

/** A policy set after validation, ready for the engine. Immutable. */
export interface CompiledPolicySet {
  readonly name: string;
  /** SHA-256 of the source files, hex: tells reloads and caches apart. */
  readonly revision: string;
  readonly errorDialect: ErrorDialect;
  readonly stripCredential: boolean;
  readonly defaultEnvironment: string;
  /** Environment name per token prefix. */
  readonly environmentByPrefix: ReadonlyMap<string, string>;
  /** Token prefixes, longest first, so that `sk_live_eu_` is tried before `sk_live_`. */
  readonly tokenPrefixes: readonly string[];
  /** Environment name per lower-case host (no port). */
  readonly environmentByHost: ReadonlyMap<string, string>;
  /** Every scope in the catalog. */
  readonly scopes: ReadonlySet<string>;
  readonly routes: CompiledRoutes;
  /** Concrete scopes each role grants (patterns expanded against the catalog). */
  readonly roles: ReadonlyMap<string, ReadonlySet<string>>;
  /** Concrete scopes each key level allows. */
  readonly keyLevels: ReadonlyMap<string, ReadonlySet<string>>;
}
