/**
 * The menu-bar item: its menu per state and its title (state mark and today's earnings), as pure
 * functions; then the controller with a fake tray and menu, driven by a fake agent's events and a
 * manual clock — clicking items reaches the agent, login items toggle, dispose cleans up.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { ControlHandlers } from '../../../src/main/agent/index.js';
import {
  TrayController,
  trayMenu,
  trayTitle,
  trayToolTip,
  type AgentLike,
  type TrayInput,
  type TrayMenuItem,
} from '../../../src/main/electron/index.js';
import {
  DEFAULT_POLICY,
  Emitter,
  type AgentState,
  type AgentStatusSnapshot,
  type ControlEvent,
  type EarningsSummary,
  type Manual,
} from '../../../src/shared/index.js';
import { ManualClock } from '../support/manual-clock.js';
import { FakeMenuFactory, FakeTray } from './support/fakes.js';

const NOW = Date.parse('2026-11-21T15:00:00Z');

function status(state: AgentState, extra: Partial<AgentStatusSnapshot> = {}): AgentStatusSnapshot {
  return {
    v: 1,
    agentId: 'a'.repeat(32),
    state,
    since: NOW - 60_000,
    reason:
      state === 'waiting'
        ? { code: 'owner-active', message: 'You are using this Mac.', hint: null }
        : state === 'serving'
          ? { code: 'idle', message: 'The owner is away; serving.', hint: null }
          : null,
    decision: null,
    manual: { mode: 'auto', until: null },
    link: state === 'serving' ? 'connected' : 'idle',
    gatewayUrl: 'wss://gw.example/v1/agent',
    gateway: { enrollToken: true, operator: 'op_1', trust: 'signed', rejected: null },
    model: { id: 'qwen2.5-1.5b-instruct-q4_k_m', sha256: 'ab'.repeat(32), synthetic: false, loaded: state === 'serving' },
    totalSlots: 4,
    freeSlots: 3,
    activeJobs: 1,
    jobsServed: 12,
    tokensPerSecond: 41.25,
    ttftMs: 180,
    environment: null,
    security: {
      keyStore: 'keychain',
      platform: { os: 'darwin', osVersion: '25.1', arch: 'arm64', chip: 'Apple M3', memoryBytes: 16 * 1024 ** 3 },
      posture: { sip: null, hardenedRuntime: null, debuggerDenied: null, secureEnclave: false, appVersion: '0.1.0', appHash: null },
    },
    ...extra,
  };
}

const TODAY = { jobs: 12, promptTokens: 3000, completionTokens: 4200, microCredits: '123456' };

/** The menu as label lines: "label" for items, "---" for separators, with [x]/[ ] for checkboxes and (off) for disabled. */
function lines(items: TrayMenuItem[]): string[] {
  return items.map((i) =>
    i.type === 'separator' ? '---' : `${i.type === 'checkbox' ? (i.checked ? '[x] ' : '[ ] ') : ''}${i.label}${i.enabled ? '' : ' (off)'}`,
  );
}

function input(s: AgentStatusSnapshot | null, today: TrayInput['today'] = TODAY, launchAtLogin = true): TrayInput {
  return { status: s, today, launchAtLogin };
}

