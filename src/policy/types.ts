/**
 * Shapes of policy files as authors write them, and of the compiled policy set
 * the engine reads. Files are validated against `policy.schema.json` before
 * anything here is trusted.
 */
import type { CaTrust } from "./ca-trust.js";

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
  controls?: ControlEntrySpec[];
  workspaceRestriction?: WorkspaceRestrictionSpec;
  tokens?: TokensSpec;
}

/** Token lifecycle rules, as a policy file writes them. See docs/token-lifecycle.md. */
export interface TokensSpec {
  rotation?: {
    /** Overlap when a rotation names none, e.g. `90d`; default `90d`, at most `maxOverlap`. */
    defaultOverlap?: string;
    /** Longest overlap a rotation may grant; default `90d`. */
    maxOverlap?: string;
  };
  limits?: {
    /** Active user tokens one creator may hold in a tenant; no cap when absent. */
    userTokensPerCreator?: number;
    /** Active service tokens one tenant may hold; no cap when absent. */
    serviceTokensPerTenant?: number;
  };
}

/** Token lifecycle rules with defaults applied. */
export interface CompiledTokenRules {
  /** Overlap a rotation grants when the caller names none, ms; default 90 days. */
  readonly defaultOverlapMs: number;
  /** Longest overlap a rotation may grant, ms; default 90 days. */
  readonly maxOverlapMs: number;
  /** Active user tokens one creator may hold in a tenant; `null` for no cap (the default). */
  readonly userTokensPerCreator: number | null;
  /** Active service tokens one tenant may hold; `null` for no cap (the default). */
  readonly serviceTokensPerTenant: number | null;
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
  /** What a `;` parameter outside a dot segment gets; default `refuse`. */
  pathParameters?: PathParameterMode;
  /**
   * A request header naming the environment a request targets, e.g.
   * `X-Zeriq-Environment`; when present it wins over the host, and a value
   * that is not exactly an environment's name is `invalid_request`. None by default.
   */
  environmentHeader?: string;
  /** Which identity fields go upstream on allow, and under which header names. See {@link UpstreamSpec}. */
  upstream?: UpstreamSpec;
  /** PEM files of CA certificates, relative to the policy folder, through which client certificates' issuers are found. */
  trustedCas?: string[];
  /** Exchanging API tokens for short-lived JWTs; off when absent. See {@link TokenExchangeSpec}. */
  tokenExchange?: TokenExchangeSpec;
  /** What a decision log record may hold of the request. See {@link DecisionLogSpec}. */
  decisionLog?: DecisionLogSpec;
  /** Endpoints receiving signed webhooks; none when absent. See {@link WebhookEndpointSpec}. */
  webhooks?: WebhookEndpointSpec[];
}

/** One `policySet.webhooks` entry, as a policy file writes it. See docs/operations.md. */
export interface WebhookEndpointSpec {
  /** Endpoint id: a name. */
  id: string;
  /** Absolute http(s) URL the events are POSTed to. */
  url: string;
  /** Event names, or patterns ending in `*`. */
  events: string[];
  /** `env:NAME` or `file:path`: where the signing secret is read at load. */
  secret: string;
}

/** A webhook endpoint as loaded: its secret read, its events expanded. */
export interface CompiledWebhookEndpoint {
  readonly id: string;
  readonly url: string;
  /** Every event name the endpoint's patterns select. */
  readonly events: ReadonlySet<string>;
  /** The HMAC key: the secret's bytes (UTF-8 of the variable, or the trimmed file). */
  readonly secret: Buffer;
}

/** The `tokenExchange` settings, as a policy file writes them. See docs/jwt.md. */
export interface TokenExchangeSpec {
  /** `iss` of every JWT, e.g. `https://api.example.com`. */
  issuer: string;
  /** `aud` of every JWT: one audience or several. */
  audience: string | string[];
  /** Longest lifetime a JWT gets, and the lifetime when the request names none; default and at most `15m`. */
  maxLifetime?: string;
  /** Exchanges one token may make per UTC minute; default 10. */
  exchangesPerMinute?: number;
  /** Path of the plain HTTP exchange endpoint on the HTTP port; default `/v1/auth/exchange`. */
  path?: string;
}

/**
 * What a decision log record may hold of the request beyond method, path and
 * source IP. The token, `Authorization`, `Proxy-Authorization`, `Cookie` and
 * any value holding a token prefix are never written.
 */
