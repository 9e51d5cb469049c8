/**
 * Path patterns for conditional access routes and workspace-restriction
 * `protect` entries: the operation template syntax (literal segments and
 * whole-segment `{param}`s), optionally ending in `/**` for "this path and
 * everything below it". Compiled into a segment trie; matching walks the
 * request's segments, whatever the number of patterns.
 */
import { checkPathTemplate } from "./crosscheck.js";
import { splitPath, templateNode, type TemplateTrieNode } from "./compile.js";
import type { PathPatternMatcher } from "./types.js";

/** A pattern with an optional upper-case method; no method matches every method. */
export interface PathPatternSpec {
  readonly method?: string;
  readonly path: string;
}

/** Methods a node accepts: every method, or a set (with `HEAD` added wherever `GET` is). */
type Methods = "any" | Set<string>;

interface Node extends TemplateTrieNode<Node> {
  /** Methods of patterns ending exactly here. */
  exact: Methods | undefined;
  /** Methods of patterns ending here with `/**`. */
  below: Methods | undefined;
}

function newNode(): Node {
  return { literals: new Map(), param: undefined, exact: undefined, below: undefined };
}

function addMethod(current: Methods | undefined, method: string | undefined): Methods {
  if (method === undefined || current === "any") return "any";
  const set = current ?? new Set<string>();
  set.add(method);
  if (method === "GET") set.add("HEAD");
  return set;
}

function accepts(methods: Methods | undefined, method: string): boolean {
  return methods !== undefined && (methods === "any" || methods.has(method));
}

/**
 * Explains what is wrong with a pattern, or returns `null` when it is fine:
 * a path template as operations write it, optionally followed by `/**`.
 */
export function checkPathPattern(pattern: string): string | null {
  if (pattern === "/**") return null;
  const template = pattern.endsWith("/**") ? pattern.slice(0, -3) : pattern;
  if (template.includes("*")) return `path pattern \`${pattern}\` may only use \`*\` as a final \`/**\` segment`;
  return checkPathTemplate(template, true);
}

/**
 * Builds the matcher.
 *
 * INVARIANT: every pattern passed {@link checkPathPattern}.
 *
 * @example
 * const m = buildPathPatternMatcher([{ path: "/api/payouts/**" }, { method: "POST", path: "/api/ledger/{id}" }]);
 * m.match("GET", ["api", "payouts", "7"]); // true
 */
export function buildPathPatternMatcher(patterns: readonly PathPatternSpec[]): PathPatternMatcher {
  const root = newNode();
  for (const { method, path } of patterns) {
    const below = path.endsWith("/**");
    const node = templateNode(root, splitPath(below ? path.slice(0, -3) || "/" : path), newNode);
    if (below) node.below = addMethod(node.below, method);
    else node.exact = addMethod(node.exact, method);
  }
  const find = (node: Node, method: string, segments: readonly string[], index: number): boolean => {
    if (accepts(node.below, method)) return true;
    if (index === segments.length) return accepts(node.exact, method);
    const literal = node.literals.get(segments[index]!);
    if (literal !== undefined && find(literal, method, segments, index + 1)) return true;
    return node.param !== undefined && find(node.param, method, segments, index + 1);
  };
  return Object.freeze({ match: (method: string, segments: readonly string[]) => find(root, method, segments, 0) });
}
