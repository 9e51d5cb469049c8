/**
 * The token lifecycle: the rules of `src/lifecycle/` applied over any
 * {@link Store} (SQLite or PostgreSQL). Every write, its audit row and its
 * webhook event (the outbox) commit together in one transaction; changed tokens and administrative state are
 * announced after the commit. No database driver is imported here.
 */
import type { AdministrativeEvent, LifecycleEvent } from "../engine/codes.js";
import type { TokenRecord } from "../engine/types.js";
import { isWorkspaceRestrictionMode, WORKSPACE_RESTRICTION_MODES, type WorkspaceRestrictionMode } from "../engine/workspace-restriction-mode.js";
import { StoreError } from "../store/store-error.js";
import type {
  ActiveTokenFilter,
  AuditEntry,
  LifecycleAuditRecord,
  SecurityEventCount,
  MaybePromise,
  Store,
  StoredToken,
  StoreTransaction,
  TenantSuspension,
  TokenListFilter,
  TokenListing,
  TokenUse,
  WebhookDelivery,
  WebhookDeliveryStatus,
  WorkspaceRestriction,
} from "../store/store-interfaces.js";
import { randomUUID } from "node:crypto";
import { lifecycleWebhookEvent } from "../webhooks/webhook-events.js";
import { generateToken, newTokenId } from "../token/format.js";
import { hashToken } from "../token/hash.js";
import { createSpecProblem, identifierProblem, type CreateTokenSpec } from "./create-spec.js";
import { selectEmergencyRevocations, type EmergencyTarget } from "./emergency.js";
import { limitCountFilter, limitProblem } from "./limits.js";
import { overlapShapeProblem, planRotation, rotationRefusal } from "./rotation.js";
import { checkTokenControls } from "./token-controls.js";

/** Options of {@link TokenLifecycle.rotate}. */
export interface RotateOptions {
  /** How long the predecessor stays valid, ms; 0 ends it at once. The caller checks it against the policy set's maximum. */
  readonly overlapMs: number;
  /** Who rotates, for the audit trail. */
  readonly actor: string;
  /** The instant of the rotation; defaults to the lifecycle's clock. */
  readonly nowMs?: number;
}

/** What {@link createTokenLifecycle} reads from the world. */
export interface TokenLifecycleDeps {
  readonly store: Store;
  /** Key for token hashes: the one the store's tokens were hashed with. */
  readonly secret: Buffer;
  /** Clock for `created_at`, `revoked_at` and audit rows, in ms. */
  readonly now: () => number;
}

const DEFAULT_AUDIT_LIMIT = 100;
const MAX_AUDIT_LIMIT = 10_000;

