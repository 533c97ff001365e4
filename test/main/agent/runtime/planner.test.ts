/**
 * The runtime's decisions as a table: what the runtime knows → the next step the planner gives.
 * Each row starts from an agent serving steadily (linked, model chosen and loaded, connected) and
 * changes what the row is about; every branch of plan() has a row. The runtime's own tests
 * (runtime.test.ts) show the steps carried out against a gateway on a real socket.
 */
import { describe, expect, it } from 'vitest';
import { plan, reasonOf, stopsAccepting, type PlanInput, type Step } from '../../../../src/main/agent/runtime/planner.js';
import type { Decision, StateReason } from '../../../../src/shared/index.js';

const IDLE: Decision = { action: 'serve', reason: 'idle' };
const LOCKED: Decision = { action: 'serve', reason: 'screen-locked' };
const ACTIVE: Decision = { action: 'wait', reason: 'owner-active' };
const PAUSED: Decision = { action: 'off', reason: 'paused' };
const SCHEDULE: Decision = { action: 'off', reason: 'outside-schedule' };
const NOW = 1_800_000_000_000;
const BROKEN: StateReason = { code: 'NJ_MODEL_DOES_NOT_FIT', message: 'needs 9 GiB; 3 GiB free', hint: 'Free memory.' };

/** An agent serving steadily for the owner being away. */
const SERVING: PlanInput = {
  decision: IDLE,
  error: null,
  now: NOW,
  reloadRequested: false,
  relinkRequested: false,
  linked: true,
  chosen: true,
  agent: true,
  connected: true,
  loaded: true,
  state: 'serving',
  reason: reasonOf(IDLE),
  drained: false,
  unloadDue: false,
  unloadScheduled: false,
};

/** Stood down after a drain: waiting for the owner, connected, model still loaded. */
const WAITING: PlanInput = { ...SERVING, decision: ACTIVE, state: 'waiting', reason: reasonOf(ACTIVE), drained: true };

