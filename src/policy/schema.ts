/**
 * Validates one parsed policy file against `policy.schema.json` and turns each
 * schema violation into a placed, readable {@link PolicyError}.
 */
import { Ajv2020, type ErrorObject } from "ajv/dist/2020.js";
import policySchema from "./policy.schema.json" with { type: "json" };
import { checkPathTemplate, suggest } from "./crosscheck.js";
import type { ControlError } from "./ip-allowlist-matcher.js";
import { checkPathPattern } from "./path-pattern-matcher.js";
import { errorAt, escapePointerToken, type PolicyError, type PolicySource } from "./errors.js";

/** The published JSON Schema (2020-12) of a policy file. */
export const POLICY_SCHEMA: Readonly<Record<string, unknown>> = policySchema;

const ajv = new Ajv2020({ allErrors: true, strict: true, verbose: true });
const validate = ajv.compile(policySchema);
// INVARIANT: the schema defines `$defs/tokenControls`; compiling the schema above registered it under its `$id`.
const validateControls = ajv.getSchema(`${policySchema.$id}#/$defs/tokenControls`)!;

/** Message for a failed `pattern`, per `$defs` entry. */
const PATTERN_MESSAGES: ReadonlyMap<string, (value: string) => string> = new Map([
  ["name", (v) => `invalid name \`${v}\`: use a lower-case letter, then lower-case letters, digits and \`_\``],
  ["scope", (v) => `invalid scope \`${v}\`: expected \`<module>:<action>\` in lower-case letters, digits and \`_\``],
  [
    "scopePatterns",
    (v) =>
      `invalid scope pattern \`${v}\`: expected \`module:action\`, \`module:*\`, \`*:action\` or \`*\`, optionally after \`!\``,
  ],
  [
    "tokenPrefix",
    (v) => `invalid token prefix \`${v}\`: use a lower-case letter, then lower-case letters, digits and \`_\`, ending in \`_\``,
  ],
  ["method", (v) => `invalid method \`${v}\`: expected an upper-case HTTP method such as \`GET\``],
  ["host", (v) => `invalid host \`${v}\`: expected a lower-case host name or IP address without port`],
  ["ruleId", () => `invalid rule id: line breaks are not allowed`],
  ["groupPath", (v) => checkPathTemplate(v, false) ?? `invalid base path \`${v}\``],
  ["operationPath", (v) => checkPathTemplate(v, true) ?? `invalid path \`${v}\``],
  ["pathPattern", (v) => checkPathPattern(v) ?? `invalid path pattern \`${v}\``],
  ["fingerprint", (v) => `\`${v}\` is not a sha-256 fingerprint: expected 64 hex digits, with or without colons`],
  ["clockTime", (v) => `invalid time \`${v}\`: expected \`HH:MM\` on a 24-hour clock`],
  [
    "workspaceSelector",
    (v) => `invalid workspace selector \`${v}\`: expected \`tenant/workspace\` or a workspace name of letters, digits, \`.\`, \`_\`, \`:\` or \`-\``,
  ],
  ["identifier", (v) => `invalid label \`${v}\`: use 1-128 letters, digits, \`.\`, \`_\`, \`:\` or \`-\``],
]);

function describeType(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value === "object" ? "an object" : `a ${typeof value}`;
}

function article(type: string): string {
  return /^[aeiou]/.test(type) ? `an ${type}` : `a ${type}`;
}

function describe(e: ErrorObject): { pointer: string; message: string; hint?: string } {
  const value: unknown = e.data;
  const shown = typeof value === "string" ? value : JSON.stringify(value);
  switch (e.keyword) {
    case "required":
      return { pointer: e.instancePath, message: `missing required property \`${String(e.params["missingProperty"])}\`` };
    case "additionalProperties": {
      const property = String(e.params["additionalProperty"]);
      const known = Object.keys((e.parentSchema as { properties?: object } | undefined)?.properties ?? {});
      const hint = suggest(property, known);
      return {
        pointer: `${e.instancePath}/${escapePointerToken(property)}`,
        message: `unknown property \`${property}\``,
        ...(hint === undefined ? {} : { hint }),
      };
    }
    case "type":
      return {
        pointer: e.instancePath,
        message: `expected ${article(String(e.params["type"]))}, found ${describeType(value)}`,
      };
    case "enum": {
      const allowed = (e.params["allowedValues"] as unknown[]).map(String);
      const hint = suggest(shown, allowed);
      return {
        pointer: e.instancePath,
        message: `unknown value \`${shown}\`: expected one of ${allowed.map((a) => `\`${a}\``).join(", ")}`,
        ...(hint === undefined ? {} : { hint }),
      };
    }
    case "pattern": {
      const def = /^#\/\$defs\/([^/]+)\//.exec(e.schemaPath)?.[1] ?? "";
      const message = PATTERN_MESSAGES.get(def)?.(shown) ?? `\`${shown}\` does not match \`${String(e.params["pattern"])}\``;
      return { pointer: e.instancePath, message };
    }
    case "minLength":
      return { pointer: e.instancePath, message: `\`${shown}\` is too short: at least ${String(e.params["limit"])} characters` };
    case "maxLength":
      return { pointer: e.instancePath, message: `\`${shown}\` is too long: at most ${String(e.params["limit"])} characters` };
    case "minProperties":
      // the schema's two objects that need a field: a control selector and a quota
      if (/\/quota$/.test(e.instancePath)) return { pointer: e.instancePath, message: "quota must set `limitPerMinute`, `limitPerDay` or both" };
      return { pointer: e.instancePath, message: "selector must name at least one of `workspace`, `environment`, `service` or `role`" };
    case "minItems":
      return { pointer: e.instancePath, message: `expected at least ${String(e.params["limit"])} item${e.params["limit"] === 1 ? "" : "s"}` };
    default:
      return { pointer: e.instancePath, message: (e.message ?? "invalid value").toLowerCase() };
  }
}

/**
 * Validates a parsed policy file. Returns every violation (the validator runs
 * with `allErrors`), each placed at the node its JSON pointer names; an empty
 * list means the file matches the schema.
 */
export function validatePolicyFile(source: PolicySource, value: unknown): PolicyError[] {
  if (validate(value)) return [];
  return (validate.errors ?? []).map((e) => {
    const { pointer, message, hint } = describe(e);
    return errorAt(source, pointer, message, hint);
  });
}

/**
 * Validates a token's controls (from the CLI or the management path) against
 * the schema's `tokenControls` definition: the same shapes and messages as a
 * policy file's controls. Pointers are relative to the controls object.
 */
export function validateControlsShape(value: unknown): ControlError[] {
  if (validateControls(value)) return [];
  return (validateControls.errors ?? []).map((e) => {
    const { pointer, message, hint } = describe(e);
    return hint === undefined ? { pointer, message } : { pointer, message, hint };
  });
}