/** The lifecycle operations, asynchronous over any store; errors are {@link StoreError}s. */
export interface TokenLifecycle {
  /**
   * Issues a token: validates `spec`, checks the policy set's caps and stores
   * its hash with the `api_token.created` audit row, in one transaction.
   * @returns the plaintext `token`, to show once, and its `record`
   * @throws {@link StoreError}: `invalid` for bad input, `conflict` past a cap
   */
  create(spec: CreateTokenSpec): Promise<{ token: string; record: TokenRecord }>;
  /** The decision path's look-up of a presented token; synchronous when the store answers so. */
  findByToken(token: string): MaybePromise<TokenRecord | undefined>;
  get(id: string): Promise<TokenRecord | undefined>;
  /** A token with its bookkeeping (last use, lineage, revocation reason). */
  getListing(id: string): Promise<TokenListing | undefined>;
  /** Every token of the rotation lineage `id` belongs to, revoked ones too, oldest first; `[]` for an unknown id. */
  lineageOf(id: string): Promise<TokenListing[]>;
  /** Active tokens (unrevoked, unexpired, newest of their lineage) of a tenant and type, optionally of one creator. */
  countActive(filter: ActiveTokenFilter, nowMs?: number): Promise<number>;
  /** Tokens, oldest first, optionally of one tenant and workspace; revoked ones only when asked. */
  list(filter?: TokenListFilter): Promise<TokenListing[]>;
  /**
   * Revokes a token for good with its `api_token.revoked` row. Revoking a
   * revoked token changes nothing and writes no second row, so retries are safe.
   * @throws {@link StoreError} `not_found` for an unknown id
   */
  revoke(id: string, actor: string, reason?: string | null): Promise<TokenRecord>;
  /**
   * Rotates a token: a successor inheriting everything but the secret, the
   * predecessor valid `overlapMs` more (older open windows of the lineage
   * capped to the same end), `api_token.rotated` and `api_token.created` rows.
   * @throws {@link StoreError}: `not_found`, `conflict` (see {@link rotationRefusal}), `invalid` overlap
   */
  rotate(id: string, options: RotateOptions): Promise<{ token: string; record: TokenRecord; predecessor: TokenRecord }>;
  /**
   * Revokes at once every unrevoked token of a lineage or of explicit ids,
   * each with an `api_token.emergency_revoked` row. With `tenant`, other
   * tenants' tokens are skipped and a lineage token of another tenant is
   * `not_found`; unknown ids are skipped.
   * @returns the ids revoked by this call
   */
  emergencyRevoke(target: EmergencyTarget, options: { tenant?: string; actor: string; reason: string }): Promise<string[]>;
  /**
   * Replaces a token's own controls (`null` or `{}` clears them) with an
   * `api_token.controls_updated` row.
   * @throws {@link StoreError}: `invalid` controls, `not_found`
   */
  updateControls(id: string, controls: unknown, actor: string): Promise<TokenRecord>;
  /** Applies a batch of use stamps (forward-only, unknown ids skipped). */
  recordUse(batch: ReadonlyMap<string, TokenUse>): Promise<void>;
  /** Audit rows, newest first; `limit` default 100, from 1 to 10,000. */
  listAudit(filter?: { tenant?: string; event?: string; sinceMs?: number; limit?: number }): Promise<LifecycleAuditRecord[]>;
  /** Stored security events (denials counted per token, event and minute), newest first; `limit` as {@link listAudit}'s. */
  listSecurityEvents(filter?: { tenant?: string; event?: string; sinceMs?: number; limit?: number }): Promise<SecurityEventCount[]>;
  /** Webhook deliveries (one per event and endpoint), newest first; `limit` as {@link listAudit}'s. */
  listWebhookDeliveries(filter?: { endpointId?: string; status?: WebhookDeliveryStatus; limit?: number }): Promise<WebhookDelivery[]>;
  /** Suspends a tenant (`tenant_suspended` for its tokens). @returns whether this call suspended it */
  suspendTenant(tenant: string, options: { actor: string; reason?: string | null }): Promise<boolean>;
  /** @returns whether the tenant was suspended */
  resumeTenant(tenant: string, options: { actor: string }): Promise<boolean>;
  listSuspendedTenants(): Promise<TenantSuspension[]>;
  /**
   * Restricts a workspace in mode `writes` (default) or `all`; again in the
   * same mode changes nothing, in another replaces it and the audit row names
   * the previous mode. @returns whether this call changed the restriction
   */
  restrictWorkspace(tenant: string, workspace: string, options: { actor: string; reason?: string | null; mode?: WorkspaceRestrictionMode }): Promise<boolean>;
  /** @returns whether the workspace was restricted */
  unrestrictWorkspace(tenant: string, workspace: string, options: { actor: string }): Promise<boolean>;
  listRestrictedWorkspaces(filter?: { tenant?: string }): Promise<WorkspaceRestriction[]>;
}

/**
 * Builds the lifecycle over `deps.store`.
 *
 * @example
 * ```ts
 * const lifecycle = createTokenLifecycle({ store, secret: store.secret, now: Date.now });
 * const { token } = await lifecycle.create({ tenant: "acme", workspace: "main", environment: "live",
 *   prefix: "sk_live_", type: "service", name: "billing sync", role: "billing_reader" });
 * ```
 */
