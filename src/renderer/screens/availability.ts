/**
 * Availability: when this Mac may serve — idle threshold, locked screen, AC only, battery floor,
 * thermal limit, the schedule (overnight windows allowed) and its time zone, and what happens
 * when the owner comes back (grace for running jobs, delay before the model is unloaded).
 */
import { WEEKDAYS, type Policy, type PolicyPatch, type Weekday } from '../../shared/index.js';
import type { AppContext, Screen } from '../app.js';
import { h, replaceChildren, uid } from '../dom.js';
import { DAY_LABELS, checkSchedule, describeWindow, isOvernight, type WindowDraft } from '../model/schedule.js';

function field(label: string, input: HTMLElement, help?: string): HTMLElement {
  const id = input.id || uid('f');
  input.id = id;
  if (help) input.setAttribute('aria-describedby', `${id}-help`);
  return h(
    'div',
    { class: 'field' },
    h('label', { for: id }, label),
    input,
    help ? h('small', { id: `${id}-help`, class: 'muted' }, help) : null,
  );
}

function checkbox(id: string, label: string, checked: boolean, help?: string): { row: HTMLElement; input: HTMLInputElement } {
  const input = h('input', { id, type: 'checkbox', checked, ...(help ? { 'aria-describedby': `${id}-help` } : {}) });
  return {
    input,
    row: h(
      'div',
      { class: 'field check' },
      input,
      h('label', { for: id }, label),
      help ? h('small', { id: `${id}-help`, class: 'muted' }, help) : null,
    ),
  };
}

function numberInput(id: string, value: number, min: number, max: number, step: number | 'any' = 1): HTMLInputElement {
  return h('input', { id, type: 'number', inputmode: 'decimal', min, max, step, value: String(value), required: true });
}

/** A schedule window being edited, as a fieldset; `onRemove` takes it out. */
function windowRow(d: WindowDraft, index: number, onRemove: () => void): HTMLElement {
  const describe = h(
    'p',
    { class: 'muted', 'data-field': 'window-text' },
    d.days.length ? describeWindow(d) : 'Pick the days it starts on.',
  );
  const refresh = (): void => {
    describe.textContent = d.days.length ? describeWindow(d) : 'Pick the days it starts on.';
    row.dataset.overnight = String(isOvernight(d));
  };
  const days = h('div', { class: 'days', role: 'group', 'aria-label': 'Days it starts on' });
  for (const day of WEEKDAYS) {
    const id = uid(`day-${day}`);
    const box = h('input', { id, type: 'checkbox', checked: d.days.includes(day), 'data-day': day });
    box.addEventListener('change', () => {
      d.days = box.checked ? [...d.days, day] : d.days.filter((x) => x !== day);
      refresh();
    });
    days.append(h('span', { class: 'day' }, box, h('label', { for: id }, DAY_LABELS[day])));
  }
  const start = h('input', { type: 'time', value: d.start, required: true, 'data-field': 'start' });
  const end = h('input', { type: 'time', value: d.end, required: true, 'data-field': 'end' });
  start.addEventListener('input', () => {
    d.start = start.value;
    refresh();
  });
  end.addEventListener('input', () => {
    d.end = end.value;
    refresh();
  });
  const remove = h('button', { type: 'button', class: 'danger', 'data-action': 'remove-window' }, 'Remove');
  remove.addEventListener('click', onRemove);
  const row = h(
    'fieldset',
    { class: 'window', 'data-index': index, 'data-overnight': String(isOvernight(d)) },
    h('legend', {}, `Window ${index + 1}`),
    days,
    h('div', { class: 'times' }, field('From', start), field('To', end)),
    describe,
    remove,
  );
  return row;
}

/** The inputs of the availability form, filled from `policy`. */
interface PolicyInputs {
  idle: HTMLInputElement;
  locked: { row: HTMLElement; input: HTMLInputElement };
  ac: { row: HTMLElement; input: HTMLInputElement };
  battery: HTMLInputElement;
  thermal: HTMLSelectElement;
  zones: HTMLDataListElement;
  zone: HTMLInputElement;
  grace: HTMLInputElement;
  unload: HTMLInputElement;
}

