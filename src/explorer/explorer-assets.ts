/**
 * The explorer page's static assets. No framework and no third-party
 * scripts: the page builds its DOM with `textContent` only, so policy text
 * can never become markup, and the server's Content-Security-Policy allows
 * nothing but these same-origin files.
 */

/** The page's HTML shell. */
export const EXPLORER_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Portcullis policy explorer</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/policy/explorer.css">
<script src="/policy/explorer.js" defer></script>
</head>
<body>
<header><h1>Policy explorer</h1><p id="summary">loading…</p></header>
<main>
<section><h2>Try a request</h2>
<form id="try">
<div class="grid">
<label>Method <input name="method" value="GET"></label>
<label>Path <input name="path" value="/api/payouts"></label>
<label>Host <input name="host" placeholder="default: a host of the token's environment"></label>
<label>Source IP <input name="sourceIp" placeholder="e.g. 198.51.100.20"></label>
<label>Time <input name="at" placeholder="ISO 8601, default now"></label>
</div>
<label>Token (JSON facts) <textarea name="token" rows="3">{"role": "tenant_operator", "keyLevel": "read_write", "workspace": "main"}</textarea></label>
<button type="submit">Explain</button>
</form>
<div id="answer" aria-live="polite"></div>
</section>
<section><h2>Roles and key levels</h2><p class="hint">A coloured cell: a service token of that role and key level holds the scope.</p><div class="scroll"><table id="matrix"></table></div></section>
<section><h2>Controls</h2><table id="controls"></table></section>
<section><h2>Routes</h2><table id="routes"></table></section>
</main>
</body>
</html>
`;

/** The page's stylesheet. */
export const EXPLORER_CSS = `body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2430;background:#f7f8fa}
header{background:#1d2430;color:#fff;padding:12px 24px}header h1{margin:0;font-size:20px}header p{margin:4px 0 0;color:#c9d1dc}
main{padding:8px 24px 32px}section{background:#fff;border:1px solid #dde2e8;border-radius:6px;padding:8px 16px 16px;margin:16px 0}
h2{font-size:16px;margin:8px 0}table{border-collapse:collapse;font-size:12px}th,td{border:1px solid #e3e7ec;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f0f2f5}.scroll{overflow-x:auto}#matrix td.cell{width:14px;padding:0}#matrix td.allowed{background:#2f9e5b}
#matrix th.module{text-align:center}#matrix th.action{writing-mode:vertical-rl;font-weight:normal}.hint{color:#5a6573;margin:0 0 8px}
#controls td{white-space:pre-line}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:8px}label{display:block;margin:4px 0}
input,textarea{width:100%;box-sizing:border-box;font:12px ui-monospace,monospace;padding:4px}button{margin-top:8px;padding:6px 14px}
.code{font:bold 15px ui-monospace,monospace;margin:12px 0 4px}.ok{color:#2f9e5b}.denied{color:#b3261e}
.stage{font:12px ui-monospace,monospace;margin:2px 0}.stage .verdict{display:inline-block;width:64px;font-weight:bold}
.stage.pass .verdict{color:#2f9e5b}.stage.deny .verdict{color:#b3261e}.stage.skipped{color:#8a94a3}.why{margin-left:72px;color:#3c4654;font:12px ui-monospace,monospace}
`;

/** The page's script: fetches the model, renders it, and posts tried requests to `/policy/explain`. */
export const EXPLORER_JS = `"use strict";
function el(tag, text, cls) { const e = document.createElement(tag); if (text !== undefined) e.textContent = text; if (cls) e.className = cls; return e; }
function row(table, cells, header) { const tr = el("tr"); for (const c of cells) tr.append(typeof c === "string" ? el(header ? "th" : "td", c) : c); table.append(tr); return tr; }
function render(model) {
  document.getElementById("summary").textContent = "policy set " + model.name + ", revision " + model.revision.slice(0, 12) + " (read-only)";
  const matrix = document.getElementById("matrix");
  const top = row(matrix, ["role", "key level"], true);
  for (const m of model.modules) { const th = el("th", m.module, "module"); th.colSpan = m.actions.length; top.append(th); }
  const second = row(matrix, ["", ""], true);
  for (const m of model.modules) for (const a of m.actions) second.append(el("th", a, "action"));
  for (const r of model.matrix) {
    const level = r.keyLevel === null ? "none" : r.keyLevel;
    const tr = row(matrix, [r.role, level]);
    tr.dataset.role = r.role; tr.dataset.keyLevel = level;
    const held = new Set(r.allowed);
    for (const m of model.modules) for (const a of m.actions) {
      const scope = m.module + ":" + a;
      const td = el("td", undefined, held.has(scope) ? "cell allowed" : "cell");
      td.dataset.scope = scope; td.title = r.role + " / " + level + ": " + scope + (held.has(scope) ? " allowed" : " not allowed");
      tr.append(td);
    }
  }
  const controls = document.getElementById("controls");
  row(controls, ["id", "level", "selects", "sets"], true);
  for (const c of model.controls) row(controls, [c.id, c.level, Object.entries(c.selector).map(([k, v]) => k + "=" + v).join(", "), c.sets.join("\\n")]);
  const routes = document.getElementById("routes");
  row(routes, ["method", "path", "scope", "rule id"], true);
  for (const r of model.routes) row(routes, [r.method, r.path, r.scope, r.ruleId]);
}
async function tryRequest(event) {
  event.preventDefault();
  const form = event.target; const answer = document.getElementById("answer"); answer.replaceChildren();
  const value = (name) => form.elements[name].value.trim();
  let token = null;
  try { token = value("token") === "" ? null : JSON.parse(value("token")); } catch { answer.append(el("p", "the token is not valid JSON", "denied")); return; }
  const body = { request: { method: value("method"), path: value("path") }, token };
  if (value("host") !== "") body.request.host = value("host");
  if (value("sourceIp") !== "") body.request.sourceIp = value("sourceIp");
  if (value("at") !== "") body.at = value("at");
  const response = await fetch("/policy/explain", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  const json = await response.json();
  if (!response.ok) { answer.append(el("p", json.error, "denied")); return; }
  const d = json.decision;
  const code = el("p", d.code + " (" + d.httpStatus + ") - " + d.message, "code " + (d.allowed ? "ok" : "denied"));
  code.id = "decision-code"; code.dataset.code = d.code; answer.append(code);
  answer.append(el("p", "rule " + d.ruleId + " at " + json.at, "hint"));
  for (const s of json.stages) {
    const div = el("div", undefined, "stage " + s.verdict); div.append(el("span", s.verdict, "verdict"), el("span", s.stage + (s.code ? " -> " + s.code : "")));
    answer.append(div);
    for (const w of s.why) answer.append(el("div", w, "why"));
  }
}
document.addEventListener("DOMContentLoaded", async () => {
  document.getElementById("try").addEventListener("submit", tryRequest);
  const response = await fetch("/policy/model.json");
  render(await response.json());
  document.body.dataset.ready = "true";
});
`;