export interface DecisionLogSpec {
  /** `drop` (default) writes the path without its query; `mask` keeps it with named parameters' values masked. */
  query?: "drop" | "mask";
  /** Query parameters (case-sensitive) whose values are written as `***`; read only with `query: "mask"`. */
  maskQueryParameters?: string[];
  /** Request headers copied into each record. Default none. */
  headers?: string[];
  /** Request headers recorded as present with the value `***`. */
  maskHeaders?: string[];
}

/** An identity field a policy set can send upstream. */
export type UpstreamField = "tokenId" | "tenant" | "workspace" | "environment" | "tokenType" | "role" | "scopes";

/**
 * What an allow tells the upstream about the token. Each list given replaces
 * its default whole, so a policy set that names `headers` lists every header it forwards.
 */
export interface UpstreamSpec {
  /**
   * Header name (lower-case) per forwarded field. Default: `tokenId`,
   * `tenant`, `workspace`, `environment`, `tokenType` and `role` under their
   * `x-portcullis-…` names; `scopes` (`x-portcullis-scopes`) only when named.
   */
  headers?: Partial<Record<UpstreamField, string>>;
  /**
   * Fields written into Envoy's `Check` dynamic metadata (keys `token_id`,
   * `tenant`, `workspace`, `environment`, `token_type`, `role`, `scopes`).
   * Default: `tokenId`, `tenant`, `workspace`, `environment`, `role`.
   */
  metadata?: UpstreamField[];
}

/**
 * What happens to a `;` parameter in a path segment that is not a dot segment
 * (`/api/payouts;v=2`): `refuse` answers `invalid_request`; `keep` judges the
 * segment with its parameter, which is right only for upstreams that do not
 * strip parameters (servlet containers such as Tomcat, Jetty and Spring do).
 * A dot or empty segment with parameters (`..;`) is refused either way.
 */
export type PathParameterMode = "refuse" | "keep";

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

/**
 * An IP allowlist: IPv4 and IPv6 CIDRs or single addresses, e.g.
 * `198.51.100.0/24`, `203.0.113.10`, `2001:db8::/48`. A CIDR must have no host
 * bits set. The request's source must fall in at least one entry.
 */
export type IpAllowlistSpec = string[];

/** Client certificate requirement. */
export interface MtlsSpec {
  /** Whether a verified, unexpired client certificate is required; default `true`. `false` turns off a less specific source's requirement. */
  required?: boolean;
  /** SHA-256 fingerprints of accepted certificates, hex, any case, with or without colons. */
  fingerprints?: string[];
  /** SHA-256 fingerprints of accepted issuing CAs, same format. */
  caFingerprints?: string[];
}

/** A local time window `[start, end)`; it wraps midnight when `end` is before `start`. */
export interface HoursSpec {
  /** `HH:MM`, 24-hour clock, `00:00` to `23:59`. */
  start: string;
  /** `HH:MM`, `00:01` to `24:00`; must differ from `start`. */
  end: string;
}

/** Weekday names as conditional access spells them. */
export type WeekdayName = "mon" | "tue" | "wed" | "thu" | "fri" | "sat" | "sun";

/** Conditions a request must meet; every condition given must hold. */
export interface ConditionalAccessSpec {
  /** Path patterns the request must match one of: a template (`/api/payouts/{id}`) or a template ending in `/**` (that path and everything below it). */
  routes?: string[];
  /** Upper-case methods the request must use one of; `GET` also allows `HEAD`. */
  methods?: string[];
  /** Environments the request must target one of. */
  environments?: string[];
  /** Local time window; in `timeZone`. */
  hours?: HoursSpec;
  /** Local weekdays; in `timeZone`. */
  weekdays?: WeekdayName[];
  /** IANA zone for `hours` and `weekdays`, e.g. `Europe/Berlin`; default `UTC`. */
  timeZone?: string;
  /** Deny every write. */
  readOnly?: boolean;
  /** Writes must carry a non-empty `Idempotency-Key` header. */
  requireIdempotencyKey?: boolean;
}

/**
 * A request quota: at most this many allowed requests per UTC minute and/or per
 * UTC day, counted per token (a policy entry sets the limit for each token it
 * matches, not a pool they share). At least one limit; positive integers.
 */
export interface QuotaSpec {
  /** Allowed requests per UTC minute (fixed window aligned to the minute). */
  limitPerMinute?: number;
  /** Allowed requests per UTC day (fixed window aligned to 00:00 UTC). */
  limitPerDay?: number;
}

