/**
 * The operator dashboard, in the browser: sign in with an operator token (the gateway answers
 * with an HttpOnly session cookie), then show the operator's agents, earnings by day and model
 * as an SVG chart, and receipts with a CSV export. Its only imports are types (the operator API's
 * shapes, from src/shared), erased when it is compiled, so the gateway serves it as one module;
 * DOM only, no inline code (the page's CSP forbids it).
 */
import type {
  OperatorAgentView,
  OperatorAgentsResponse,
  OperatorEarningsResponse,
  OperatorMeResponse,
  OperatorReceiptView,
  OperatorReceiptsResponse,
} from '../../../shared/index.js';

class SignedOut extends Error {}

const $ = <T extends HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`missing #${id}`);
  return el as T;
};

/** Micro-credits (a decimal string) as credits with up to six decimals. */
export function credits(micro: string): string {
  const neg = micro.startsWith('-');
  const digits = (neg ? micro.slice(1) : micro).padStart(7, '0');
  const whole = digits.slice(0, -6).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  const frac = digits.slice(-6).replace(/0+$/, '');
  return `${neg ? '-' : ''}${whole}${frac ? '.' + frac : ''}`;
}

function duration(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${s % 60}s`;
  const h = Math.floor(m / 60);
  return h < 48 ? `${h}h ${m % 60}m` : `${Math.floor(h / 24)}d ${h % 24}h`;
}

function ago(at: number): string {
  const ms = Date.now() - at;
  return ms < 5000 ? 'just now' : `${duration(ms)} ago`;
}

async function api<T>(path: string, init?: RequestInit): Promise<T> {
  const res = await fetch(path, { credentials: 'same-origin', ...init, headers: { accept: 'application/json', ...(init?.headers ?? {}) } });
  if (res.status === 401) throw new SignedOut();
  const body = (await res.json()) as T & { error?: { code: string; message: string } };
  if (!res.ok) throw new Error(body.error ? `${body.error.code}: ${body.error.message}` : `HTTP ${res.status}`);
  return body;
}

function cell(text: string, className?: string): HTMLTableCellElement {
  const td = document.createElement('td');
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function pill(text: string, kind: string): HTMLTableCellElement {
  const td = document.createElement('td');
  const span = document.createElement('span');
  span.className = `pill ${kind}`;
  span.textContent = text;
  td.append(span);
  return td;
}

/** The gateway's measured decode speed, with the agent's claim in brackets. */
function speed(a: OperatorAgentView): string {
  const measured = a.measuredTokensPerSecond ? a.measuredTokensPerSecond.toFixed(1) : '–';
  return a.tokensPerSecond ? `${measured} (${a.tokensPerSecond.toFixed(1)})` : measured;
}

/** The honesty score and each strike's reason (its numbers in the tooltip). */
function standing(a: OperatorAgentView): HTMLTableCellElement {
  if (a.strikes.length === 0) return cell(a.score.toFixed(2));
  const counts = new Map<string, number>();
  for (const s of a.strikes) counts.set(s.reason, (counts.get(s.reason) ?? 0) + 1);
  const reasons = [...counts].map(([r, n]) => (n === 1 ? r : `${r} ×${n}`)).join(', ');
  const td = cell(`${a.score.toFixed(2)} · ${reasons}`);
  td.title = a.strikes
    .map(
      (s) =>
        `${new Date(s.at).toISOString()} ${s.reason}${s.jobId ? ` (job ${s.jobId})` : ''}: ` +
        Object.entries(s.details)
          .map(([k, v]) => `${k}=${v}`)
          .join(' '),
    )
    .join('\n');
  return td;
}

/** Audits passed and failed, the last failures' reasons beside them (their figures in the tooltip). */
function audits(a: OperatorAgentView): HTMLTableCellElement {
  const { passed, failed, lastFailures } = a.audits;
  if (passed + failed === 0) return cell('–');
  const reasons = [...new Set(lastFailures.flatMap((f) => f.reasons))].join(', ');
  const td = cell(`${passed} passed · ${failed} failed${reasons ? ` · ${reasons}` : ''}`);
  td.title = lastFailures
    .map(
      (f) =>
        `${new Date(f.at).toISOString()} job ${f.jobId}: ${f.reasons.join(', ')} ` +
        Object.entries(f.figures)
          .map(([k, v]) => `${k}=${v}`)
          .join(' '),
    )
    .join('\n');
  return td;
}

function renderAgents(agents: OperatorAgentView[]): void {
  const body = $('agents').querySelector('tbody')!;
  body.replaceChildren(
    ...agents.map((a) => {
      const tr = document.createElement('tr');
      tr.dataset.agentId = a.agentId;
      const state = a.connected && a.state === 'serving' && !a.routable ? 'unroutable' : a.state;
      const why =
        a.challengeFresh === false
          ? 'missed challenge'
          : a.catalogued === false
            ? 'file not in catalog'
            : a.strikes.length > 0
              ? 'score too low (strikes)'
              : 'not routable';
      const label = state === 'unroutable' ? why : a.state;
      tr.append(
        cell(a.agentId.slice(0, 12), 'mono'),
        pill(label, state),
        cell(a.trust ?? '–'),
        cell(a.model === null ? '–' : a.catalogued === false ? `${a.model} (not in catalog)` : a.model),
        cell(speed(a), 'num'),
        standing(a),
        audits(a),
        cell(a.slots === null ? '–' : `${a.freeSlots ?? 0} / ${a.slots}`, 'num'),
        cell(a.jobsDone === null ? '–' : String(a.jobsDone), 'num'),
        cell(a.uptimeMs === null ? '–' : duration(a.uptimeMs)),
        cell(a.connected ? 'now' : ago(a.lastSeenAt)),
      );
      return tr;
    }),
  );
  $('agents-empty').hidden = agents.length > 0;
  $('online').textContent = String(agents.filter((a) => a.connected).length);
  $('online-of').textContent = `of ${agents.length} bound`;
}

const COLORS = ['#7aa2ff', '#52c48a', '#e3b341', '#c678dd', '#ef6b6b', '#56b6c2', '#d19a66', '#98c379'];
const SVG = 'http://www.w3.org/2000/svg';

function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number>): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

/** The smallest 1, 2 or 5 × 10^k at or above `v` (1 credit for an empty chart). */
function niceCeiling(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  return ([1, 2, 5, 10].find((m) => m * p >= v * (1 - 1e-9)) ?? 10) * p;
}

/** An axis value in credits, without float noise or exponents. */
function axisLabel(v: number): string {
  return v === 0
    ? '0'
    : v
        .toFixed(Math.min(6, Math.max(0, 1 - Math.floor(Math.log10(v)))))
        .replace(/(\.\d*?)0+$/, '$1')
        .replace(/\.$/, '');
}

function renderChart(e: OperatorEarningsResponse): void {
  const W = 760;
  const H = 240;
  const left = 64;
  const bottom = 28;
  const top = 12;
  const plotH = H - top - bottom;
  const byDay = new Map<string, Map<string, number>>();
  for (const r of e.rows) {
    const m = byDay.get(r.day) ?? new Map<string, number>();
    m.set(r.model, (m.get(r.model) ?? 0) + Number(r.earned) / 1e6);
    byDay.set(r.day, m);
  }
  const totals = e.days.map((d) => [...(byDay.get(d)?.values() ?? [])].reduce((s, v) => s + v, 0));
  const max = niceCeiling(Math.max(...totals, 0));
  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'Earnings by day and model' });
  for (const f of [0, 0.5, 1]) {
    const y = top + plotH * (1 - f);
    root.append(svg('line', { x1: left, x2: W - 8, y1: y, y2: y, stroke: '#262b45' }));
    const label = svg('text', { x: left - 8, y: y + 4, 'text-anchor': 'end', class: 'axis' });
    label.textContent = axisLabel(max * f);
    root.append(label);
  }
  const step = (W - 8 - left) / e.days.length;
  e.days.forEach((day, i) => {
    let y = top + plotH;
    e.models.forEach((model, mi) => {
      const v = byDay.get(day)?.get(model) ?? 0;
      if (v <= 0) return;
      const h = Math.max(1, (v / max) * plotH);
      y -= h;
      const rect = svg('rect', {
        x: left + i * step + step * 0.15,
        y,
        width: step * 0.7,
        height: h,
        fill: COLORS[mi % COLORS.length]!,
        rx: 2,
        'data-day': day,
        'data-model': model,
      });
      const title = svg('title', {});
      title.textContent = `${day} · ${model}: ${v.toFixed(6)} credits`;
      rect.append(title);
      root.append(rect);
    });
    const every = Math.ceil(e.days.length / 7);
    if ((e.days.length - 1 - i) % every === 0) {
      const label = svg('text', { x: left + i * step + step / 2, y: H - 8, 'text-anchor': 'middle', class: 'axis' });
      label.textContent = day.slice(5);
      root.append(label);
    }
  });
  const legend = document.createElement('div');
  legend.className = 'legend';
  for (const [mi, model] of e.models.entries()) {
    const item = document.createElement('span');
    const sw = document.createElement('span');
    sw.className = 'swatch';
    sw.style.background = COLORS[mi % COLORS.length]!;
    item.append(sw, model);
    legend.append(item);
  }
  if (e.models.length === 0) legend.textContent = 'No earnings in this period yet.';
  $('chart').replaceChildren(root, legend);
  $('earned').textContent = credits(e.total);
}

function renderReceipts(receipts: OperatorReceiptView[]): void {
  $('receipts')
    .querySelector('tbody')!
    .replaceChildren(
      ...receipts.map((r) => {
        const tr = document.createElement('tr');
        tr.append(
          cell(r.endedAt === null ? '–' : new Date(r.endedAt).toLocaleString()),
          cell(r.jobId.slice(0, 10), 'mono'),
          cell((r.agentId ?? '–').slice(0, 12), 'mono'),
          cell(r.model),
          cell(String(r.promptTokens ?? 0), 'num'),
          cell(String(r.completionTokens ?? 0), 'num'),
          cell(r.outcome === 'cancelled' ? 'cancelled' : (r.finishReason ?? '–')),
          cell(credits(r.earned), 'num'),
        );
        return tr;
      }),
    );
  $('receipts-empty').hidden = receipts.length > 0;
}

let timer: number | undefined;

function show(signedIn: boolean): void {
  $('sign-in').hidden = signedIn;
  $('dashboard').hidden = !signedIn;
  $('who').hidden = !signedIn;
  if (!signedIn && timer !== undefined) {
    clearInterval(timer);
    timer = undefined;
  }
}

async function refresh(): Promise<void> {
  try {
    const [me, agents, earnings, receipts] = await Promise.all([
      api<OperatorMeResponse>('/v1/operator/me'),
      api<OperatorAgentsResponse>('/v1/operator/agents'),
      api<OperatorEarningsResponse>('/v1/operator/earnings?days=14'),
      api<OperatorReceiptsResponse>('/v1/operator/receipts?limit=50'),
    ]);
    $('operator-name').textContent = me.operator.name;
    $('balance').textContent = credits(me.balance);
    $('payable').textContent = credits(me.payable);
    $('pending').textContent = credits(me.pending);
    renderAgents(agents.agents);
    renderChart(earnings);
    renderReceipts(receipts.receipts);
    $('updated').textContent = `Updated ${new Date().toLocaleTimeString()}; refreshes every 5 seconds.`;
    show(true);
    document.body.dataset.ready = 'true';
    timer ??= window.setInterval(() => void refresh(), 5000);
  } catch (err) {
    if (err instanceof SignedOut) show(false);
    else $('updated').textContent = `Could not refresh: ${(err as Error).message}`;
  }
}

function start(): void {
  $<HTMLFormElement>('sign-in-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const input = $<HTMLInputElement>('token');
    const error = $('sign-in-error');
    error.hidden = true;
    api('/v1/operator/session', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token: input.value }),
    })
      .then(() => {
        input.value = '';
        return refresh();
      })
      .catch((err: unknown) => {
        error.textContent = err instanceof SignedOut ? 'That operator token is not valid.' : (err as Error).message;
        error.hidden = false;
      });
  });
  $('sign-out').addEventListener('click', () => {
    void fetch('/v1/operator/session', { method: 'DELETE', credentials: 'same-origin' }).finally(() => show(false));
  });
  void refresh();
}

if (typeof document !== 'undefined') {
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
}
