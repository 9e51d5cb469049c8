/**
 * `/policy` on the HTTP port: the read-only policy explorer (off unless
 * `--policy-explorer`). Serves the page, its model, and explanations of tried
 * requests. Nothing here changes state: an explanation charges no quota and
 * reads no store (the token is described inline).
 */
import type http from "node:http";
import { isWorkspaceRestrictionMode } from "../engine/workspace-restriction-mode.js";
import { explainRequest } from "../explain/explain.js";
import { EXPLORER_CSS, EXPLORER_HTML, EXPLORER_JS } from "../explorer/explorer-assets.js";
import { buildExplorerModel } from "../explorer/explorer-model.js";
import type { CompiledPolicySet } from "../policy/types.js";
import { prepareSingleCase } from "../policy-test/build-case.js";
import type { RequestSpec } from "../policy-test/test-file.js";

// The page loads only its own files; policy text is rendered as text, never markup.
const SECURITY_HEADERS = {
  "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store",
};

const ASSETS = new Map<string, { type: string; body: string }>([
  ["/policy", { type: "text/html; charset=utf-8", body: EXPLORER_HTML }],
  ["/policy/", { type: "text/html; charset=utf-8", body: EXPLORER_HTML }],
  ["/policy/explorer.css", { type: "text/css; charset=utf-8", body: EXPLORER_CSS }],
  ["/policy/explorer.js", { type: "text/javascript; charset=utf-8", body: EXPLORER_JS }],
]);

const MAX_BODY_BYTES = 64 * 1024;

/** An explorer request body. */
interface ExplainBody {
  request?: RequestSpec;
  token?: unknown;
  at?: string;
  tenantSuspended?: boolean;
  /** `true` or a mode (`writes`, `all`). */
  workspaceRestricted?: unknown;
}

function send(response: http.ServerResponse, status: number, type: string, body: string, extra: Record<string, string> = {}): void {
  response.writeHead(status, { ...SECURITY_HEADERS, "content-type": type, "content-length": Buffer.byteLength(body), ...extra });
  response.end(body);
}

const json = (response: http.ServerResponse, status: number, value: unknown) => send(response, status, "application/json", JSON.stringify(value));

/**
 * Returns the explorer's request handler: it answers requests under `/policy`
 * and returns `true`, or returns `false` for any other path.
 * `policy` is read per request, so a reload shows at once.
 */
export function createPolicyExplorerHandler(policy: () => CompiledPolicySet, now: () => number = Date.now): (request: http.IncomingMessage, response: http.ServerResponse) => boolean {
  return (request, response) => {
    const path = (request.url ?? "/").split("?", 1)[0]!;
    if (path !== "/policy" && !path.startsWith("/policy/")) return false;
    const asset = ASSETS.get(path);
    if (asset !== undefined || path === "/policy/model.json") {
      if (request.method !== "GET" && request.method !== "HEAD") {
        send(response, 405, "text/plain; charset=utf-8", "method not allowed\n", { allow: "GET, HEAD" });
        return true;
      }
      if (asset !== undefined) send(response, 200, asset.type, asset.body);
      else json(response, 200, buildExplorerModel(policy()));
      return true;
    }
    if (path === "/policy/explain") {
      if (request.method !== "POST") {
        send(response, 405, "text/plain; charset=utf-8", "method not allowed\n", { allow: "POST" });
        return true;
      }
      readBody(request, (body) => {
        try {
          answerExplain(response, body, policy(), now);
        } catch {
          // why: a bug here must not take the decision server down with it
          if (!response.headersSent) json(response, 500, { error: "the explanation could not be made" });
        }
      });
      return true;
    }
    send(response, 404, "text/plain; charset=utf-8", "not found\n");
    return true;
  };
}

/** Answers one `/policy/explain` body with the explanation, or a 4xx naming what is wrong with it. */
function answerExplain(response: http.ServerResponse, body: string | null, current: CompiledPolicySet, now: () => number): void {
  if (body === null) return json(response, 413, { error: `request body over ${MAX_BODY_BYTES} bytes` });
  let parsed: ExplainBody;
  try {
    parsed = JSON.parse(body) as ExplainBody;
  } catch {
    return json(response, 400, { error: "body is not JSON" });
  }
  if (typeof parsed !== "object" || parsed === null || typeof parsed.request !== "object" || parsed.request === null) {
    return json(response, 400, { error: "body needs a `request` object" });
  }
  const nowMs = parsed.at === undefined ? now() : typeof parsed.at === "string" ? Date.parse(parsed.at) : NaN;
  if (Number.isNaN(nowMs)) return json(response, 400, { error: `invalid time \`${String(parsed.at)}\`: expected ISO 8601` });
  const restricted = parsed.workspaceRestricted ?? false;
  if (typeof restricted !== "boolean" && !isWorkspaceRestrictionMode(restricted)) {
    return json(response, 400, { error: "`workspaceRestricted` must be true, false, `writes` or `all`" });
  }
  const prepared = prepareSingleCase(current, {
    token: parsed.token ?? null,
    request: parsed.request,
    tenantSuspended: parsed.tenantSuspended === true,
    workspaceRestricted: restricted,
    nowMs,
  });
  if (!prepared.ok) return json(response, 400, { error: prepared.errors.join("; ") });
  json(response, 200, { revision: current.revision, ...explainRequest(prepared.input, current, prepared.facts, nowMs) });
}

function readBody(request: http.IncomingMessage, done: (body: string | null) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let over = false;
  request.on("data", (chunk: Buffer) => {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) over = true;
    else chunks.push(chunk);
  });
  request.on("end", () => done(over ? null : Buffer.concat(chunks).toString("utf8")));
  request.on("error", () => done(null));
}
