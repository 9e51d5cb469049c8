/**
 * Reads the policy set's `webhooks` endpoints when it loads: each URL
 * checked, each event name or pattern checked against the catalog, each
 * secret reference (`env:NAME`, `file:path`) resolved. Every problem is a
 * policy error placed on the entry that caused it, so a bad endpoint refuses
 * the start and a reload keeps the set in force.
 */
import { isAbsolute, join } from "node:path";
import { WEBHOOK_EVENT_NAMES, selectWebhookEvents, webhookEventPatternProblem } from "../webhooks/webhook-events.js";
import type { Located } from "./compile.js";
import { errorAt, type PolicyError, type PolicySource } from "./errors.js";
import { readRegularFile } from "./read-regular-file.js";
import { suggest } from "./suggest.js";
import type { CompiledWebhookEndpoint, PolicySetSettings } from "./types.js";

/** Shortest signing secret accepted, in bytes: shorter ones are guessable from captured signatures sooner. */
export const MIN_WEBHOOK_SECRET_BYTES = 16;

/** Result of {@link loadWebhookEndpoints}. */
export type LoadWebhookEndpointsResult =
  | { readonly ok: true; readonly endpoints: readonly CompiledWebhookEndpoint[] }
  | { readonly ok: false; readonly errors: readonly PolicyError[] };

/**
 * Checks and compiles `policySet.webhooks`; `dir` is the policy folder
 * (relative `file:` references start there), `env` where `env:` references
 * are read. Without `readSecrets`, no secret is read (each is empty): for
 * processes that send no webhooks.
 */
export function loadWebhookEndpoints(
  dir: string,
  policySet: Located<PolicySetSettings>,
  sources: ReadonlyMap<string, PolicySource>,
  env: NodeJS.ProcessEnv = process.env,
  readSecrets = true,
): LoadWebhookEndpointsResult {
  const specs = policySet.value.webhooks ?? [];
  const errors: PolicyError[] = [];
  const source = sources.get(policySet.file);
  const fail = (pointer: string, message: string, hint?: string) => {
    if (source !== undefined) errors.push(errorAt(source, pointer, message, hint));
    else errors.push({ file: policySet.file, pointer, line: 0, column: 0, message, ...(hint === undefined ? {} : { hint }) });
  };
  const endpoints: CompiledWebhookEndpoint[] = [];
  const seen = new Set<string>();
  specs.forEach((spec, i) => {
    const at = `${policySet.pointer}/webhooks/${i}`;
    let ok = true;
    if (seen.has(spec.id)) {
      fail(`${at}/id`, `webhook endpoint id \`${spec.id}\` is used twice`, "give each endpoint its own id");
      ok = false;
    }
    seen.add(spec.id);
    const urlProblem = webhookUrlProblem(spec.url);
    if (urlProblem !== null) {
      fail(`${at}/url`, urlProblem, "give an absolute URL such as `https://hooks.example.com/portcullis`");
      ok = false;
    }
    spec.events.forEach((pattern, n) => {
      const problem = webhookEventPatternProblem(pattern);
      if (problem === null) return;
      fail(`${at}/events/${n}`, problem, suggest(pattern, WEBHOOK_EVENT_NAMES) ?? "name an event such as `api_token.revoked`, or a pattern such as `auth.api_token_*`");
      ok = false;
    });
    const secret = readSecrets ? readSecretReference(dir, spec.secret, env) : { ok: true as const, value: Buffer.alloc(0) };
    if (!secret.ok) {
      fail(`${at}/secret`, `webhook endpoint \`${spec.id}\`: ${secret.message}`, secret.hint);
      ok = false;
    }
    if (ok && secret.ok) endpoints.push(Object.freeze({ id: spec.id, url: new URL(spec.url).href, events: selectWebhookEvents(spec.events), secret: secret.value }));
  });
  return errors.length > 0 ? { ok: false, errors } : { ok: true, endpoints };
}

/** `null` for a URL a webhook may be sent to, else why not. */
export function webhookUrlProblem(url: string): string | null {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return `webhook url \`${url}\` is not an absolute URL`;
  }
  if (parsed.protocol !== "https:" && parsed.protocol !== "http:") return `webhook url \`${url}\` must be http or https, not \`${parsed.protocol.slice(0, -1)}\``;
  // why: credentials in a URL end up in logs and in `webhooks deliveries`; the signature authenticates instead
  if (parsed.username !== "" || parsed.password !== "") return `webhook url \`${url}\` must not hold a user name or password`;
  if (parsed.hash !== "") return `webhook url \`${url}\` must not hold a fragment`;
  return null;
}

/** Reads an `env:NAME` or `file:path` reference (the schema checked its shape). Never throws. */
function readSecretReference(dir: string, reference: string, env: NodeJS.ProcessEnv): { ok: true; value: Buffer } | { ok: false; message: string; hint: string } {
  let text: string;
  if (reference.startsWith("env:")) {
    const name = reference.slice("env:".length);
    const value = env[name];
    if (value === undefined || value.trim() === "") return { ok: false, message: `secret variable \`${name}\` is not set`, hint: `set \`${name}\` in the environment of every process that loads this policy set` };
    text = value.trim();
  } else if (reference.startsWith("file:")) {
    const path = reference.slice("file:".length);
    const read = readRegularFile(isAbsolute(path) ? path : join(dir, path));
    if (!read.ok) return { ok: false, message: `secret file \`${path}\`: ${read.message}`, hint: "give a file's path, relative to the policy folder or absolute" };
    text = read.text.trim();
  } else {
    return { ok: false, message: `secret reference \`${reference}\` is neither \`env:NAME\` nor \`file:path\``, hint: "write `env:WEBHOOK_SECRET` or `file:/run/secrets/webhook`" };
  }
  const value = Buffer.from(text, "utf8");
  if (value.length < MIN_WEBHOOK_SECRET_BYTES) return { ok: false, message: `secret is ${value.length} bytes; at least ${MIN_WEBHOOK_SECRET_BYTES} are needed`, hint: "use a random value, e.g. `openssl rand -hex 32`" };
  return { ok: true, value };
}