/** The controls a token or a policy entry can set, each kind independently. */
export interface ControlsSpec {
  ipAllowlist?: IpAllowlistSpec;
  mtls?: MtlsSpec;
  conditionalAccess?: ConditionalAccessSpec;
  quota?: QuotaSpec;
}

/** Which tokens a policy control entry applies to; every field given must match. */
export interface ControlSelectorSpec {
  /** `tenant/workspace`, or a workspace name in any tenant. */
  workspace?: string;
  /** The token's environment. */
  environment?: string;
  /** The token's service label. */
  service?: string;
  /** The token's role. */
  role?: string;
}

/** A policy `controls` entry: controls for the tokens a selector matches. */
export interface ControlEntrySpec extends ControlsSpec {
  /** Rule id reported when one of its controls denies. */
  id: string;
  selector: ControlSelectorSpec;
}

/** What a restricted workspace refuses. */
export interface WorkspaceRestrictionSpec {
  /** Operations refused while a workspace is restricted; default: every write. */
  protect?: { method?: string; path: string }[];
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
   * segments (no empty ones); `method` is as sent (policies name upper-case ones); `isWrite` says whether the
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
  /** What a `;` parameter outside a dot segment gets (see {@link PathParameterMode}). */
  readonly pathParameters: PathParameterMode;
  readonly defaultEnvironment: string;
  /** Environment name per token prefix. */
  readonly environmentByPrefix: ReadonlyMap<string, string>;
  /** Token prefixes, longest first, so that `sk_live_eu_` is tried before `sk_live_`. */
  readonly tokenPrefixes: readonly string[];
  /** Environment name per lower-case host (no port). */
  readonly environmentByHost: ReadonlyMap<string, string>;
  /** Every environment's name. */
  readonly environmentNames: ReadonlySet<string>;
  /** Lower-case name of the header that selects the environment, or `null` when the host alone does. */
  readonly environmentHeader: string | null;
  /** The identity fields an allow forwards, compiled once per revision. */
  readonly upstream: CompiledUpstream;
  /** The CA certificates of `trustedCas`, read and checked at load; empty when none are named. */
  readonly trustedCas: CaTrust;
  /** Every scope in the catalog. */
  readonly scopes: ReadonlySet<string>;
  readonly routes: CompiledRoutes;
  /** Concrete scopes each role grants (patterns expanded against the catalog). */
  readonly roles: ReadonlyMap<string, ReadonlySet<string>>;
  /** Concrete scopes each key level allows. */
  readonly keyLevels: ReadonlyMap<string, ReadonlySet<string>>;
  /** Policy control entries, compiled; resolved per token by `effectiveControls`. */
  readonly controls: readonly CompiledControlEntry[];
  /** Which operations a restricted workspace refuses. */
  readonly workspaceRestriction: CompiledWorkspaceRestriction;
  /** Rotation overlap and token limits. */
  readonly tokens: CompiledTokenRules;
  /** JWT exchange settings; `null` when the policy set has no `tokenExchange` (exchange off, JWTs not accepted). */
  readonly tokenExchange: CompiledTokenExchange | null;
  /** What decision log records may hold of a request, with defaults applied. */
  readonly decisionLog: CompiledDecisionLogMasking;
  /** Webhook endpoints with their secrets read at load; empty when the policy set names none. */
  readonly webhooks: readonly CompiledWebhookEndpoint[];
  /** Every route as written, operations then endpoint groups: for `policy diff` and the explorer, never for decisions. */
  readonly routeTable: readonly RouteTableEntry[];
}

/** {@link TokenExchangeSpec} with defaults applied. */
export interface CompiledTokenExchange {
  readonly issuer: string;
  /** At least one. */
  readonly audiences: readonly string[];
  readonly maxLifetimeMs: number;
  /** The exchange's own rate limit, charged per token id on a counter of its own. */
  readonly quota: CompiledQuota;
  readonly path: string;
}

/** {@link DecisionLogSpec} with defaults applied: header names lower-case. */
export interface CompiledDecisionLogMasking {
  readonly query: "drop" | "mask";
  readonly maskQueryParameters: ReadonlySet<string>;
  /** Headers written with their value, in the order named; the always-masked ones are in `maskHeaders` instead. */
  readonly headers: readonly string[];
  /** Headers written as `***` when present. */
  readonly maskHeaders: readonly string[];
}

/** {@link UpstreamSpec} with defaults applied; both lists in a fixed field order. */
export interface CompiledUpstream {
  /** Forwarded fields and their header names. */
  readonly headers: readonly (readonly [field: UpstreamField, name: string])[];
  /** Fields written into `Check` dynamic metadata and their keys. */
  readonly metadata: readonly (readonly [field: UpstreamField, key: string])[];
}