describe('the tray menu, per state', () => {
  it('serving: state, model, live jobs, earnings; pause, serve now, dashboard, preferences, login item, quit', () => {
    expect(lines(trayMenu(input(status('serving'))))).toEqual([
      'Serving (off)',
      'Model: qwen2.5-1.5b-instruct-q4_k_m (off)',
      '1 job · 41.3 tokens/s (off)',
      'Earned today: 0.123456 credits (off)',
      '---',
      'Pause',
      'Serve Now',
      '---',
      'Open Dashboard…',
      'Preferences…',
      '[x] Launch at Login',
      '---',
      'Quit Nightjar',
    ]);
  });

  it('waiting says why; paused offers resume; serve-now offers the way back to the schedule', () => {
    expect(lines(trayMenu(input(status('waiting')))).slice(0, 3)).toEqual([
      'Waiting — You are using this Mac. (off)',
      'Model: qwen2.5-1.5b-instruct-q4_k_m (off)',
      'Earned today: 0.123456 credits (off)',
    ]);
    const paused = status('paused', {
      manual: { mode: 'paused', until: null } as Manual,
      reason: { code: 'paused', message: 'Paused by the owner.', hint: null },
    });
    expect(lines(trayMenu(input(paused))).slice(4, 6)).toEqual(['Resume', 'Serve Now']);
    expect(trayMenu(input(paused)).find((i) => i.id === 'resume')?.action).toBe('resume');
    const now = status('serving', { manual: { mode: 'serve-now', until: null } });
    expect(lines(trayMenu(input(now))).slice(5, 7)).toEqual(['Pause', 'Back to Schedule']);
  });

  it('not linked: the error reason, serving disabled, and the dashboard item sets up', () => {
    const s = status('error', {
      gatewayUrl: null,
      model: null,
      reason: { code: 'NJ_NOT_LINKED', message: 'This machine is not linked to a gateway yet.', hint: 'Link it.' },
    });
    expect(lines(trayMenu(input(s, null, false)))).toEqual([
      'Needs attention — This machine is not linked to a gateway yet. (off)',
      'No model selected (off)',
      'Earned today: nothing yet (off)',
      '---',
      'Pause',
      'Serve Now (off)',
      '---',
      'Set Up Nightjar…',
      'Preferences…',
      '[ ] Launch at Login',
      '---',
      'Quit Nightjar',
    ]);
  });

  it('before the agent answers: starting, controls off', () => {
    expect(lines(trayMenu(input(null, null))).slice(0, 5)).toEqual([
      'Starting… (off)',
      'Earned today: nothing yet (off)',
      '---',
      'Pause (off)',
      'Serve Now (off)',
    ]);
  });

  it('names why this Mac is not attested, when the agent says', () => {
    const security = status('serving').security;
    const not = trayMenu(input(status('serving', { security: { ...security, attestation: ['no-attestation', 'sip-off'] } })));
    expect(not.find((i) => i.id === 'trust')).toMatchObject({
      label: 'Trust: signed (not attested: no-attestation, sip-off)',
      enabled: false,
    });
    const yes = status('serving', { security: { ...security, attestation: ['valid'] } });
    expect(trayMenu(input({ ...yes, gateway: { ...yes.gateway, trust: 'attested' } })).find((i) => i.id === 'trust')?.label).toBe(
      'Trust: attested',
    );
  });

  it('unpriced earnings are counted in tokens', () => {
    expect(lines(trayMenu(input(status('serving'), { ...TODAY, microCredits: null })))[3]).toBe('Today: 12 jobs, 4.2k tokens (off)');
  });
});

describe('the tray title', () => {
  it('is the state’s mark and today’s earnings, short', () => {
    expect(trayTitle({ status: status('serving'), today: TODAY })).toBe('● 0.12');
    expect(trayTitle({ status: status('serving'), today: { ...TODAY, microCredits: '1234567890' } })).toBe('● 1,234');
    expect(trayTitle({ status: status('paused'), today: TODAY })).toBe('‖ 0.12');
    expect(trayTitle({ status: status('waiting'), today: { ...TODAY, microCredits: null } })).toBe('○ 4.2k tok');
    expect(trayTitle({ status: status('error'), today: { jobs: 0, promptTokens: 0, completionTokens: 0, microCredits: '0' } })).toBe('!');
    expect(trayTitle({ status: null, today: null })).toBe('');
    expect(trayToolTip(status('waiting'))).toBe('Nightjar — Waiting: You are using this Mac.');
  });
});

/** An agent whose status and earnings a test sets, and whose events it emits. */
class FakeAgent implements AgentLike {
  current = status('serving');
  earnedMicro: string | null = '2500000';
  readonly calls: string[] = [];
  readonly events = new Emitter<ControlEvent>();
  readonly onEvent = this.events.event;
  disposed = 0;
  readonly handlers = {
    status: async () => this.current,
    pause: async () => {
      this.calls.push('pause');
      this.current = status('paused', { manual: { mode: 'paused', until: null } });
      return this.current;
    },
    resume: async () => {
      this.calls.push('resume');
      this.current = status('serving');
      return this.current;
    },
    serveNow: async () => {
      this.calls.push('serveNow');
      this.current = status('serving', { manual: { mode: 'serve-now', until: null } });
      return this.current;
    },
    earnings: async (): Promise<EarningsSummary> => ({
      v: 1,
      timeZone: 'UTC',
      priceSource: 'config',
      rows: [
        {
          date: new Date(NOW).toISOString().slice(0, 10),
          model: 'm',
          jobs: 2,
          promptTokens: 10,
          completionTokens: 20,
          microCredits: this.earnedMicro,
        },
      ],
      totals: { jobs: 2, promptTokens: 10, completionTokens: 20, microCredits: this.earnedMicro },
      rejectedLines: 0,
    }),
    getPolicy: async () => DEFAULT_POLICY,
  } as unknown as ControlHandlers;
  emit(e: ControlEvent): void {
    this.events.fire(e);
  }
  async dispose(): Promise<void> {
    this.disposed++;
  }
  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }
}

