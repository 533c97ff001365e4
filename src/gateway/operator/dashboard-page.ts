/**
 * The operator dashboard's page, style sheet and script, written to a folder that the one
 * static-pages plugin serves under the one page policy (PAGE_CSP). The page loads one script
 * (web/dashboard/app.ts) from this origin; there is no inline script or style, as the policy
 * demands. The script is the compiled copy next to this module (dist) or, running from source,
 * the TypeScript transpiled once per process with esbuild (a development dependency).
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';

// A cache of a pure function of the source files, not state: every gateway in the process
// serves the same script.
let script: Promise<string> | null = null;

/** The dashboard's script as the browser runs it. */
export function dashboardScript(): Promise<string> {
  script ??= loadScript().catch((err: unknown) => {
    script = null;
    throw err;
  });
  return script;
}

async function loadScript(): Promise<string> {
  try {
    return await readFile(new URL('../web/dashboard/app.js', import.meta.url), 'utf8');
  } catch {
    const source = await readFile(new URL('../web/dashboard/app.ts', import.meta.url), 'utf8');
    const esbuild = await import('esbuild');
    return (await esbuild.transform(source, { loader: 'ts', format: 'esm', target: 'es2022' })).code;
  }
}

/** Writes index.html, app.css and app.js of the dashboard into `dir` (which must exist). */
export async function writeDashboardPage(dir: string): Promise<void> {
  await Promise.all([
    writeFile(path.join(dir, 'index.html'), DASHBOARD_HTML),
    writeFile(path.join(dir, 'app.css'), DASHBOARD_CSS),
    writeFile(path.join(dir, 'app.js'), await dashboardScript()),
  ]);
}

// In the templates below, a backslash that ends a line continues it: the text has no line break there.
/** /dashboard/ */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Nightjar · operator dashboard</title>
<link rel="stylesheet" href="/dashboard/app.css">
<script type="module" src="/dashboard/app.js"></script>
</head>
<body>
<header>
  <div class="brand"><span class="mark">◐</span> Nightjar <span class="sub">operator dashboard</span></div>
  <div id="who" hidden><span id="operator-name"></span><button id="sign-out" type="button">Sign out</button></div>
</header>
<main>
  <section id="sign-in" hidden>
    <h1>Sign in</h1>
    <p>Paste the operator token that <code>nightjar gateway operators create</code> printed.</p>
    <form id="sign-in-form" autocomplete="off">
      <label for="token">Operator token</label>
      <input id="token" name="token" type="password" spellcheck="false" required placeholder="njop_…">
      <button type="submit">Sign in</button>
    </form>
    <p id="sign-in-error" class="error" role="alert" hidden></p>
  </section>
  <section id="dashboard" hidden>
    <div class="cards">
      <div class="card"><div class="label">Balance</div><div id="balance" class="value">–</div>\
<div class="unit">credits: <span id="payable">–</span> payable, <span id="pending">–</span> pending</div></div>
      <div class="card"><div class="label">Earned, last 14 days</div>\
<div id="earned" class="value">–</div><div class="unit">credits</div></div>
      <div class="card"><div class="label">Agents online</div>\
<div id="online" class="value">–</div><div class="unit" id="online-of"></div></div>
    </div>
    <h2>Agents</h2>
    <table id="agents">
      <thead><tr><th>Agent</th><th>State</th><th>Trust</th><th>Model</th>\
<th class="num">Tokens/s measured (claimed)</th><th>Score · strikes</th><th>Audits</th>\
<th class="num">Slots free</th><th class="num">Jobs</th><th>Uptime</th><th>Last seen</th></tr></thead>
      <tbody></tbody>
    </table>
    <p id="agents-empty" class="empty" hidden>No agent is bound to you yet. \
