/**
 * Status: the state and why, the owner's controls (pause, resume, serve now), the model, live
 * tokens per second, jobs, the gateway link and the machine's readings.
 */
import {
  STATE_LABELS,
  earningsPeriods,
  formatCredits,
  formatDuration,
  formatTokens,
  type AgentStatusSnapshot,
} from '../../shared/index.js';
import type { AppContext, Screen } from '../app.js';
import { actionButton, h, replaceChildren } from '../dom.js';
import { badge, facts, section, setField, sparkline } from './common.js';

/** The cards below the state: serving figures, the gateway, this Mac. */
function statusCards(rate: HTMLElement): HTMLElement {
  return h(
    'div',
    { class: 'grid' },
    section(
      'Serving',
      {},
      rate,
      facts([
        ['Model', 'model', ''],
        ['Jobs running', 'active-jobs', ''],
        ['Jobs served', 'jobs-served', ''],
        ['Slots free', 'slots', ''],
        ['Time to first token', 'ttft', ''],
        ['Earned today', 'today', ''],
      ]),
    ),
    section(
      'Gateway',
      {},
      facts([
        ['Link', 'link', ''],
        ['Gateway', 'gateway-url', ''],
        ['Operator', 'operator', ''],
        ['Trust', 'trust', ''],
      ]),
    ),
    section(
      'This Mac',
      {},
      facts([
        ['Idle for', 'idle', ''],
        ['Screen', 'screen', ''],
        ['Power', 'power', ''],
        ['Heat', 'thermal', ''],
        ['Memory pressure', 'memory-pressure', ''],
      ]),
    ),
  );
}

/** Fills the serving card: the rate and its sparkline, the model, the jobs, today's earnings. */
function showServing(root: HTMLElement, rate: HTMLElement, s: AgentStatusSnapshot, ctx: AppContext): void {
  replaceChildren(
    rate,
    h(
      'p',
      { class: 'big' },
      h('span', { 'data-field': 'tokens-per-second' }, s.tokensPerSecond.toFixed(1)),
      h('span', { class: 'unit' }, ' tokens/s'),
    ),
    sparkline(ctx.state.tokensPerSecond, 'Tokens per second, last two minutes'),
  );
  setField(
    root,
    'model',
    s.model ? `${s.model.id}${s.model.loaded ? '' : ' (not loaded)'}${s.model.synthetic ? ' · synthetic' : ''}` : 'None selected',
  );
  setField(root, 'active-jobs', String(s.activeJobs));
  setField(root, 'jobs-served', String(s.jobsServed));
  setField(root, 'slots', `${s.freeSlots} of ${s.totalSlots}`);
  setField(root, 'ttft', s.ttftMs > 0 ? `${Math.round(s.ttftMs)} ms` : '—');
  const e = ctx.state.earnings;
  const today = e ? earningsPeriods(e, Date.now()).today : null;
  setField(
    root,
    'today',
    today
      ? today.microCredits === null
        ? `${formatTokens(today.completionTokens)} tokens`
        : `${formatCredits(today.microCredits)} credits`
      : '—',
  );
}

/** Fills the gateway card and this Mac's readings. */
function showLinkAndMachine(root: HTMLElement, s: AgentStatusSnapshot): void {
  setField(root, 'link', s.link);
  setField(root, 'gateway-url', s.gatewayUrl ?? 'Not linked');
  setField(root, 'operator', s.gateway.operator ?? (s.gateway.rejected ? 'Refused' : '—'));
  const trust = root.querySelector('[data-field="trust"]')!;
  const trustText = s.gateway.trust ?? '—';
  if (trust.textContent !== trustText) replaceChildren(trust, s.gateway.trust ? badge(s.gateway.trust, 'ok') : '—');

  const r = s.environment;
  setField(root, 'idle', r?.idleSeconds == null ? 'unknown' : formatDuration(r.idleSeconds * 1000));
  setField(root, 'screen', r?.screenLocked == null ? 'unknown' : r.screenLocked ? 'locked' : 'unlocked');
  setField(
    root,
    'power',
    r?.onAc == null
      ? 'unknown'
      : r.onAc
        ? 'on AC power'
        : `on battery${r.batteryPercent == null ? '' : ` (${Math.round(r.batteryPercent)} %)`}`,
  );
  setField(root, 'thermal', r?.thermal ?? 'unknown');
  setField(root, 'memory-pressure', r?.memoryPressure ?? 'unknown');
}

/** The Status screen. */
export function statusScreen(ctx: AppContext): Screen {
  let root: HTMLElement;
  const headline = h('p', { class: 'headline', 'data-field': 'state' });
  const reason = h('p', { class: 'reason', 'data-field': 'reason' });
  const hint = h('p', { class: 'hint', 'data-field': 'hint' });
  const controls = h('div', { class: 'controls', role: 'group', 'aria-label': 'Serving' });
  const rate = h('div', { class: 'rate' });
  let controlsKey = '';

  const then = (call: () => Promise<unknown>) => () => call().then(() => ctx.refresh('status'));
  const pause = actionButton(
    'Pause',
    { id: 'pause' },
    then(() => ctx.bridge.pause({})),
    ctx.report,
  );
  const resume = actionButton(
    'Resume',
    { id: 'resume', class: 'primary' },
    then(() => ctx.bridge.resume({})),
    ctx.report,
  );
  const serveNow = actionButton(
    'Serve now',
    { id: 'serve-now' },
    then(() => ctx.bridge.serveNow({})),
    ctx.report,
  );
  const backToSchedule = actionButton(
    'Back to schedule',
    { id: 'back-to-schedule' },
    then(() => ctx.bridge.resume({})),
    ctx.report,
  );

  return {
    title: 'Status',
    mount(el) {
      root = el;
      el.append(
        h('h1', {}, 'Status'),
        h(
          'section',
          { class: 'card hero', 'aria-labelledby': 'state-heading' },
          h('h2', { id: 'state-heading', class: 'visually-hidden' }, 'State'),
          headline,
          reason,
          hint,
          controls,
        ),
        statusCards(rate),
      );
    },
    update() {
      const s = ctx.state.status;
      if (!s) return;
      headline.dataset.state = s.state;
      setField(
        root,
        'state',
        STATE_LABELS[s.state] +
          (s.manual.mode !== 'auto' && s.manual.until ? ` until ${new Date(s.manual.until).toLocaleTimeString()}` : ''),
      );
      setField(root, 'reason', s.reason?.message ?? (s.state === 'serving' ? 'Taking jobs from the gateway.' : ''));
      setField(root, 'hint', s.reason?.hint ?? '');
      hint.hidden = !s.reason?.hint;

      const key = `${s.manual.mode}`;
      if (key !== controlsKey) {
        controlsKey = key;
        replaceChildren(
          controls,
          ...(s.manual.mode === 'auto' ? [pause, serveNow] : s.manual.mode === 'paused' ? [resume, serveNow] : [pause, backToSchedule]),
        );
      }
      showServing(root, rate, s, ctx);
      showLinkAndMachine(root, s);
    },
  };
}