const rows: [name: string, input: Partial<PlanInput>, step: Step][] = [
  ['no decision yet: rest', { decision: null, state: 'waiting' }, { kind: 'rest' }],

  // The selected model changed.
  ['model change while serving: drain first', { reloadRequested: true }, { kind: 'drain', reason: 'model-change' }],
  [
    'model change while draining: the drain goes on',
    { reloadRequested: true, state: 'draining' },
    { kind: 'drain', reason: 'model-change' },
  ],
  ['model change, jobs settled: unload', { reloadRequested: true, state: 'draining', drained: true }, { kind: 'unload' }],
  [
    'model change, unloaded: forget the choice',
    { reloadRequested: true, state: 'draining', drained: true, loaded: false },
    { kind: 'forget-model' },
  ],
  ['model change before any agent: unload at once', { reloadRequested: true, agent: false, connected: false }, { kind: 'unload' }],

  // The gateway changed.
  ['relink while serving: drain first', { relinkRequested: true }, { kind: 'drain', reason: 'relink' }],
  ['relink, jobs settled: drop the link', { relinkRequested: true, state: 'draining', drained: true }, { kind: 'relink' }],
  ['relink while waiting: drop the link', { ...WAITING, relinkRequested: true }, { kind: 'relink' }],

  // Paused: stands down whatever else holds, an error included.
  ['pause while serving: drain', { decision: PAUSED, error: { reason: BROKEN, retryAt: null } }, { kind: 'drain', reason: 'paused' }],
  [
    'pause, jobs settled: goodbye paused',
    { decision: PAUSED, state: 'draining', drained: true },
    { kind: 'disconnect', goodbye: 'paused' },
  ],
  [
    'pause, disconnected: paused, saying why',
    { decision: PAUSED, state: 'draining', drained: true, connected: false },
    { kind: 'enter', state: 'paused', reason: reasonOf(PAUSED) },
  ],
  [
    'paused with the model in memory: start the unload delay',
    { decision: PAUSED, state: 'paused', reason: reasonOf(PAUSED), connected: false },
    { kind: 'schedule-unload' },
  ],
  [
    'paused, the delay running: rest',
    { decision: PAUSED, state: 'paused', reason: reasonOf(PAUSED), connected: false, unloadScheduled: true },
    { kind: 'rest' },
  ],
  [
    'paused, the delay over: unload',
    { decision: PAUSED, state: 'paused', reason: reasonOf(PAUSED), connected: false, unloadDue: true },
    { kind: 'unload' },
  ],

  // An error held.
  [
    'error whose retry time came: clear it',
    { error: { reason: BROKEN, retryAt: NOW }, state: 'error', reason: BROKEN },
    { kind: 'clear-error' },
  ],
  ['error while serving: drain', { error: { reason: BROKEN, retryAt: NOW + 1 } }, { kind: 'drain', reason: BROKEN.code }],
  [
    'error, jobs settled: enter error with its reason',
    { error: { reason: BROKEN, retryAt: null }, state: 'draining', drained: true },
    { kind: 'enter', state: 'error', reason: BROKEN },
  ],
  [
    'error while loading (no jobs): enter error',
    { error: { reason: BROKEN, retryAt: null }, state: 'loading', reason: null, loaded: false },
    { kind: 'enter', state: 'error', reason: BROKEN },
  ],
  [
    'in error, connected: goodbye error',
    { error: { reason: BROKEN, retryAt: null }, state: 'error', reason: BROKEN },
    { kind: 'disconnect', goodbye: 'error' },
  ],
  [
    'in error, disconnected, model loaded: unload',
    { error: { reason: BROKEN, retryAt: null }, state: 'error', reason: BROKEN, connected: false },
    { kind: 'unload' },
  ],
  [
    'in error, nothing held: rest until the owner acts',
    { error: { reason: BROKEN, retryAt: null }, state: 'error', reason: BROKEN, connected: false, loaded: false },
    { kind: 'rest' },
  ],
  [
    'in error, another error: enter it',
    { error: { reason: { ...BROKEN, code: 'NJ_NOT_LINKED', message: 'not linked' }, retryAt: null }, state: 'error', reason: BROKEN },
    { kind: 'enter', state: 'error', reason: { ...BROKEN, code: 'NJ_NOT_LINKED', message: 'not linked' } },
  ],

  // Serve.
  [
    'serve, not linked: fail NJ_NOT_LINKED',
    { state: 'waiting', linked: false, agent: false, connected: false },
    { kind: 'fail', code: 'NJ_NOT_LINKED' },
  ],
  [
    'serve, no model chosen: choose one',
    { state: 'waiting', chosen: false, agent: false, connected: false, loaded: false },
    { kind: 'choose-model' },
  ],
  ['serve, no agent yet: connect', { state: 'waiting', agent: false, connected: false, loaded: false }, { kind: 'connect' }],
  ['serve, disconnected (after a pause): connect', { state: 'paused', connected: false }, { kind: 'connect' }],
  ['serve again during the unload delay: keep the model', { ...WAITING, decision: IDLE, unloadScheduled: true }, { kind: 'keep-model' }],
  ['serve again once the unload is due: keep the model', { ...WAITING, decision: IDLE, unloadDue: true }, { kind: 'keep-model' }],
  ['serve, nothing loaded: load', { state: 'waiting', loaded: false }, { kind: 'load' }],
  ['serve, loaded: serving', { state: 'loading', reason: null }, { kind: 'serve', reason: reasonOf(IDLE) }],
  [
    'serve after a called-off drain: serving again',
    { state: 'draining', reason: reasonOf(ACTIVE) },
    { kind: 'serve', reason: reasonOf(IDLE) },
  ],
  ['serving for another reason: say the new one', { decision: LOCKED }, { kind: 'serve', reason: reasonOf(LOCKED) }],
  ['serving steadily: rest', {}, { kind: 'rest' }],

  // Wait: stays connected, unloads after the delay.
  ['owner back while serving: drain', { decision: ACTIVE }, { kind: 'drain', reason: 'owner-active' }],
  [
    'owner back, jobs settled: waiting',
    { decision: ACTIVE, state: 'draining', drained: true },
    { kind: 'enter', state: 'waiting', reason: reasonOf(ACTIVE) },
  ],
  ['waiting with the model in memory: start the unload delay', WAITING, { kind: 'schedule-unload' }],
  ['waiting, the delay running: rest', { ...WAITING, unloadScheduled: true }, { kind: 'rest' }],
  ['waiting, the delay over: unload', { ...WAITING, unloadDue: true }, { kind: 'unload' }],
  ['waiting, unloaded: rest', { ...WAITING, loaded: false }, { kind: 'rest' }],
  [
    'waiting, not linked: fail NJ_NOT_LINKED',
    { ...WAITING, linked: false, agent: false, connected: false },
    { kind: 'fail', code: 'NJ_NOT_LINKED' },
  ],
  [
    'waiting, no model chosen: choose one (to connect)',
    { ...WAITING, chosen: false, agent: false, connected: false },
    { kind: 'choose-model' },
  ],
  ['waiting, disconnected: connect (the gateway should know the agent)', { ...WAITING, connected: false }, { kind: 'connect' }],
  [
    'waiting for another reason: say the new one',
    { ...WAITING, decision: { action: 'wait', reason: 'on-battery' } },
    { kind: 'enter', state: 'waiting', reason: reasonOf({ action: 'wait', reason: 'on-battery' }) },
  ],

  // Off: outside the schedule.
  ['schedule over while serving: drain', { decision: SCHEDULE }, { kind: 'drain', reason: 'outside-schedule' }],
  [
    'schedule over, jobs settled: goodbye schedule',
    { decision: SCHEDULE, state: 'draining', drained: true },
    { kind: 'disconnect', goodbye: 'schedule' },
  ],
  [
    'schedule over, disconnected: waiting for the next window',
    { decision: SCHEDULE, state: 'draining', drained: true, connected: false },
    { kind: 'enter', state: 'waiting', reason: reasonOf(SCHEDULE) },
  ],
  [
    'outside the schedule, never linked: no error, just waiting',
    { decision: SCHEDULE, state: 'waiting', reason: null, linked: false, agent: false, connected: false, loaded: false },
    { kind: 'enter', state: 'waiting', reason: reasonOf(SCHEDULE) },
  ],
];

describe('plan', () => {
  it.each(rows)('%s', (_name, input, step) => {
    expect(plan({ ...SERVING, ...input })).toEqual(step);
  });

  it('is pure: the same input gives the same step, and the input is left alone', () => {
    const input = Object.freeze({ ...SERVING, decision: ACTIVE });
    expect(plan(input)).toEqual(plan(input));
  });
});

describe('stopsAccepting', () => {
  it.each([
    [IDLE, 'serving', false],
    [ACTIVE, 'serving', true],
    [PAUSED, 'serving', true],
    [SCHEDULE, 'serving', true],
    [ACTIVE, 'waiting', false],
    [ACTIVE, 'draining', false],
    [ACTIVE, 'loading', false],
  ] as const)('%o while %s → %s', (decision, state, stops) => {
    expect(stopsAccepting(decision, state)).toBe(stops);
  });
});

describe('reasonOf', () => {
  it('says the decision in words, with what to do where there is something to do', () => {
    expect(reasonOf(PAUSED)).toMatchObject({ code: 'paused', hint: expect.stringContaining('nightjar resume') });
    expect(reasonOf(IDLE)).toMatchObject({ code: 'idle', message: expect.stringMatching(/\S/) });
  });
});
