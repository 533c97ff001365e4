/**
 * Moving a manual clock over a live gateway link. The link's liveness watch (GatewayLink: a ping
 * after pingMs of quiet, the link cut after silenceTimeoutMs of silence) runs on the clock, but
 * the gateway's pong needs real time: advancing the clock by minutes in one step would read as a
 * silent gateway. {@link advanceLive} advances in steps of at most one ping interval and, after
 * each, waits for the pong of any ping the step sent (or for the link to leave 'connected'), as a
 * running clock would have.
 */
import { NightjarError, type Event, type LinkState } from '../../../src/shared/index.js';
import type { ManualClock } from './manual-clock.js';

/** What {@link advanceLive} needs of a link: GatewayLink has all of it. */
export interface PingedLink {
  readonly onPong: Event<void>;
  readonly onState: Event<LinkState>;
  readonly awaitingPong: boolean;
}

/** Advances `clock` by `ms`, `stepMs` at a time, awaiting the gateway's answer to each ping the link sends. */
export async function advanceLive(clock: ManualClock, link: PingedLink, ms: number, stepMs = 5000): Promise<void> {
  for (let left = ms; left > 0;) {
    const step = Math.min(stepMs, left);
    clock.advance(step);
    left -= step;
    if (link.awaitingPong) await answered(link);
  }
}

/** Resolves at the link's next pong or state change; rejects after 5 s of real time. */
function answered(link: PingedLink): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const done = (): void => {
      clearTimeout(timer);
      pong.dispose();
      state.dispose();
      resolve();
    };
    const pong = link.onPong(done);
    const state = link.onState(done);
    const timer = setTimeout(() => {
      pong.dispose();
      state.dispose();
      reject(new NightjarError('NJ_TIMEOUT', 'the gateway did not answer a ping within 5000 ms'));
    }, 5000);
  });
}
