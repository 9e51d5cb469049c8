/**
 * The pure parts of webhooks: the signature (checked against an independent
 * node:crypto computation and the test's own verifier), backoff and giving
 * up, and the event pattern rule.
 */
import { createHmac } from "node:crypto";
import { describe, expect, it } from "vitest";
import { DEFAULT_WEBHOOK_RETRY, givesUp, nextRetryDelayMs } from "../../src/webhooks/backoff.js";
import { signWebhook, verifyWebhookSignature } from "../../src/webhooks/sign-webhook.js";
import { WEBHOOK_EVENT_NAMES, selectWebhookEvents, securityWebhookEvent, webhookEventPatternProblem } from "../../src/webhooks/webhook-events.js";
import { signatureIsValid } from "../support/webhook-receiver.js";

const SECRET = "whsec_test_0123456789abcdef";
const BODY = JSON.stringify({ id: "evt_1", type: "api_token.revoked", data: { name: "billing" } });

describe("signWebhook", () => {
  it("is HMAC-SHA-256 over `${t}.${body}` in hex, as an independent computation makes it", () => {
    const t = 1_764_900_000;
    const expected = createHmac("sha256", SECRET).update(`${t}.${BODY}`).digest("hex");
    expect(signWebhook(Buffer.from(SECRET), t, BODY)).toBe(`t=${t},v1=${expected}`);
  });

  it("verifies with the documented recipe (the test's own verifier) and refuses a changed body, secret or timestamp", () => {
    const nowMs = 1_764_900_000_000;
    const header = signWebhook(Buffer.from(SECRET), nowMs / 1000, BODY);
    expect(signatureIsValid(SECRET, header, BODY, nowMs)).toBe(true);
    expect(signatureIsValid(SECRET, header, BODY.replace("billing", "billinG"), nowMs)).toBe(false);
    expect(signatureIsValid("another-secret-of-length", header, BODY, nowMs)).toBe(false);
    expect(signatureIsValid(SECRET, header.replace(/t=\d+/, `t=${nowMs / 1000 + 1}`), BODY, nowMs)).toBe(false);
  });

  it.each([
    { name: "a good signature", header: (h: string) => h, now: 0, want: "ok" },
    { name: "a tampered mac", header: (h: string) => h.slice(0, -1) + (h.endsWith("0") ? "1" : "0"), now: 0, want: "bad_signature" },
    { name: "no timestamp", header: (h: string) => h.replace(/t=\d+,/, ""), now: 0, want: "malformed" },
    { name: "a timestamp past the five minute window (a replay)", header: (h: string) => h, now: 301, want: "too_old" },
    { name: "a second v1 entry next to the right one (secret rotation)", header: (h: string) => `${h},v1=${"ab".repeat(32)}`, now: 0, want: "ok" },
  ])("verifyWebhookSignature: $name -> $want", ({ header, now, want }) => {
    const t = 1_764_900_000;
    const signed = signWebhook(Buffer.from(SECRET), t, BODY);
    expect(verifyWebhookSignature(Buffer.from(SECRET), header(signed), BODY, t + now)).toBe(want);
  });
});

describe("backoff", () => {
  it("doubles from the base, stays within [step/2, step], and is capped", () => {
    const settings = { ...DEFAULT_WEBHOOK_RETRY, baseDelayMs: 1_000, maxDelayMs: 60_000 };
    for (const [attempts, step] of [[1, 1_000], [2, 2_000], [3, 4_000], [6, 32_000], [7, 60_000], [30, 60_000], [500, 60_000]] as const) {
      expect(nextRetryDelayMs(attempts, settings, 0)).toBe(step / 2);
      expect(nextRetryDelayMs(attempts, settings, 0.999_999)).toBeLessThanOrEqual(step);
      expect(nextRetryDelayMs(attempts, settings, 0.999_999)).toBeGreaterThan(step * 0.99);
    }
  });

  it("gives up after the attempts or the age, whichever comes first", () => {
    const settings = { ...DEFAULT_WEBHOOK_RETRY, maxAttempts: 3, maxAgeMs: 10_000 };
    expect(givesUp(2, 0, 9_999, settings)).toBe(false);
    expect(givesUp(3, 0, 1, settings)).toBe(true);
    expect(givesUp(1, 0, 10_000, settings)).toBe(true);
  });
});

describe("event names and patterns", () => {
  it.each([
    { pattern: "api_token.revoked", problem: null },
    { pattern: "auth.api_token_*", problem: null },
    { pattern: "*", problem: null },
    { pattern: "tenant.*", problem: null },
    { pattern: "api_token.revokd", problem: "unknown event `api_token.revokd`" },
    { pattern: "auth.*_blocked", problem: "event pattern `auth.*_blocked` may hold `*` only at its end" },
    { pattern: "billing.*", problem: "event pattern `billing.*` matches no event" },
    { pattern: "auth.api_token_unavailable", problem: "unknown event `auth.api_token_unavailable`" },
  ])("$pattern", ({ pattern, problem }) => {
    expect(webhookEventPatternProblem(pattern)).toBe(problem);
  });

  it("selects by exact name or by prefix", () => {
    expect([...selectWebhookEvents(["api_token.*"])].sort()).toEqual(["api_token.controls_updated", "api_token.created", "api_token.emergency_revoked", "api_token.revoked", "api_token.rotated"]);
    expect(selectWebhookEvents(["*"]).size).toBe(WEBHOOK_EVENT_NAMES.length);
    expect([...selectWebhookEvents(["tenant.suspended", "workspace.*"])].sort()).toEqual(["tenant.suspended", "workspace.restricted", "workspace.unrestricted"]);
  });

  it("gives a security event row one stable id per (token, event, minute), whatever its count", () => {
    const row = { minuteMs: 1_764_900_000_000 - (1_764_900_000_000 % 60_000), event: "auth.api_token_ip_allowlist_blocked" as const, tokenId: "tok_1", tenant: "acme", count: 5, lastAtMs: 1_764_900_000_000 };
    expect(securityWebhookEvent(row).id).toBe(securityWebhookEvent({ ...row, count: 900, lastAtMs: row.lastAtMs + 1 }).id);
    expect(securityWebhookEvent(row).id).not.toBe(securityWebhookEvent({ ...row, tokenId: null }).id);
    expect(JSON.parse(securityWebhookEvent(row).body)).toMatchObject({ type: row.event, category: "security", tenant: "acme", tokenId: "tok_1", data: { count: 5 } });
  });
});
