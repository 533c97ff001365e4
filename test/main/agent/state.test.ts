/**
 * The pieces the agent's parts share: the one state store (its owner writes, the rest read and
 * hear each change) and the timer slot on the injected clock.
 */
import { describe, expect, it } from 'vitest';
import { AgentStateStore, type AgentStateChange } from '../../../src/main/agent/index.js';
import { TimerSlot } from '../../../src/shared/index.js';
import { silentLogger } from '../../../src/shared/index.js';
import { ManualClock } from '../support/manual-clock.js';

const WHY = { code: 'owner-active', message: 'The owner is using this machine.', hint: null };

describe('the state store', () => {
  it('starts stopped, fires on a change of state or reason, and moves since only when the state changes', () => {
    const clock = new ManualClock(1000);
    const store = new AgentStateStore({ clock, logger: silentLogger });
    const seen: AgentStateChange[] = [];
    store.onChange((s) => seen.push(s));
    expect(store.current).toEqual({ state: 'stopped', since: 1000, reason: null, decision: null });

    clock.advance(10);
    expect(store.set('waiting')).toBe(true);
    clock.advance(10);
    expect(store.set('waiting', WHY, { action: 'wait', reason: 'owner-active' })).toBe(true);
    expect(store.set('waiting', { ...WHY })).toBe(false); // same code and message: nothing new
    clock.advance(10);
    expect(store.set('serving')).toBe(true);
    expect(seen.map((s) => [s.state, s.since, s.reason?.code ?? null])).toEqual([
      ['waiting', 1010, null],
      ['waiting', 1010, 'owner-active'],
      ['serving', 1030, null],
    ]);
    // The decision stays with the state until another is given.
    expect(store.current.decision).toEqual({ action: 'wait', reason: 'owner-active' });
    expect(store.state).toBe('serving');
  });

  it('drops its listeners when disposed', () => {
    const store = new AgentStateStore({ clock: new ManualClock(), logger: silentLogger });
    let calls = 0;
    store.onChange(() => calls++);
    store.dispose();
    store.set('waiting');
    expect(calls).toBe(0);
  });

  it('logs a throwing listener, and the others still hear the change', () => {
    const errors: string[] = [];
    const logger = { ...silentLogger, error: (m: string) => void errors.push(m), child: () => logger };
    const store = new AgentStateStore({ clock: new ManualClock(), logger });
    let heard = 0;
    store.onChange(() => {
      throw new Error('boom');
    });
    store.onChange(() => heard++);
    store.set('waiting');
    expect(heard).toBe(1);
    expect(errors).toEqual(['an event listener failed']);
  });
});

describe('the timer slot', () => {
  it('holds one timer: set replaces, clear cancels, dispose cancels for good', () => {
    const clock = new ManualClock();
    const slot = new TimerSlot(clock);
    const fired: string[] = [];
    slot.set(100, () => fired.push('first'));
    slot.set(50, () => fired.push('second'));
    expect(slot.pending).toBe(true);
    clock.advance(200);
    expect(fired).toEqual(['second']);
    expect(slot.pending).toBe(false);
    slot.set(10, () => fired.push('third'));
    slot.clear();
    clock.advance(20);
    slot.dispose();
    slot.set(10, () => fired.push('after dispose'));
    clock.advance(20);
    expect(fired).toEqual(['second']);
    expect(clock.pending()).toEqual([]);
  });
});
