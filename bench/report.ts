/**
 * The one table the bench prints, and the same as JSON under `bench/results/`.
 * Every row is a list of figures; a figure is a median over runs with its min
 * and max, and may carry the issue-6 budget it is judged against.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { Spread } from "./stats.js";

/** A limit from issue 6: the median must be at most (or at least) `limit`. */
export interface Budget {
  readonly limit: number;
  readonly atMost: boolean;
  /** How the budget reads in the issue, e.g. `≤ 3 µs`. */
  readonly text: string;
}

export interface Figure {
  readonly label: string;
  readonly unit: string;
  readonly value: Spread;
  readonly budget?: Budget;
}

export type RowStatus = "ok" | "pending" | "skipped" | "error";

export interface Row {
  readonly section: "in-process" | "loopback" | "mix";
  readonly name: string;
  readonly status: RowStatus;
  /** Why a row is pending, skipped or failed, or a caveat on its figures. */
  readonly note?: string;
  readonly figures: readonly Figure[];
}

/** Whether a figure meets its budget; `null` when it has none or measured nothing. */
export function budgetMet(figure: Figure): boolean | null {
  if (figure.budget === undefined || !Number.isFinite(figure.value.median)) return null;
  return figure.budget.atMost ? figure.value.median <= figure.budget.limit : figure.value.median >= figure.budget.limit;
}

function format(value: number): string {
  if (!Number.isFinite(value)) return "–";
  const abs = Math.abs(value);
  if (abs >= 1000) return Math.round(value).toLocaleString("en-US");
  if (abs >= 100) return value.toFixed(0);
  if (abs >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

/** The table as GitHub markdown, one line per figure; rows without figures get one line with their note. */
export function renderTable(rows: readonly Row[]): string {
  const lines = [
    "| section | row | figure | median | min – max | runs | budget | met |",
    "| --- | --- | --- | ---: | ---: | ---: | --- | --- |",
  ];
  for (const row of rows) {
    const name = row.note === undefined ? row.name : `${row.name} ¹`;
    if (row.figures.length === 0) {
      lines.push(`| ${row.section} | ${name} | ${row.status}: ${row.note ?? ""} | | | | | |`);
      continue;
    }
    row.figures.forEach((figure, i) => {
      const met = budgetMet(figure);
      lines.push(
        [
          "",
          i === 0 ? row.section : "",
          i === 0 ? name : "",
          `${figure.label}${figure.unit === "" ? "" : ` (${figure.unit})`}`,
          format(figure.value.median),
          figure.value.runs > 1 ? `${format(figure.value.min)} – ${format(figure.value.max)}` : "",
          String(figure.value.runs),
          figure.budget?.text ?? "",
          met === null ? "" : met ? "met" : "**not met**",
          "",
        ].join(" | ").trim(),
      );
    });
  }
  const notes = rows.filter((row) => row.note !== undefined && row.figures.length > 0);
  if (notes.length > 0) {
    lines.push("", "¹ notes:");
    for (const row of notes) lines.push(`- ${row.name}: ${row.note}`);
  }
  return lines.join("\n");
}

/** Writes `results/<timestamp>.json` under `resultsDir` and returns its path. */
export function writeResults(resultsDir: string, meta: Record<string, unknown>, rows: readonly Row[]): string {
  mkdirSync(resultsDir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  const file = path.join(resultsDir, `${stamp}.json`);
  const json = rows.map((row) => ({ ...row, figures: row.figures.map((figure) => ({ ...figure, met: budgetMet(figure) })) }));
  writeFileSync(file, `${JSON.stringify({ ...meta, rows: json }, null, 2)}\n`);
  return file;
}
