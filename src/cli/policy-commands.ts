/**
 * `portcullis policy test / explain / schema / diff`: the policy author's
 * tools, as argument parsing over `src/policy-test`, `src/explain` and
 * `src/policy-diff`.
 */
import { cpSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Option, type Command } from "commander";
import { resolvePaths } from "../config/config.js";
import type { TokenRecord } from "../engine/types.js";
import { isWorkspaceRestrictionMode, WORKSPACE_RESTRICTION_MODES, type WorkspaceRestrictionFact } from "../engine/workspace-restriction-mode.js";
import { explainRequest, formatExplanation } from "../explain/explain.js";
import { PolicyLoadError } from "../policy/errors.js";
import { loadPolicySet } from "../policy/load.js";
import { POLICY_SCHEMA } from "../policy/schema.js";
import type { CompiledPolicySet } from "../policy/types.js";
import {
  POLICY_TEST_SCHEMA,
  exitCodeOf,
  findTestFiles,
  formatJunit,
  formatTestRun,
  prepareSingleCase,
  runPolicyTests,
} from "../policy-test/run-policy-tests.js";
import { workspaceKey } from "../store/store-interfaces.js";
import { TokenStore } from "../store/token-store.js";
import { diffPolicyFolders, formatPolicyDiff } from "../policy-diff/diff.js";
import { materializeRevision } from "../policy-diff/git-revision.js";

/** Thrown for bad arguments; the CLI exits 2 with its message. */
export class PolicyUsageError extends Error {}

function loadOrThrow(dir: string): CompiledPolicySet {
  const loaded = loadPolicySet(dir);
  if (!loaded.ok) throw new PolicyLoadError(loaded.errors);
  return loaded.policy;
}

/** Adds `test`, `explain`, `schema` and `diff` under the `policy` command. */
export function registerPolicyAuthorCommands(policy: Command): void {
  policy
    .command("schema")
    .description("print the JSON Schema of policy files (or, with --tests, of policy test files)")
    .option("--tests", "the schema of test files instead")
    .action((flags: { tests?: boolean }) => {
      process.stdout.write(JSON.stringify(flags.tests === true ? POLICY_TEST_SCHEMA : POLICY_SCHEMA, null, 2) + "\n");
    });

  policy
    .command("test")
    .description("run the policy set's test files (default <dir>/tests) through the server's engine; exit 0 pass, 1 fail, 2 invalid test files")
    .argument("[dir]", "policy set folder (env PORTCULLIS_POLICY_DIR, default policies)")
    .option("--tests <path>", "test file or folder (default <dir>/tests)")
    .option("--run <pattern>", "only cases whose name matches this regular expression")
    .addOption(new Option("--format <format>", "output format").choices(["text", "junit"]).default("text"))
    .option("--verbose", "list passing cases too")
    .action((dir: string | undefined, flags: { tests?: string; run?: string; format: string; verbose?: boolean }) => {
      const folder = dir ?? resolvePaths({}).policyDir;
      if (flags.run !== undefined) {
        try {
          new RegExp(flags.run);
        } catch {
          throw new PolicyUsageError(`invalid --run \`${flags.run}\`: expected a regular expression`);
        }
      }
      const policySet = loadOrThrow(folder);
      const testPath = flags.tests ?? join(folder, "tests");
      const files = findTestFiles(testPath);
      if (files.length === 0) throw new PolicyUsageError(`no test files found in \`${testPath}\``);
      const run = runPolicyTests(policySet, files, { ...(flags.run === undefined ? {} : { run: flags.run }), baseDir: folder });
      process.stdout.write(flags.format === "junit" ? formatJunit(run) : formatTestRun(run, flags.verbose === true));
      process.exitCode = exitCodeOf(run);
    });

  policy
    .command("explain")
    .description("explain one request against a policy set: every stage in precedence order, its verdict and why")
    .argument("[dir]", "policy set folder (env PORTCULLIS_POLICY_DIR, default policies)")
    .requiredOption("--path <path>", "request path and query, e.g. /api/payouts?limit=10")
    .option("--method <method>", "request method", "GET")
    .option("--host <host>", "request host (default: a host of the token's environment)")
    .option("--header <name:value>", "request header, repeatable", (v: string, prev: string[] = []) => [...prev, v])
    .option("--source-ip <ip>", "client address")
    .option("--token <json>", "inline token facts as JSON, e.g. '{\"role\":\"tenant_operator\",\"keyLevel\":\"read_only\"}'")
    .option("--fixture <file#name>", "a token fixture from a policy test file")
    .option("--token-id <id>", "a stored token, read from a copy of --data-dir's store")
    .option("--data-dir <dir>", "store folder for --token-id (env PORTCULLIS_DATA_DIR, default data)")
    .option("--tenant-suspended", "judge as if the token's tenant were suspended")
    .option("--workspace-restricted [mode]", "judge as if the token's workspace were restricted, mode writes (default) or all")
    .option("--at <time>", "decision time, ISO 8601 (default now)")
    .addOption(new Option("--format <format>", "output format").choices(["text", "json"]).default("text"))
    .action((dir: string | undefined, flags: ExplainFlags) => explain(dir ?? resolvePaths({}).policyDir, flags));

  policy
    .command("diff")
    .description("what changes in effective permissions between two policy sets; exit 1 when a permission is lost")
    .argument("<old>", "policy folder, or a git revision `REV:path`, e.g. HEAD~1:policies")
    .argument("<new>", "policy folder, or a git revision `REV:path`")
    .addOption(new Option("--format <format>", "output format").choices(["text", "json"]).default("text"))
    .action((oldRef: string, newRef: string, flags: { format: string }) => {
      const temps: string[] = [];
      const folder = (ref: string) => {
        const made = materializeRevision(ref);
        if (made.temporary) temps.push(made.dir);
        return made.dir;
      };
      try {
        const oldPolicy = loadOrThrow(folder(oldRef));
        const newPolicy = loadOrThrow(folder(newRef));
        const diff = diffPolicyFolders(oldPolicy, newPolicy);
        process.stdout.write(flags.format === "json" ? JSON.stringify(diff, null, 2) + "\n" : formatPolicyDiff(diff));
        process.exitCode = diff.lost ? 1 : 0;
      } finally {
        for (const dir of temps) rmSync(dir, { recursive: true, force: true });
      }
    });
}

