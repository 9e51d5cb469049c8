/**
 * The `serve` settings of the decision log, read from flags over environment
 * variables over defaults. Kept here rather than in config.ts so that the
 * decision log's options live in one file; config.ts spreads the result in.
 *
 * | flag | env | default |
 * | --- | --- | --- |
 * | `--decision-log <sink>` | `PORTCULLIS_DECISION_LOG` | `stdout`: `stdout` or `file:PATH` |
 * | `--decision-log-mode <mode>` | `PORTCULLIS_DECISION_LOG_MODE` | `denials` (the product contract's default: every denial, JSON lines on stdout): `off`, `denials`, `sampled`, `all` |
 * | `--decision-log-sample-rate <rate>` | `PORTCULLIS_DECISION_LOG_SAMPLE_RATE` | `0.01`: share of allows `sampled` records |
 * | `--decision-log-max-file-bytes <bytes>` | `PORTCULLIS_DECISION_LOG_MAX_FILE_BYTES` | `104857600` (100 MiB); `k`, `M`, `G` suffixes (powers of 1024) accepted |
 * | `--decision-log-max-files <count>` | `PORTCULLIS_DECISION_LOG_MAX_FILES` | `5` rotated files kept |
 * | `--decision-log-buffer <records>` | `PORTCULLIS_DECISION_LOG_BUFFER` | `10000` records queued at most; past it records are dropped |
 *
 * @example
 * portcullis serve --decision-log file:/var/log/portcullis/decisions.jsonl --decision-log-mode sampled --decision-log-sample-rate 0.05
 */
import { ConfigError } from "../config/config.js";
import { DEFAULT_CAPACITY, DEFAULT_SAMPLE_RATE, type DecisionLogMode } from "./decision-log.js";
import { DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_FILES } from "./decision-log-sink.js";

/** The decision log as configured; absent from the config when the log is off. */
export interface DecisionLogSettings {
  /** `stdout`, or a file path. */
  readonly sink: { readonly kind: "stdout" } | { readonly kind: "file"; readonly path: string };
  readonly mode: DecisionLogMode;
  readonly sampleRate: number;
  readonly maxFileBytes: number;
  readonly maxFiles: number;
  readonly capacity: number;
}

/** The flags of the decision log, as commander parses them. */
export interface DecisionLogFlags {
  readonly decisionLog?: string;
  readonly decisionLogMode?: string;
  readonly decisionLogSampleRate?: string;
  readonly decisionLogMaxFileBytes?: string;
  readonly decisionLogMaxFiles?: string;
  readonly decisionLogBuffer?: string;
}

const MODES: ReadonlySet<string> = new Set(["off", "denials", "sampled", "all"]);

/** Resolves the decision log settings; `{}` when the log is off. Throws {@link ConfigError} naming the flag and variable. */
export function resolveDecisionLogSettings(flags: DecisionLogFlags, env: NodeJS.ProcessEnv): { decisionLog?: DecisionLogSettings } {
  const sinkValue = flags.decisionLog ?? env.PORTCULLIS_DECISION_LOG;
  const named = sinkValue !== undefined && sinkValue.trim() !== "";
  // why: the contract's default is every denial on stdout; `off` must be asked for
  const mode = (flags.decisionLogMode ?? env.PORTCULLIS_DECISION_LOG_MODE ?? "denials").trim();
  if (!MODES.has(mode)) throw new ConfigError(`invalid --decision-log-mode (PORTCULLIS_DECISION_LOG_MODE) \`${mode}\`: expected off, denials, sampled or all`);
  const sink = parseSink(named ? sinkValue.trim() : "stdout");
  const sampleRate = number(flags.decisionLogSampleRate ?? env.PORTCULLIS_DECISION_LOG_SAMPLE_RATE, DEFAULT_SAMPLE_RATE, "--decision-log-sample-rate", "PORTCULLIS_DECISION_LOG_SAMPLE_RATE");
  if (!(sampleRate >= 0 && sampleRate <= 1)) throw new ConfigError(`invalid --decision-log-sample-rate (PORTCULLIS_DECISION_LOG_SAMPLE_RATE) \`${sampleRate}\`: expected a number from 0 to 1`);
  const maxFileBytes = size(flags.decisionLogMaxFileBytes ?? env.PORTCULLIS_DECISION_LOG_MAX_FILE_BYTES, DEFAULT_MAX_FILE_BYTES, "--decision-log-max-file-bytes", "PORTCULLIS_DECISION_LOG_MAX_FILE_BYTES");
  const maxFiles = wholeNumber(flags.decisionLogMaxFiles ?? env.PORTCULLIS_DECISION_LOG_MAX_FILES, DEFAULT_MAX_FILES, 0, "--decision-log-max-files", "PORTCULLIS_DECISION_LOG_MAX_FILES");
  const capacity = wholeNumber(flags.decisionLogBuffer ?? env.PORTCULLIS_DECISION_LOG_BUFFER, DEFAULT_CAPACITY, 1, "--decision-log-buffer", "PORTCULLIS_DECISION_LOG_BUFFER");
  if (mode === "off") return {};
  return { decisionLog: { sink, mode: mode as DecisionLogMode, sampleRate, maxFileBytes, maxFiles, capacity } };
}

function parseSink(value: string): DecisionLogSettings["sink"] {
  if (value === "stdout") return { kind: "stdout" };
  if (value.startsWith("file:") && value.length > "file:".length) return { kind: "file", path: value.slice("file:".length) };
  throw new ConfigError(`invalid --decision-log (PORTCULLIS_DECISION_LOG) \`${value}\`: expected stdout or file:PATH`);
}

function number(value: string | undefined, fallback: number, flag: string, envName: string): number {
  if (value === undefined || value.trim() === "") return fallback;
  const parsed = Number(value.trim());
  if (!Number.isFinite(parsed)) throw new ConfigError(`invalid ${flag} (${envName}) \`${value}\`: expected a number`);
  return parsed;
}

function wholeNumber(value: string | undefined, fallback: number, min: number, flag: string, envName: string): number {
  if (value === undefined || value.trim() === "") return fallback;
  if (!/^\d{1,9}$/.test(value.trim()) || Number(value.trim()) < min) throw new ConfigError(`invalid ${flag} (${envName}) \`${value}\`: expected a whole number of at least ${min}`);
  return Number(value.trim());
}

const UNITS: Readonly<Record<string, number>> = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

function size(value: string | undefined, fallback: number, flag: string, envName: string): number {
  if (value === undefined || value.trim() === "") return fallback;
  const match = /^(\d{1,12})\s*([kmg]?)(?:i?b)?$/i.exec(value.trim());
  const bytes = match === null ? NaN : Number(match[1]) * UNITS[match[2]!.toLowerCase()]!;
  if (!(bytes >= 1024)) throw new ConfigError(`invalid ${flag} (${envName}) \`${value}\`: expected a size of at least 1024 bytes, e.g. 100M`);
  return bytes;
}
