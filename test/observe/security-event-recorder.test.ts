/**
 * The security event recorder over a real SQLite store: denials counted per
 * (token, event, minute), allows and outages not stored, the map bounded
 * (new keys past it dropped and counted), and a store that fails (here: the
 * database file's store closed) drops the batch and counts it without
 * throwing into the decision path.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, expect, it } from "vitest";
import type { AuditEvent } from "../../src/engine/codes.js";
import type { Decision } from "../../src/engine/types.js";
import { createSecurityEventRecorder, type SecurityEventRecorder } from "../../src/observe/security-events.js";
import { SqliteStore } from "../../src/store/sqlite/sqlite-store.js";

let dir: string;
let store: SqliteStore;
let recorder: SecurityEventRecorder | undefined;
const MINUTE = 1_750_000_020_000 - (1_750_000_020_000 % 60_000);

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-security-events-"));
  store = SqliteStore.open({ dataDir: dir, secret: Buffer.alloc(32, 7) });
});

afterEach(async () => {
  await recorder?.close();
  recorder = undefined;
  await store.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

function decision(allowed: boolean, auditEvent: AuditEvent | null, tokenId: string | null): Decision {
  const identity = tokenId === null ? null : { tokenId, tenant: "acme" };
  return { allowed, auditEvent, identity } as unknown as Decision;
}

it("counts denials per token, event and minute; allows and outages are not stored", async () => {
  recorder = createSecurityEventRecorder({ log: store.securityEvents, flushIntervalMs: 60_000 });
  for (let i = 0; i < 1_000; i++) recorder.offer(decision(false, "auth.api_token_ip_allowlist_blocked", "tok_a"), MINUTE + i);
  recorder.offer(decision(false, "auth.api_token_ip_allowlist_blocked", "tok_a"), MINUTE + 60_000);
  recorder.offer(decision(false, "auth.api_token_unauthenticated", null), MINUTE);
  recorder.offer(decision(true, null, "tok_a"), MINUTE);
  recorder.offer(decision(false, "auth.api_token_unavailable", "tok_a"), MINUTE);
  expect(recorder.stats()).toEqual({ pending: 1_002, written: 0, droppedFull: 0, droppedWriteFailed: 0 });
  await recorder.flush();
  expect(recorder.stats()).toEqual({ pending: 0, written: 1_002, droppedFull: 0, droppedWriteFailed: 0 });
  const rows = await store.securityEvents.list({ limit: 10 });
  expect(rows.map((row) => [row.minuteMs - MINUTE, row.event, row.tokenId, row.count])).toEqual([
    [60_000, "auth.api_token_ip_allowlist_blocked", "tok_a", 1],
    [0, "auth.api_token_ip_allowlist_blocked", "tok_a", 1_000],
    [0, "auth.api_token_unauthenticated", null, 1],
  ]);
});

it("holds at most `capacity` keys: a known key still counts, a new one is dropped and counted", async () => {
  recorder = createSecurityEventRecorder({ log: store.securityEvents, capacity: 2, flushIntervalMs: 60_000 });
  for (const id of ["tok_a", "tok_b", "tok_c", "tok_a"]) recorder.offer(decision(false, "auth.api_token_mtls_required", id), MINUTE);
  expect(recorder.stats()).toMatchObject({ pending: 3, droppedFull: 1 });
  await recorder.flush();
  expect((await store.securityEvents.list({ limit: 10 })).map((row) => [row.tokenId, row.count])).toEqual(
    expect.arrayContaining([
      ["tok_a", 2],
      ["tok_b", 1],
    ]),
  );
});

it("drops and counts a batch the store cannot take, and keeps counting afterwards", async () => {
  const errors: number[] = [];
  recorder = createSecurityEventRecorder({ log: store.securityEvents, flushIntervalMs: 60_000, onWriteError: (_, denials) => errors.push(denials) });
  await store.close();
  recorder.offer(decision(false, "auth.api_token_quota_exceeded", "tok_a"), MINUTE);
  recorder.offer(decision(false, "auth.api_token_quota_exceeded", "tok_a"), MINUTE);
  await recorder.flush();
  expect(recorder.stats()).toEqual({ pending: 0, written: 0, droppedWriteFailed: 2, droppedFull: 0 });
  expect(errors).toEqual([2]);
  store = SqliteStore.open({ dataDir: dir, secret: Buffer.alloc(32, 7) });
  recorder.offer(decision(false, "auth.api_token_quota_exceeded", "tok_a"), MINUTE);
  expect(recorder.stats().pending).toBe(1);
});

it("flushes on its own every interval", async () => {
  recorder = createSecurityEventRecorder({ log: store.securityEvents, flushIntervalMs: 50 });
  recorder.offer(decision(false, "auth.api_token_ability_rejected", "tok_a"), MINUTE);
  const deadline = Date.now() + 2_000;
  while (recorder.stats().written === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  expect((await store.securityEvents.list({ limit: 1 }))[0]?.count).toBe(1);
});