interface ExplainFlags {
  path: string;
  method: string;
  host?: string;
  header?: string[];
  sourceIp?: string;
  token?: string;
  fixture?: string;
  tokenId?: string;
  dataDir?: string;
  tenantSuspended?: boolean;
  /** `true` when given without a mode. */
  workspaceRestricted?: boolean | string;
  at?: string;
  format: string;
}

async function explain(dir: string, flags: ExplainFlags): Promise<void> {
  const policySet = loadOrThrow(dir);
  const nowMs = flags.at === undefined ? Date.now() : Date.parse(flags.at);
  if (Number.isNaN(nowMs)) throw new PolicyUsageError(`invalid --at \`${flags.at}\`: expected an ISO 8601 time such as 2026-03-02T09:30:00Z`);
  const given = [flags.token, flags.fixture, flags.tokenId].filter((v) => v !== undefined).length;
  if (given > 1) throw new PolicyUsageError("give one of --token, --fixture and --token-id");
  const headers: Record<string, string> = {};
  for (const h of flags.header ?? []) {
    const colon = h.indexOf(":");
    if (colon <= 0) throw new PolicyUsageError(`invalid --header \`${h}\`: expected name:value`);
    headers[h.slice(0, colon).trim()] = h.slice(colon + 1).trim();
  }
  const request = {
    method: flags.method,
    path: flags.path,
    headers,
    ...(flags.host === undefined ? {} : { host: flags.host }),
    ...(flags.sourceIp === undefined ? {} : { sourceIp: flags.sourceIp }),
  };
  const restriction = flags.workspaceRestricted;
  if (typeof restriction === "string" && !isWorkspaceRestrictionMode(restriction)) {
    throw new PolicyUsageError(`invalid --workspace-restricted \`${restriction}\`: expected ${WORKSPACE_RESTRICTION_MODES.join(" or ")}`);
  }
  let stored: { record: TokenRecord; tenantSuspended: boolean; workspaceRestricted: WorkspaceRestrictionFact } | undefined;
  if (flags.tokenId !== undefined) stored = await readStoredToken(resolvePaths({ ...(flags.dataDir === undefined ? {} : { dataDir: flags.dataDir }) }).dataDir, flags.tokenId);
  let token: unknown = null;
  if (flags.token !== undefined) {
    try {
      token = JSON.parse(flags.token);
    } catch {
      throw new PolicyUsageError("invalid --token: expected a JSON object of token facts");
    }
  }
  const prepared = prepareSingleCase(policySet, {
    ...(stored === undefined ? {} : { record: stored.record }),
    token,
    ...(flags.fixture === undefined ? {} : { fixture: flags.fixture }),
    request,
    tenantSuspended: flags.tenantSuspended === true || stored?.tenantSuspended === true,
    workspaceRestricted: restriction ?? stored?.workspaceRestricted ?? false,
    nowMs,
  });
  if (!prepared.ok) throw new PolicyUsageError(prepared.errors.join("; "));
  const explanation = explainRequest(prepared.input, policySet, prepared.facts, nowMs);
  if (flags.format === "json") process.stdout.write(JSON.stringify({ revision: policySet.revision, ...explanation }, null, 2) + "\n");
  else process.stdout.write(formatExplanation(explanation) + "\n");
}

/**
 * Reads one token from a copy of the data folder, so that the store's own
 * code (migrations, row mapping) reads it while the original stays untouched.
 */
async function readStoredToken(dataDir: string, id: string): Promise<{ record: TokenRecord; tenantSuspended: boolean; workspaceRestricted: WorkspaceRestrictionFact }> {
  let names: string[];
  try {
    names = readdirSync(dataDir);
  } catch {
    throw new PolicyUsageError(`data folder \`${dataDir}\` cannot be read`);
  }
  const copy = mkdtempSync(join(tmpdir(), "portcullis-explain-"));
  try {
    for (const name of names) cpSync(join(dataDir, name), join(copy, name), { recursive: true });
    const store = TokenStore.open({ dataDir: copy });
    try {
      const record = await store.get(id);
      if (record === undefined) throw new PolicyUsageError(`no token \`${id}\` in \`${dataDir}\``);
      const state = store.readAdministrativeState();
      return {
        record,
        tenantSuspended: state.suspendedTenants.has(record.tenant),
        workspaceRestricted: state.restrictedWorkspaces.get(workspaceKey(record.tenant, record.workspace)) ?? false,
      };
    } finally {
      store.close();
    }
  } finally {
    rmSync(copy, { recursive: true, force: true });
  }
}