Issue an enrollment token with <code>nightjar gateway enroll</code> and start an agent with it.</p>
    <h2>Earnings by day <span class="sub">(last 14 days, by model)</span></h2>
    <div id="chart" class="chart"></div>
    <div class="section-head">
      <h2>Receipts</h2>
      <a id="export" class="button" href="/v1/operator/receipts.csv?days=90" download>Export CSV</a>
    </div>
    <table id="receipts">
      <thead><tr><th>Ended</th><th>Job</th><th>Agent</th><th>Model</th>\
<th class="num">Prompt</th><th class="num">Completion</th><th>Finish</th><th class="num">Earned</th></tr></thead>
      <tbody></tbody>
    </table>
    <p id="receipts-empty" class="empty" hidden>No settled jobs yet.</p>
    <p class="footnote" id="updated"></p>
  </section>
</main>
</body>
</html>
`;

/** /dashboard/app.css */
export const DASHBOARD_CSS = `:root { --bg: #0f1220; --panel: #171b2e; --line: #262b45; --text: #e6e8f2; \
--dim: #8b90ab; --accent: #7aa2ff; --ok: #52c48a; --warn: #e3b341; --bad: #ef6b6b; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--text); font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; }
header { display: flex; justify-content: space-between; align-items: center; \
padding: 14px 28px; border-bottom: 1px solid var(--line); background: var(--panel); }
.brand { font-weight: 600; font-size: 16px; } .mark { color: var(--accent); } .sub { color: var(--dim); font-weight: 400; font-size: 13px; }
#who { display: flex; gap: 12px; align-items: center; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 22px; } h2 { font-size: 16px; margin: 28px 0 10px; }
button, .button { background: var(--accent); color: #0b0e1a; border: 0; border-radius: 6px; \
padding: 7px 14px; font: inherit; font-weight: 600; cursor: pointer; text-decoration: none; }
#sign-out { background: transparent; color: var(--dim); border: 1px solid var(--line); }
form { display: flex; gap: 10px; align-items: center; flex-wrap: wrap; }
input { background: var(--bg); color: var(--text); border: 1px solid var(--line); border-radius: 6px; \
padding: 8px 10px; width: 420px; max-width: 100%; font: 13px ui-monospace, monospace; }
code { font: 12px ui-monospace, monospace; background: var(--panel); padding: 1px 5px; border-radius: 4px; }
.error { color: var(--bad); }
.cards { display: grid; grid-template-columns: repeat(3, 1fr); gap: 14px; }
.card { background: var(--panel); border: 1px solid var(--line); border-radius: 10px; padding: 14px 16px; }
.card .label { color: var(--dim); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.card .value { font-size: 26px; font-weight: 600; margin-top: 4px; font-variant-numeric: tabular-nums; }
.card .unit { color: var(--dim); font-size: 12px; }
table { width: 100%; border-collapse: collapse; background: var(--panel); \
border: 1px solid var(--line); border-radius: 10px; overflow: hidden; }
th, td { text-align: left; padding: 8px 10px; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { color: var(--dim); font-weight: 500; font-size: 12px; } td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.mono { font: 12px ui-monospace, monospace; }
.pill { display: inline-block; padding: 1px 8px; border-radius: 999px; font-size: 12px; border: 1px solid currentColor; }
.pill.serving { color: var(--ok); } .pill.draining, .pill.loading, .pill.waiting, .pill.paused { color: var(--warn); } \
.pill.offline, .pill.error, .pill.stopped, .pill.unroutable { color: var(--bad); }
.chart { background: var(--panel); border: 1px solid var(--line); border-radius: 10px; padding: 12px; }
.chart svg { display: block; width: 100%; height: auto; }
.chart .axis { fill: var(--dim); font-size: 11px; }
.legend { display: flex; gap: 16px; flex-wrap: wrap; margin-top: 8px; color: var(--dim); font-size: 12px; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 6px; vertical-align: -1px; }
.section-head { display: flex; justify-content: space-between; align-items: baseline; }
.empty, .footnote { color: var(--dim); }
`;
