/**
 * The fleet's change feed: every write that changes what a decision may see
 * sends `NOTIFY portcullis_changes` inside its own transaction (so the
 * notification goes out exactly when, and only if, the write commits), and
 * every replica LISTENs on a dedicated connection to evict what it cached.
 *
 * A replica must also know when it cannot hear: a listener connection that
 * died quietly (a network cut, a stopped server) delivers nothing, and the
 * replica would go on trusting revoked tokens. So the feed confirms its
 * connection several times a second and reports how stale its knowledge is.
 */
import pg from "pg";
import { postgresClientConfig } from "./pool.js";

/** The channel every replica listens on. */
export const CHANGE_CHANNEL = "portcullis_changes";

/** What changed, as a replica needs to know it to keep its caches right. */
export type StoreChange =
  /** These tokens changed (revoked, rotated, their controls or overlap window): evict them. */
  | { readonly kind: "tokens"; readonly ids: readonly string[] }
  /** These tokens were created; a cached "no such token" for their hash is now wrong. */
  | { readonly kind: "created"; readonly ids: readonly string[] }
  /** A tenant was suspended or resumed, or a workspace restricted or unrestricted: reread that state. */
  | { readonly kind: "administrative" }
  /** The feed (re)connected and may have missed notifications: drop every cache. */
  | { readonly kind: "reset" };

/** A change a write announces; `reset` is the feed's own. */
export type AnnouncedChange = Exclude<StoreChange, { kind: "reset" }>;

/**
 * PostgreSQL refuses payloads of 8,000 bytes or more; ids are 30 ASCII
 * characters, so 100 of them stay well below.
 */
const IDS_PER_NOTIFICATION = 100;

/** The payloads that announce `change`, each under PostgreSQL's size limit. */
export function changePayloads(change: AnnouncedChange): string[] {
  if (change.kind === "administrative") return [JSON.stringify({ kind: change.kind })];
  const payloads: string[] = [];
  for (let start = 0; start < change.ids.length; start += IDS_PER_NOTIFICATION) {
    payloads.push(JSON.stringify({ kind: change.kind, ids: change.ids.slice(start, start + IDS_PER_NOTIFICATION) }));
  }
  return payloads;
}

/**
 * Reads a payload. Anything unexpected (another writer on the channel, a
 * newer build's kind) reads as `reset`: dropping caches is always safe.
 */
export function parseChangePayload(payload: string | undefined): StoreChange {
  try {
    const value = JSON.parse(payload ?? "") as { kind?: unknown; ids?: unknown };
    if (value.kind === "administrative") return { kind: "administrative" };
    if ((value.kind === "tokens" || value.kind === "created") && Array.isArray(value.ids) && value.ids.every((id) => typeof id === "string")) {
      return { kind: value.kind, ids: value.ids as string[] };
    }
  } catch {
    // fall through
  }
  return { kind: "reset" };
}

/**
 * Announces `change` on `client`, which must be inside the transaction of the
 * write: PostgreSQL delivers it when that transaction commits, and drops it
 * when it rolls back. One round trip however many ids.
 */
export async function notifyChange(client: pg.ClientBase, change: AnnouncedChange): Promise<void> {
  if (change.kind !== "administrative" && change.ids.length === 0) return;
  await client.query("SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload", [CHANGE_CHANNEL, changePayloads(change)]);
}

/** Options of {@link ChangeFeed.start}. */
export interface ChangeFeedOptions {
  readonly url: string;
  /** How often the listener connection is confirmed alive, ms; default 250. */
  readonly heartbeatMs?: number;
  /**
   * A confirmation still unanswered after this long ends the connection and
   * starts a new one, ms; default four heartbeats, at least 1,000. A quietly
   * cut connection would otherwise hang until TCP gives up.
   */
  readonly stallMs?: number;
  /** First wait before reconnecting, ms, doubling up to `maxReconnectDelayMs`; default 100. */
  readonly reconnectDelayMs?: number;
  /** Default 1,000. */
  readonly maxReconnectDelayMs?: number;
  /** Clock, ms; default `Date.now`. */
  readonly now?: () => number;
  /** Told when the connection fails or comes back, for the log. */
  readonly onConnectionEvent?: (event: { readonly kind: "lost"; readonly error: Error } | { readonly kind: "connected"; readonly reconnect: boolean }) => void;
}

/**
 * A replica's subscription to the change feed, on a connection of its own
 * (LISTEN binds a session, so it cannot share a pool).
 *
 * Freshness: notifications reach a connection in commit order and before the
 * answer to a later query on it, so when a `SELECT 1` sent at instant S comes
 * back, every change committed before S has been delivered. The feed keeps
 * that S of the last confirmation ({@link confirmedAtMs}); a replica whose
 * knowledge is more than its promise old (1 s for revocation) must stop
 * trusting its caches.
 *
 * @example
 * const feed = ChangeFeed.start({ url });
 * feed.subscribe((change) => change.kind === "reset" ? cache.clear() : …);
 * if (!feed.isLive()) answerUnavailable();
 */
export class ChangeFeed {
  private readonly listeners = new Set<(change: StoreChange) => void>();
  private readonly heartbeatMs: number;
  private readonly stallMs: number;
  private readonly now: () => number;
  private client: pg.Client | null = null;
  private connected = false;
  private closed = false;
  private confirmedAt: number | null = null;
  private readonly startedAt: number;
  private heartbeatSentAt: number | null = null;
  private reconnectDelayMs: number;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private readonly heartbeatTimer: NodeJS.Timeout;
  private connections = 0;
  private firstLive: Promise<void>;
  private resolveFirstLive!: () => void;