function policyInputs(policy: Policy): PolicyInputs {
  const idle = numberInput('idle-minutes', policy.idleSeconds / 60, 0, 1440, 'any');
  const locked = checkbox('locked-idle', 'A locked screen counts as away at once', policy.lockedCountsAsIdle);
  const ac = checkbox('require-ac', 'Serve on AC power only', policy.requireAc, 'On a laptop, serving drains the battery quickly.');
  const battery = numberInput('min-battery', policy.minBatteryPercent, 0, 100);
  battery.disabled = policy.requireAc;
  ac.input.addEventListener('change', () => (battery.disabled = ac.input.checked));
  const thermal = h(
    'select',
    { id: 'max-thermal' },
    h('option', { value: 'nominal', selected: policy.maxThermal === 'nominal' }, 'Only when cool (nominal)'),
    h('option', { value: 'fair', selected: policy.maxThermal === 'fair' }, 'Up to warm (fair)'),
    h('option', { value: 'serious', selected: policy.maxThermal === 'serious' }, 'Up to hot (serious)'),
  );
  const zones = h('datalist', { id: 'time-zones' });
  const supported = (Intl as { supportedValuesOf?: (key: string) => string[] }).supportedValuesOf?.('timeZone') ?? [];
  for (const z of supported) zones.append(h('option', { value: z }));
  const zone = h('input', {
    id: 'time-zone',
    type: 'text',
    list: 'time-zones',
    value: policy.timeZone ?? '',
    placeholder: `System (${Intl.DateTimeFormat().resolvedOptions().timeZone})`,
    autocomplete: 'off',
    spellcheck: 'false',
  });
  const grace = numberInput('grace-seconds', policy.graceMs / 1000, 0, 600, 'any');
  const unload = numberInput('unload-minutes', policy.unloadDelayMs / 60_000, 0, 1440, 'any');
  return { idle, locked, ac, battery, thermal, zones, zone, grace, unload };
}

/** The form's sections around its inputs, the schedule's windows and its buttons. */
function policyForm(i: PolicyInputs, windows: HTMLElement, add: HTMLElement, problems: HTMLElement, save: HTMLElement): HTMLFormElement {
  return h(
    'form',
    { id: 'policy-form', class: 'form', novalidate: true },
    h(
      'section',
      { class: 'card', 'aria-labelledby': 'when-away-h' },
      h('h2', { id: 'when-away-h' }, 'When you are away'),
      field('Minutes without keyboard or mouse before you count as away', i.idle),
      i.locked.row,
    ),
    h(
      'section',
      { class: 'card', 'aria-labelledby': 'power-h' },
      h('h2', { id: 'power-h' }, 'Power and heat'),
      i.ac.row,
      field('On battery, serve only above this charge (%)', i.battery),
      field('Hottest state to serve in', i.thermal, 'When the Mac gets hotter, running jobs finish and no new ones start.'),
    ),
    h(
      'section',
      { class: 'card', 'aria-labelledby': 'schedule-h' },
      h('h2', { id: 'schedule-h' }, 'Schedule'),
      h(
        'p',
        { class: 'muted' },
        'Serve only inside these windows. A window that ends before it starts runs overnight into the next day (22:00 → 07:00).',
      ),
      windows,
      add,
      i.zones,
      field('Time zone of the schedule', i.zone),
    ),
    h(
      'section',
      { class: 'card', 'aria-labelledby': 'back-h' },
      h('h2', { id: 'back-h' }, 'When you come back'),
      field('Seconds running jobs may finish before they are stopped', i.grace),
      field('Minutes before the model leaves memory', i.unload, 'Kept a little while in case you step away again.'),
    ),
    problems,
    h('div', { class: 'row-actions' }, save),
  );
}