export function createTokenLifecycle(deps: TokenLifecycleDeps): TokenLifecycle {
  const { store, secret, now } = deps;
  const invalid = (message: string | null): void => {
    if (message !== null) throw new StoreError("invalid", message);
  };
  const notFound = (id: string): StoreError => new StoreError("not_found", `no token with id \`${id}\``);
  /** Appends an audit row and enqueues its webhook event in the same transaction: both commit, or neither. */
  const record = async (tx: StoreTransaction, entry: AuditEntry) => {
    await tx.audit.append(entry);
    await tx.webhooks.enqueue(lifecycleWebhookEvent(`evt_${randomUUID()}`, entry));
  };
  const audit = (tx: StoreTransaction, event: LifecycleEvent, actor: string, row: { id: string; tenant: string }, data: Record<string, unknown>, atMs: number) =>
    record(tx, { atMs, event, actor, tokenId: row.id, tenant: row.tenant, data });
  const auditAdministrative = (tx: StoreTransaction, event: AdministrativeEvent, actor: string, tenant: string, data: Record<string, unknown>, atMs: number) =>
    record(tx, { atMs, event, actor, tokenId: null, tenant, data });
  /** Runs an administrative change; the version moves even when nothing changed here (another process may have changed it). */
  const administrative = (run: (tx: StoreTransaction) => Promise<boolean>): Promise<boolean> =>
    store.transaction(async (tx) => {
      const changed = await run(tx);
      tx.administrativeStateChanged();
      return changed;
    });

  return {
    async create(spec) {
      const nowMs = now();
      invalid(createSpecProblem(spec, nowMs));
      const token = generateToken(spec.prefix);
      const id = newTokenId();
      const row: StoredToken = {
        id,
        hash: hashToken(secret, token),
        prefix: spec.prefix,
        tenant: spec.tenant,
        workspace: spec.workspace,
        environment: spec.environment,
        type: spec.type,
        name: spec.name,
        role: spec.role ?? null,
        keyLevel: spec.keyLevel ?? null,
        scopes: spec.scopes == null ? null : [...spec.scopes],
        creator: spec.creator ?? null,
        creatorRole: spec.creatorRole ?? null,
        createdAtMs: nowMs,
        expiresAtMs: spec.expiresAtMs ?? null,
        revokedAtMs: null,
        revokedBy: null,
        lastUsedAtMs: null,
        useCount: 0,
        service: spec.service ?? null,
        controls: spec.controls ?? {},
        lineageId: id,
        predecessorId: null,
        successorId: null,
        rotatedAtMs: null,
        overlapEndsAtMs: null,
        revokedReason: null,
      };
      const record = recordOf(row);
      const data = {
        name: row.name,
        type: row.type,
        prefix: row.prefix,
        workspace: row.workspace,
        environment: row.environment,
        role: row.role,
        keyLevel: row.keyLevel,
        scopes: record.scopes,
        expiresAtMs: row.expiresAtMs,
        service: row.service,
        controls: record.controls,
      };
      await store.transaction(async (tx) => {
        // why: the count and the insert must see one state, also across processes and replicas
        await tx.lock(`tenant:${spec.tenant}`);
        const limits = spec.limits;
        const counted = limits == null ? null : limitCountFilter(spec, limits);
        if (limits != null && counted !== null) {
          const problem = limitProblem(spec, limits, await tx.tokens.countActive(counted, nowMs));
          if (problem !== null) throw new StoreError("conflict", problem);
        }
        await tx.tokens.insert(row);
        await audit(tx, "api_token.created", spec.actor ?? spec.creator ?? "system", row, data, nowMs);
      });
      return { token, record };
    },

    findByToken(token) {
      return store.tokens.findByHash(hashToken(secret, token));
    },

    async get(id) {
      const listing = await store.tokens.byId(id);
      return listing === undefined ? undefined : recordOf(listing);
    },

    getListing: (id) => store.tokens.byId(id),
    lineageOf: (id) => store.tokens.lineage(id),
    countActive: (filter, nowMs = now()) => store.tokens.countActive(filter, nowMs),
    list: (filter = {}) => store.tokens.list(filter),

    revoke(id, actor, reason) {
      return store.transaction(async (tx) => {
        const row = await tx.tokens.byId(id);
        if (row === undefined) throw notFound(id);
        // why: a cache may hold the token from before an earlier revoke by another process
        tx.tokensChanged([id]);
        if (row.revokedAtMs !== null) return recordOf(row);
        const nowMs = now();
        const revocation = { atMs: nowMs, by: actor, reason: reason ?? null };
        if (!(await tx.tokens.revoke(id, revocation))) {
          // Revoked by someone else since the read: theirs stands, and so does their audit row.
          const current = await tx.tokens.byId(id);
          return recordOf(current ?? row);
        }
        await audit(tx, "api_token.revoked", actor, row, { name: row.name, ...(reason == null ? {} : { reason }) }, nowMs);
        return { ...recordOf(row), revokedAtMs: nowMs };
      });
    },

    async rotate(id, options) {
      const { overlapMs, actor } = options;
      invalid(overlapShapeProblem(overlapMs));
      return store.transaction(async (tx) => {
        const nowMs = options.nowMs ?? now();
        const first = await tx.tokens.byId(id);
        if (first === undefined) throw notFound(id);
        await tx.lock(`lineage:${first.lineageId}`);
        // INVARIANT: a token never leaves its lineage, so the lock taken above still covers it.
        const row = (await tx.tokens.byId(id)) ?? first;
        const successorRow = row.successorId === null ? undefined : await tx.tokens.byId(row.successorId);
        const refusal = rotationRefusal(row, successorRow, nowMs);
        if (refusal !== null) throw new StoreError("conflict", refusal);

        const token = generateToken(row.prefix);
        const { successor, overlapEndsAtMs } = planRotation(row, { id: newTokenId(), hash: hashToken(secret, token) }, overlapMs, nowMs);
        await tx.tokens.insert(successor);
        await tx.tokens.capOverlaps(row.lineageId, overlapEndsAtMs, nowMs);
        await tx.tokens.markRotated(id, { successorId: successor.id, rotatedAtMs: nowMs, overlapEndsAtMs });
        const predecessor = (await tx.tokens.byId(id))!;
        await audit(tx, "api_token.rotated", actor, predecessor, { name: row.name, successorId: successor.id, overlapEndsAtMs: predecessor.overlapEndsAtMs, overlapMs }, nowMs);
        await audit(tx, "api_token.created", actor, successor, {
          name: row.name, type: row.type, prefix: row.prefix, workspace: row.workspace, environment: row.environment, predecessorId: row.id, lineageId: row.lineageId,
        }, nowMs);
        // why: the whole lineage's windows may have moved, so every cached member is stale
        tx.tokensChanged((await tx.tokens.lineage(id)).map((member) => member.id));
        return { token, record: recordOf(successor), predecessor: recordOf(predecessor) };
      });
    },

    emergencyRevoke(target, options) {
      return store.transaction(async (tx) => {
        const nowMs = now();
        let rows: TokenListing[];
        if ("lineageOf" in target) {
          const anchor = await tx.tokens.byId(target.lineageOf);
          if (anchor === undefined || (options.tenant !== undefined && anchor.tenant !== options.tenant)) throw notFound(target.lineageOf);
          await tx.lock(`lineage:${anchor.lineageId}`);
          rows = await tx.tokens.lineage(anchor.id);
        } else {
          rows = [];
          for (const id of target.ids) {
            const row = await tx.tokens.byId(id);
            if (row !== undefined) rows.push(row);
          }
        }
        const revoked: string[] = [];
        for (const row of selectEmergencyRevocations(rows, options.tenant)) {
          if (!(await tx.tokens.revoke(row.id, { atMs: nowMs, by: options.actor, reason: options.reason }))) continue;
          await audit(tx, "api_token.emergency_revoked", options.actor, row, { name: row.name, reason: options.reason, lineageId: row.lineageId }, nowMs);
          revoked.push(row.id);
        }
        tx.tokensChanged(revoked);
        return revoked;
      });
    },

    async updateControls(id, controls, actor) {
      const value = (controls ?? {}) as TokenRecord["controls"];
      invalid(checkTokenControls(value));
      return store.transaction(async (tx) => {
        const row = await tx.tokens.byId(id);
        if (row === undefined) throw notFound(id);
        await tx.tokens.updateControls(id, value);
        await audit(tx, "api_token.controls_updated", actor, row, { controls: value }, now());
        tx.tokensChanged([id]);
        return { ...recordOf(row), controls: value };
      });
    },

    recordUse: (batch) => store.tokens.recordUse(batch),

    async listAudit(filter = {}) {
      const limit = filter.limit ?? DEFAULT_AUDIT_LIMIT;
      if (!Number.isInteger(limit) || limit < 1 || limit > MAX_AUDIT_LIMIT) {
        throw new StoreError("invalid", `audit limit must be a whole number from 1 to ${MAX_AUDIT_LIMIT}, got \`${limit}\``);
      }
      return store.audit.list({ ...auditFilterOf(filter), limit });
    },

    async listSecurityEvents(filter = {}) {
      const limit = filter.limit ?? DEFAULT_AUDIT_LIMIT;
      if (!Number.isInteger(limit) || limit < 1 || limit > MAX_AUDIT_LIMIT) {
        throw new StoreError("invalid", `audit limit must be a whole number from 1 to ${MAX_AUDIT_LIMIT}, got \`${limit}\``);
      }
      return store.securityEvents.list({ ...auditFilterOf(filter), limit });
    },

    async listWebhookDeliveries(filter = {}) {
      const limit = filter.limit ?? DEFAULT_AUDIT_LIMIT;
      if (!Number.isInteger(limit) || limit < 1 || limit > MAX_AUDIT_LIMIT) {
        throw new StoreError("invalid", `delivery limit must be a whole number from 1 to ${MAX_AUDIT_LIMIT}, got \`${limit}\``);
      }
      return store.webhooks.list({
        ...(filter.endpointId === undefined ? {} : { endpointId: filter.endpointId }),
        ...(filter.status === undefined ? {} : { status: filter.status }),
        limit,
      });
    },

    async suspendTenant(tenant, options) {
      invalid(identifierProblem("tenant", tenant));
      return administrative(async (tx) => {
        const at = now();
        const reason = options.reason ?? null;
        const changed = await tx.tenantState.suspendTenant({ tenant, suspendedAtMs: at, suspendedBy: options.actor, reason });
        if (changed) await auditAdministrative(tx, "tenant.suspended", options.actor, tenant, { reason }, at);
        return changed;
      });
    },

    resumeTenant(tenant, options) {
      return administrative(async (tx) => {
        const changed = await tx.tenantState.resumeTenant(tenant);
        if (changed) await auditAdministrative(tx, "tenant.resumed", options.actor, tenant, {}, now());
        return changed;
      });
    },

    listSuspendedTenants: () => store.tenantState.listSuspendedTenants(),

    async restrictWorkspace(tenant, workspace, options) {
      invalid(identifierProblem("tenant", tenant));
      invalid(identifierProblem("workspace", workspace));
      const mode = options.mode ?? "writes";
      if (!isWorkspaceRestrictionMode(mode)) invalid(`unknown workspace restriction mode \`${String(mode)}\`; expected one of ${WORKSPACE_RESTRICTION_MODES.join(", ")}`);
      return administrative(async (tx) => {
        const at = now();
        const previousMode = await tx.tenantState.workspaceMode(tenant, workspace);
        const reason = options.reason ?? null;
        const changed = await tx.tenantState.restrictWorkspace({ tenant, workspace, restrictedAtMs: at, restrictedBy: options.actor, reason, mode });
        if (changed) {
          await auditAdministrative(tx, "workspace.restricted", options.actor, tenant, { workspace, mode, reason, ...(previousMode === undefined ? {} : { previousMode }) }, at);
        }
        return changed;
      });
    },

    unrestrictWorkspace(tenant, workspace, options) {
      return administrative(async (tx) => {
        const changed = await tx.tenantState.unrestrictWorkspace(tenant, workspace);
        if (changed) await auditAdministrative(tx, "workspace.unrestricted", options.actor, tenant, { workspace }, now());
        return changed;
      });
    },

    listRestrictedWorkspaces: (filter = {}) => store.tenantState.listRestrictedWorkspaces(filter),
  };
}

