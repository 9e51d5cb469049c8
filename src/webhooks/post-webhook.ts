/**
 * One webhook attempt on the wire: a POST with a bounded total time, whose
 * answer is read only for its status (the body is discarded, at most 64 KiB
 * of it is waited for). A fresh connection per attempt, so a receiver that
 * restarted is never reached through a dead kept-alive socket.
 */
import http from "node:http";
import https from "node:https";

/** How an attempt ended: a 2xx answer is `ok`; anything else says why not. */
export type PostOutcome = { readonly ok: true; readonly status: number } | { readonly ok: false; readonly error: string };

const MAX_RESPONSE_BYTES = 64 * 1024;

/** POSTs `body` to `url` with `headers`; never throws, and settles within `timeoutMs`. */
export function postWebhook(url: string, headers: Readonly<Record<string, string>>, body: string, timeoutMs: number): Promise<PostOutcome> {
  return new Promise((resolve) => {
    let settled = false;
    const settle = (outcome: PostOutcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(outcome);
    };
    const target = new URL(url);
    const send = target.protocol === "https:" ? https.request : http.request;
    const request = send(target, {
      method: "POST",
      agent: false,
      headers: { ...headers, "content-type": "application/json", "content-length": String(Buffer.byteLength(body)) },
    });
    // why: one deadline for connect, send and answer together, so a receiver trickling bytes cannot hold a slot
    const timer = setTimeout(() => {
      settle({ ok: false, error: `timed out after ${timeoutMs} ms` });
      request.destroy();
    }, timeoutMs);
    request.on("error", (error: NodeJS.ErrnoException) => settle({ ok: false, error: error.code ?? error.message }));
    request.on("response", (response) => {
      const status = response.statusCode ?? 0;
      let received = 0;
      response.on("data", (chunk: Buffer) => {
        received += chunk.length;
        if (received > MAX_RESPONSE_BYTES) response.destroy();
      });
      const done = () => settle(status >= 200 && status < 300 ? { ok: true, status } : { ok: false, error: `HTTP ${status}` });
      response.on("end", done);
      response.on("close", done);
      response.on("error", done);
    });
    request.end(body);
  });
}