/** What the form says, as a policy patch, or the problems to show. */
function readPatch(i: PolicyInputs, drafts: readonly WindowDraft[]): { patch: PolicyPatch; problems: string[] } {
  const problems: string[] = [];
  const num = (input: HTMLInputElement, label: string): number => {
    const v = Number(input.value);
    const ok = input.value.trim() !== '' && Number.isFinite(v) && v >= Number(input.min) && v <= Number(input.max);
    input.toggleAttribute('aria-invalid', !ok);
    if (!ok) problems.push(`${label}: enter a number from ${input.min} to ${input.max}.`);
    return v;
  };
  const patch: PolicyPatch = {
    idleSeconds: Math.round(num(i.idle, 'Minutes before away') * 60),
    lockedCountsAsIdle: i.locked.input.checked,
    requireAc: i.ac.input.checked,
    minBatteryPercent: Math.round(num(i.battery, 'Battery floor')),
    maxThermal: i.thermal.value as Policy['maxThermal'],
    timeZone: i.zone.value.trim() === '' ? null : i.zone.value.trim(),
    graceMs: Math.round(num(i.grace, 'Grace') * 1000),
    unloadDelayMs: Math.round(num(i.unload, 'Unload delay') * 60_000),
  };
  const schedule = checkSchedule(drafts);
  if (!schedule.ok) problems.push(...schedule.problems);
  else patch.schedule = schedule.schedule;
  return { patch, problems };
}

/** The Availability screen. */
export function availabilityScreen(ctx: AppContext): Screen {
  let root: HTMLElement;
  let built = false;
  const drafts: WindowDraft[] = [];
  const windows = h('div', { id: 'windows' });
  const problems = h('div', { id: 'policy-problems', class: 'error', role: 'alert' });

  function drawWindows(): void {
    const remove = (d: WindowDraft) => (): void => {
      drafts.splice(drafts.indexOf(d), 1);
      drawWindows();
      (windows.querySelector('button') ?? root.querySelector<HTMLElement>('#add-window'))?.focus();
    };
    replaceChildren(
      windows,
      drafts.length === 0
        ? h('p', { class: 'muted', 'data-field': 'any-time' }, 'No windows: this Mac may serve at any time (when idle, on power and cool).')
        : null,
      ...drafts.map((d, i) => windowRow(d, i, remove(d))),
    );
  }

  function build(policy: Policy): void {
    built = true;
    drafts.splice(0, drafts.length, ...policy.schedule.map((w) => ({ days: [...w.days] as Weekday[], start: w.start, end: w.end })));
    const inputs = policyInputs(policy);
    const add = h('button', { type: 'button', id: 'add-window' }, 'Add a window');
    add.addEventListener('click', () => {
      drafts.push({ days: ['mon', 'tue', 'wed', 'thu', 'fri'], start: '22:00', end: '07:00' });
      drawWindows();
      windows.querySelector<HTMLInputElement>('fieldset:last-of-type input')?.focus();
    });
    const save = h('button', { type: 'submit', class: 'primary', id: 'save-policy' }, 'Save');
    const form = policyForm(inputs, windows, add, problems, save);
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const { patch, problems: found } = readPatch(inputs, drafts);
      replaceChildren(problems, ...found.map((p) => h('p', {}, p)));
      if (found.length > 0) return;
      save.disabled = true;
      ctx.bridge
        .setPolicy(patch)
        .then(async (policy) => {
          ctx.state.policy = policy;
          ctx.notice('Availability saved.');
          await ctx.refresh('status');
        })
        .catch((err: unknown) => {
          replaceChildren(problems, h('p', {}, err instanceof Error ? err.message : String(err)));
          ctx.report(err);
        })
        .finally(() => (save.disabled = false));
    });
    root.append(form);
    drawWindows();
  }

  return {
    title: 'Availability',
    mount(el) {
      root = el;
      el.append(
        h('h1', {}, 'Availability'),
        h('p', { class: 'lead' }, 'Nightjar gives the Mac back the moment you return; these settings say when it may borrow it.'),
      );
      if (ctx.state.policy) build(ctx.state.policy);
    },
    update() {
      if (!built && ctx.state.policy) build(ctx.state.policy);
    },
  };
}