/** The {@link TokenRecord} fields of a listing or stored row: what the engine and callers of `get` see. */
export function recordOf(row: TokenRecord): TokenRecord {
  return {
    id: row.id,
    tenant: row.tenant,
    workspace: row.workspace,
    environment: row.environment,
    type: row.type,
    name: row.name,
    role: row.role,
    keyLevel: row.keyLevel,
    scopes: row.scopes,
    creatorRole: row.creatorRole,
    createdAtMs: row.createdAtMs,
    expiresAtMs: row.expiresAtMs,
    revokedAtMs: row.revokedAtMs,
    service: row.service,
    controls: row.controls,
    lineageId: row.lineageId,
    successorId: row.successorId,
    overlapEndsAtMs: row.overlapEndsAtMs,
  };
}

/** The optional filters that were given, without `undefined` members (exactOptionalPropertyTypes). */
function auditFilterOf(filter: { tenant?: string; event?: string; sinceMs?: number }): { tenant?: string; event?: string; sinceMs?: number } {
  return {
    ...(filter.tenant === undefined ? {} : { tenant: filter.tenant }),
    ...(filter.event === undefined ? {} : { event: filter.event }),
    ...(filter.sinceMs === undefined ? {} : { sinceMs: filter.sinceMs }),
  };
}
