/**
 * The receiver verification snippet of docs/operations.md, run as written:
 * it accepts what Portcullis signs, and refuses a changed body, another
 * secret and a timestamp outside its five minute replay window.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { signWebhook } from "../../src/webhooks/sign-webhook.js";
import { REPO_ROOT } from "../support/fixtures.js";

type Verify = (secret: string, header: string | undefined, rawBody: string | Buffer, nowMs?: number) => boolean;

async function loadSnippet(): Promise<Verify> {
  const doc = fs.readFileSync(path.join(REPO_ROOT, "docs", "operations.md"), "utf8");
  const section = doc.slice(doc.indexOf("### Verifying a webhook (Node)"));
  const code = /```js\n([\s\S]*?)```/.exec(section)?.[1];
  if (code === undefined) throw new Error("no js block under `Verifying a webhook (Node)`");
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-snippet-"));
  const file = path.join(dir, "verify.mjs");
  fs.writeFileSync(file, code);
  try {
    return ((await import(pathToFileURL(file).href)) as { verifyPortcullisSignature: Verify }).verifyPortcullisSignature;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

describe("docs/operations.md: the receiver's verification snippet", () => {
  it("accepts a Portcullis signature and refuses tampering, another secret and replays", async () => {
    const verify = await loadSnippet();
    const secret = "receiver-secret-0123456789abcdef";
    const body = JSON.stringify({ id: "evt_1", type: "api_token.revoked" });
    const nowMs = 1_764_926_400_000;
    const header = signWebhook(Buffer.from(secret), nowMs / 1000, body);
    expect(verify(secret, header, body, nowMs)).toBe(true);
    expect(verify(secret, header, Buffer.from(body), nowMs + 299_000)).toBe(true);
    expect(verify(secret, header, body.replace("revoked", "created"), nowMs)).toBe(false);
    expect(verify("another-secret-0123456789abcdef", header, body, nowMs)).toBe(false);
    expect(verify(secret, header, body, nowMs + 301_000)).toBe(false);
    expect(verify(secret, header, body, nowMs - 301_000)).toBe(false);
    expect(verify(secret, undefined, body, nowMs)).toBe(false);
    expect(verify(secret, "t=1764926400,v1=zz", body, nowMs)).toBe(false);
  });
});
