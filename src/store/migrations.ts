/**
 * Schema steps, applied in order and recorded in `PRAGMA user_version`: after
 * step `i` (0-based) the version is `i + 1`. Never edit a released step; append
 * a new one.
 */

/** Every schema step this build knows; its length is the newest schema version. */
export const MIGRATIONS: readonly string[] = [
  // 1: tokens and their lifecycle audit trail. STRICT so a wrong type is an
  // error at write time rather than a surprise at read time.
  `
  CREATE TABLE tokens (
    id           TEXT PRIMARY KEY,
    hash         TEXT NOT NULL UNIQUE,
    prefix       TEXT NOT NULL,
    tenant       TEXT NOT NULL,
    workspace    TEXT NOT NULL,
    environment  TEXT NOT NULL,
    type         TEXT NOT NULL CHECK (type IN ('user', 'service')),
    name         TEXT NOT NULL,
    role         TEXT,
    key_level    TEXT,
    scopes       TEXT,
    creator      TEXT,
    creator_role TEXT,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    revoked_at   INTEGER,
    revoked_by   TEXT,
    last_used_at INTEGER,
    use_count    INTEGER NOT NULL DEFAULT 0,
    controls     TEXT NOT NULL DEFAULT '{}',
    CHECK (role IS NOT NULL OR scopes IS NOT NULL)
  ) STRICT;
  CREATE INDEX tokens_tenant ON tokens (tenant);
  CREATE INDEX tokens_tenant_workspace ON tokens (tenant, workspace);

  CREATE TABLE audit_events (
    id       INTEGER PRIMARY KEY,
    at       INTEGER NOT NULL,
    event    TEXT NOT NULL,
    actor    TEXT NOT NULL,
    token_id TEXT,
    tenant   TEXT,
    data     TEXT NOT NULL DEFAULT '{}'
  ) STRICT;
  CREATE INDEX audit_events_tenant ON audit_events (tenant, id);
  `,
  // 2: service labels and controls per token are read by the engine; tenant
  // suspension and workspace restriction, one row per tenant or workspace
  // currently paused (resuming deletes the row; the audit trail keeps history).
  `
  ALTER TABLE tokens ADD COLUMN service TEXT;
  CREATE TABLE tenants (
    tenant       TEXT PRIMARY KEY,
    suspended_at INTEGER NOT NULL,
    suspended_by TEXT NOT NULL,
    reason       TEXT
  ) STRICT;
  CREATE TABLE workspaces (
    tenant        TEXT NOT NULL,
    workspace     TEXT NOT NULL,
    restricted_at INTEGER NOT NULL,
    restricted_by TEXT NOT NULL,
    reason        TEXT,
    PRIMARY KEY (tenant, workspace)
  ) STRICT;
  `,
  // 3: rotation lineage and overlap windows, and why a token was revoked. A
  // token's lineage is the id of the first token of its rotation chain; rows
  // from before rotation existed are their own lineage. The partial index
  // serves the policy set's limits, which count the newest unrevoked token of
  // each lineage.
  `
  ALTER TABLE tokens ADD COLUMN lineage_id TEXT;
  ALTER TABLE tokens ADD COLUMN predecessor_id TEXT;
  ALTER TABLE tokens ADD COLUMN successor_id TEXT;
  ALTER TABLE tokens ADD COLUMN rotated_at INTEGER;
  ALTER TABLE tokens ADD COLUMN overlap_ends_at INTEGER;
  ALTER TABLE tokens ADD COLUMN revoked_reason TEXT;
  UPDATE tokens SET lineage_id = id;
  CREATE INDEX tokens_lineage ON tokens (lineage_id);
  CREATE INDEX tokens_active_heads ON tokens (tenant, type, creator) WHERE revoked_at IS NULL AND successor_id IS NULL;
  `,
  // 4: tokens keyed by hash, WITHOUT ROWID, so that the decision path's
  // look-up is one B-tree descent to the row instead of two (the hash index,
  // then the table): the SQL of a cold miss among 1,000,000 tokens went from
  // 26.0 to 19.2 us (medians of 10 interleaved rounds, BENCHMARKS.md). With no
  // rowid, `seq` keeps the insertion order that listings break ties by;
  // existing rows keep their rowid as theirs.
  // Rows are copied in hash order and the other indexes built afterwards, each
  // in one sorted pass: 1,000,000 tokens migrate once, at start, in about 30 s
  // here (63 s with the indexes inline); the old table's pages stay in the file
  // as free pages for later writes until a VACUUM.
  `
  CREATE TABLE tokens_by_hash (
    hash            TEXT NOT NULL PRIMARY KEY,
    id              TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    prefix          TEXT NOT NULL,
    tenant          TEXT NOT NULL,
    workspace       TEXT NOT NULL,
    environment     TEXT NOT NULL,
    type            TEXT NOT NULL CHECK (type IN ('user', 'service')),
    name            TEXT NOT NULL,
    role            TEXT,
    key_level       TEXT,
    scopes          TEXT,
    creator         TEXT,
    creator_role    TEXT,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER,
    revoked_at      INTEGER,
    revoked_by      TEXT,
    last_used_at    INTEGER,
    use_count       INTEGER NOT NULL DEFAULT 0,
    controls        TEXT NOT NULL DEFAULT '{}',
    service         TEXT,
    lineage_id      TEXT,
    predecessor_id  TEXT,
    successor_id    TEXT,
    rotated_at      INTEGER,
    overlap_ends_at INTEGER,
    revoked_reason  TEXT,
    CHECK (role IS NOT NULL OR scopes IS NOT NULL)
  ) STRICT, WITHOUT ROWID;
  INSERT INTO tokens_by_hash (hash, id, seq, prefix, tenant, workspace, environment, type, name, role, key_level,
    scopes, creator, creator_role, created_at, expires_at, revoked_at, revoked_by, last_used_at, use_count, controls,
    service, lineage_id, predecessor_id, successor_id, rotated_at, overlap_ends_at, revoked_reason)
  SELECT hash, id, rowid, prefix, tenant, workspace, environment, type, name, role, key_level,
    scopes, creator, creator_role, created_at, expires_at, revoked_at, revoked_by, last_used_at, use_count, controls,
    service, lineage_id, predecessor_id, successor_id, rotated_at, overlap_ends_at, revoked_reason
  FROM tokens ORDER BY hash;
  DROP TABLE tokens;
  ALTER TABLE tokens_by_hash RENAME TO tokens;
  CREATE UNIQUE INDEX tokens_id ON tokens (id);
  CREATE UNIQUE INDEX tokens_seq ON tokens (seq);
  CREATE INDEX tokens_tenant ON tokens (tenant);
  CREATE INDEX tokens_tenant_workspace ON tokens (tenant, workspace);
  CREATE INDEX tokens_lineage ON tokens (lineage_id);
  CREATE INDEX tokens_active_heads ON tokens (tenant, type, creator) WHERE revoked_at IS NULL AND successor_id IS NULL;
  `,
  // 5: a workspace restriction's mode: `writes` (protected operations only) or
  // `all` (every operation, a frozen workspace). Rows restricted before modes
  // existed meant writes, so the default keeps their meaning.
  `
  ALTER TABLE workspaces ADD COLUMN mode TEXT NOT NULL DEFAULT 'writes' CHECK (mode IN ('writes', 'all'));
  `,
  // 6: security events, aggregated: one row per (minute, event, token) with a
  // count, so that a flood of denials adds to counts instead of rows. A
  // denial of no identified token has token_id '' (a primary key column
  // cannot be NULL); the store reads it back as null.
  `
  CREATE TABLE security_events (
    minute   INTEGER NOT NULL,
    event    TEXT NOT NULL,
    token_id TEXT NOT NULL,
    tenant   TEXT,
    count    INTEGER NOT NULL,
    last_at  INTEGER NOT NULL,
    PRIMARY KEY (minute, event, token_id)
  ) STRICT, WITHOUT ROWID;
  CREATE INDEX security_events_event ON security_events (event, minute);
  CREATE INDEX security_events_tenant ON security_events (tenant, minute);
  `,
  // 7: the webhook outbox. webhook_events holds events enqueued with the
  // change they record, until the server fans each out into one
  // webhook_deliveries row per subscribed endpoint (then deletes it).
  `
  CREATE TABLE webhook_events (
    id   TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    at   INTEGER NOT NULL,
    body TEXT NOT NULL
  ) STRICT;
  CREATE INDEX webhook_events_at ON webhook_events (at);
  CREATE TABLE webhook_deliveries (
    event_id        TEXT NOT NULL,
    endpoint_id     TEXT NOT NULL,
    type            TEXT NOT NULL,
    body            TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_id        TEXT,
    last_error      TEXT,
    delivered_at    INTEGER,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (event_id, endpoint_id)
  ) STRICT;
  CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
  CREATE INDEX webhook_deliveries_created ON webhook_deliveries (created_at);
  `,
];