describe('the tray controller', () => {
  let controller: TrayController | null = null;
  afterEach(() => {
    controller?.dispose();
    controller = null;
  });

  function setup(): {
    tray: FakeTray;
    menu: FakeMenuFactory;
    agent: FakeAgent;
    clock: ManualClock;
    actions: string[];
    login: { on: boolean };
  } {
    const tray = new FakeTray();
    const menu = new FakeMenuFactory();
    const agent = new FakeAgent();
    const clock = new ManualClock(NOW);
    const actions: string[] = [];
    const login = { on: false };
    controller = new TrayController({
      tray,
      menu,
      agent,
      clock,
      refreshMs: 60_000,
      actions: {
        openDashboard: (screen) => actions.push(`open ${screen ?? ''}`.trim()),
        launchAtLogin: () => login.on,
        setLaunchAtLogin: (on) => void (login.on = on),
        quit: () => actions.push('quit'),
      },
    });
    return { tray, menu, agent, clock, actions, login };
  }

  it('shows the agent’s state and today’s earnings, and follows its events', async () => {
    const { tray, agent, menu } = setup();
    expect(tray.title).toBe('');
    await controller!.refresh();
    expect(tray.title).toBe('● 2.50');
    expect(tray.toolTip).toBe('Nightjar — Serving: The owner is away; serving.');
    expect(menu.item('earnings').label).toBe('Earned today: 2.5 credits');

    agent.current = status('waiting');
    agent.emit({ type: 'state', state: 'waiting', since: NOW, reason: agent.current.reason, decision: null });
    await controller!.refresh();
    expect(tray.title).toBe('○ 2.50');
    expect(menu.item('state').label).toBe('Waiting — You are using this Mac.');

    // Job counts and tokens/s come with the jobs event, without asking the agent.
    agent.current = status('serving');
    await controller!.refresh();
    agent.emit({ type: 'jobs', activeJobs: 3, jobsServed: 20, freeSlots: 1, totalSlots: 4, tokensPerSecond: 55, ttftMs: 100 });
    expect(menu.item('rate').label).toBe('3 jobs · 55.0 tokens/s');
  });

  it('menu items reach the agent and the app', async () => {
    const { menu, agent, actions, login } = setup();
    await controller!.refresh();
    menu.item('pause').click!();
    await controller!.refresh();
    expect(agent.calls).toEqual(['pause']);
    expect(menu.item('resume').label).toBe('Resume');
    menu.item('resume').click!();
    await controller!.refresh();
    menu.item('serve-now').click!();
    await controller!.refresh();
    expect(agent.calls).toEqual(['pause', 'resume', 'serveNow']);

    menu.item('open-dashboard').click!();
    menu.item('preferences').click!();
    expect(menu.item('launch-at-login').checked).toBe(false);
    menu.item('launch-at-login').click!();
    expect(login.on).toBe(true);
    expect(menu.item('launch-at-login').checked).toBe(true);
    menu.item('quit').click!();
    expect(actions).toEqual(['open', 'open availability', 'quit']);
    expect(menu.item('quit').accelerator).toBe('CommandOrControl+Q');
  });

  it('an unlinked agent’s dashboard item opens on Set up', async () => {
    const { menu, agent, actions } = setup();
    agent.current = status('error', { gatewayUrl: null });
    await controller!.refresh();
    menu.item('open-dashboard').click!();
    expect(actions).toEqual(['open setup']);
  });

  it('refreshes on its clock (today’s earnings roll over), and dispose stops it and removes the item', async () => {
    const { tray, agent, clock } = setup();
    await controller!.refresh();
    agent.earnedMicro = '0';
    clock.advance(60_000);
    await controller!.refresh();
    expect(tray.title).toBe('● 0.00');
    expect(clock.pending()).toHaveLength(1);
    controller!.dispose();
    expect(tray.destroyed).toBe(true);
    expect(clock.pending()).toHaveLength(0);
    expect(agent.events.listenerCount).toBe(0);
    controller = null;
  });
});