/** One row of {@link CompiledPolicySet.routeTable}. */
export interface RouteTableEntry {
  /** An upper-case method for an operation; `read` or `write` for an endpoint group. */
  readonly method: string;
  /** The operation's template, or the group's base path followed by `/**`. */
  readonly path: string;
  readonly scope: string;
  readonly ruleId: string;
}

/**
 * How specific a control source is; for each kind of control the most
 * specific matching source wins and replaces the others.
 */
export type ControlLevel = "token" | "service" | "environment" | "role" | "workspace";

/** Control levels, most specific first. */
export const CONTROL_LEVELS: readonly ControlLevel[] = ["token", "service", "environment", "role", "workspace"];

/** An IP address parsed once; an IPv4-mapped IPv6 address is stored as its IPv4 address. */
export interface IpAddress {
  readonly version: 4 | 6;
  /** 4 or 16 bytes, network order. */
  readonly bytes: readonly number[];
}

/** A compiled allowlist: membership costs at most 32 or 128 steps, whatever the list length. */
export interface CompiledIpAllowlist {
  /** Rule id of the source that set it. */
  readonly ruleId: string;
  /** The entries as written, for details and docs. */
  readonly entries: readonly string[];
  contains(address: IpAddress): boolean;
}

/** A compiled mTLS requirement; pins are lower-case hex without colons. */
export interface CompiledMtls {
  readonly ruleId: string;
  readonly required: boolean;
  readonly fingerprints: ReadonlySet<string>;
  readonly caFingerprints: ReadonlySet<string>;
}

/** Local minute of day and ISO weekday (1 = Monday) of an instant, in one zone. */
export interface LocalTime {
  readonly minuteOfDay: number;
  readonly weekday: number;
}

/** A time zone resolved at load; `at` is pure given `nowMs` (it caches the current minute). */
export interface ZoneClock {
  readonly zone: string;
  at(nowMs: number): LocalTime;
}

/** Matches normalised path segments (and a method) against compiled path patterns. */
export interface PathPatternMatcher {
  /** Whether some pattern (whose method, if any, equals `method`) matches `segments`. */
  match(method: string, segments: readonly string[]): boolean;
}

/** Compiled conditional access; `null` fields mean "no condition". */
export interface CompiledConditionalAccess {
  readonly ruleId: string;
  readonly routes: PathPatternMatcher | null;
  readonly routeList: readonly string[];
  readonly methods: ReadonlySet<string> | null;
  readonly environments: ReadonlySet<string> | null;
  /** Window start and end, minutes since local midnight; wraps when `endMinute <= startMinute`. */
  readonly hours: { readonly startMinute: number; readonly endMinute: number; readonly text: string } | null;
  /** ISO weekdays, 1 = Monday. */
  readonly weekdays: ReadonlySet<number> | null;
  readonly clock: ZoneClock;
  readonly readOnly: boolean;
  readonly requireIdempotencyKey: boolean;
}

/**
 * A compiled quota; `null` limits do not apply. Counting is state and lives
 * outside the engine (`src/quota/`); the engine only says which quota applies.
 */
export interface CompiledQuota {
  readonly ruleId: string;
  readonly limitPerMinute: number | null;
  readonly limitPerDay: number | null;
  /** The `ratelimit-policy` header value, e.g. `60;w=60, 10000;w=86400`: built once at load. */
  readonly policyHeader: string;
}

/** The controls one source sets; absent kinds are left to less specific sources. */
export interface CompiledControls {
  readonly ipAllowlist?: CompiledIpAllowlist;
  readonly mtls?: CompiledMtls;
  readonly conditionalAccess?: CompiledConditionalAccess;
  readonly quota?: CompiledQuota;
}

/** A compiled selector; absent fields match anything. */
export interface CompiledControlSelector {
  readonly tenant?: string;
  readonly workspace?: string;
  readonly environment?: string;
  readonly service?: string;
  readonly role?: string;
}

/** A policy `controls` entry after compilation. */
export interface CompiledControlEntry {
  readonly id: string;
  /** The most specific selector field it names. */
  readonly level: Exclude<ControlLevel, "token">;
  readonly selector: CompiledControlSelector;
  readonly controls: CompiledControls;
}

/** What a restricted workspace refuses: `protect === null` means every write. */
export interface CompiledWorkspaceRestriction {
  readonly protect: PathPatternMatcher | null;
}