  private constructor(private readonly options: ChangeFeedOptions) {
    this.heartbeatMs = options.heartbeatMs ?? 250;
    this.stallMs = options.stallMs ?? Math.max(1_000, 4 * this.heartbeatMs);
    this.now = options.now ?? Date.now;
    this.reconnectDelayMs = options.reconnectDelayMs ?? 100;
    this.startedAt = this.now();
    this.firstLive = new Promise((resolve) => (this.resolveFirstLive = resolve));
    this.heartbeatTimer = setInterval(() => this.heartbeat(), this.heartbeatMs);
    this.heartbeatTimer.unref();
  }

  /** Starts listening (in the background); see {@link whenLive} to wait for it. */
  static start(options: ChangeFeedOptions): ChangeFeed {
    const feed = new ChangeFeed(options);
    void feed.connect();
    return feed;
  }

  /** Resolves once the feed has listened for the first time, or rejects after `timeoutMs`. */
  async whenLive(timeoutMs = 10_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.firstLive,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`the change feed did not connect within ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Calls `listener` with every change, in order; returns the unsubscribe function. */
  subscribe(listener: (change: StoreChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The instant (ms) up to which every committed change is known to have arrived; `null` before the first connection. */
  get confirmedAtMs(): number | null {
    return this.confirmedAt;
  }

  /**
   * Since when the feed cannot vouch for what it heard, ms, or `null` while
   * it is confirmed within two heartbeats (normal jitter). That instant is the
   * last confirmation, or the feed's start when there was none.
   */
  blindSince(nowMs: number = this.now()): number | null {
    const since = this.confirmedAt ?? this.startedAt;
    return this.connected && nowMs - since <= 2 * this.heartbeatMs ? null : since;
  }

  /**
   * Whether every change committed more than `maxStalenessMs` ago has surely
   * arrived: the promise a replica keeps while it serves from its caches.
   */
  isLive(nowMs: number = this.now(), maxStalenessMs = 1_000): boolean {
    return this.confirmedAt !== null && nowMs - this.confirmedAt <= maxStalenessMs;
  }

  /** Stops listening and closes the connection. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.heartbeatTimer);
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    const client = this.client;
    this.client = null;
    this.connected = false;
    await client?.end().catch(() => undefined);
  }

  private async connect(): Promise<void> {
    if (this.closed) return;
    const client = new pg.Client({ ...postgresClientConfig(this.options.url, 2_000), query_timeout: undefined });
    this.client = client;
    // why: an 'error' without a listener would end the process; losing the connection is handled in lost()
    client.on("error", (error) => this.lost(client, error));
    client.on("end", () => this.lost(client, new Error("the listener connection ended")));
    client.on("notification", (message) => {
      if (client === this.client && message.channel === CHANGE_CHANNEL) this.emit(parseChangePayload(message.payload));
    });
    try {
      await client.connect();
      const listenSentAt = this.now();
      await client.query(`LISTEN ${CHANGE_CHANNEL}`);
      if (client !== this.client || this.closed) return;
      this.connected = true;
      this.reconnectDelayMs = this.options.reconnectDelayMs ?? 100;
      const reconnect = this.connections++ > 0;
      // why: changes committed before LISTEN took effect were never sent to us; whatever was cached may be stale.
      // Emitted on the first connection too, so a snapshot read before it is reread.
      this.emit({ kind: "reset" });
      this.confirmedAt = Math.max(this.confirmedAt ?? 0, listenSentAt);
      this.options.onConnectionEvent?.({ kind: "connected", reconnect });
      this.resolveFirstLive();
    } catch (error) {
      this.lost(client, error as Error);
    }
  }

  private lost(client: pg.Client, error: Error): void {
    if (client !== this.client || this.closed) return;
    this.client = null;
    this.connected = false;
    this.heartbeatSentAt = null;
    this.options.onConnectionEvent?.({ kind: "lost", error });
    client.removeAllListeners("notification");
    client.removeAllListeners("end");
    // keep an error listener: a dying client may still emit
    void client.end().catch(() => undefined);
    const delay = this.reconnectDelayMs;
    this.reconnectDelayMs = Math.min(delay * 2, this.options.maxReconnectDelayMs ?? 1_000);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      void this.connect();
    }, delay);
    this.reconnectTimer.unref();
  }

  private heartbeat(): void {
    const client = this.client;
    if (!this.connected || client === null) return;
    const nowMs = this.now();
    if (this.heartbeatSentAt !== null) {
      if (nowMs - this.heartbeatSentAt > this.stallMs) this.lost(client, new Error(`the listener connection did not answer within ${this.stallMs} ms`));
      return;
    }
    const sentAt = nowMs;
    this.heartbeatSentAt = sentAt;
    client.query("SELECT 1").then(
      () => {
        if (client !== this.client) return;
        this.heartbeatSentAt = null;
        this.confirmedAt = Math.max(this.confirmedAt ?? 0, sentAt);
      },
      (error: Error) => this.lost(client, error),
    );
  }

  private emit(change: StoreChange): void {
    for (const listener of this.listeners) listener(change);
  }
}
