/**
 * The wall clock jumped forward and back (issue 17), as an NTP step or a host resuming does: the
 * gateway's and the agent's clocks (injected) jump while their timers keep running on the
 * monotonic clock, which is how Node's timers behave when Date.now() jumps. Heartbeats and
 * challenges run on timers, so a jump either way disconnects no one; a job running across a jump
 * settles on its receipt; the rate limiter neither locks a key out after a backward jump nor
 * grants a burst after a forward one; a client whose clock is behind the gateway's by more than
 * the skew allowed is told so (the directory answer is from its future), and a request sealed
 * before a forward jump past the agents' request age limit is refused; nothing stays held.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { NightjarError, systemClock, type Clock } from '../../src/shared/index.js';
import { FakeEngine } from '../helpers/fake-engine.js';
import { REAL_MODEL } from '../gateway/support/net.js';
import { startFaultyNet, type FaultyNet } from './support/faulty-net.js';

let net: FaultyNet | undefined;
afterEach(async () => {
  await net?.close();
  net = undefined;
});

/** Real time plus an offset a test can jump; timers are the system's (monotonic). */
class JumpClock implements Clock {
  offsetMs = 0;
  now(): number {
    return Date.now() + this.offsetMs;
  }
  setTimeout(fn: () => void, ms: number): ReturnType<Clock['setTimeout']> {
    return systemClock.setTimeout(fn, ms);
  }
  clearTimeout(handle: ReturnType<Clock['setTimeout']>): void {
    systemClock.clearTimeout(handle);
  }
}

const HOUR = 3600_000;
const ask = { model: REAL_MODEL.id, messages: [{ role: 'user' as const, content: 'What time is it?' }], maxTokens: 4 };

describe('the clock jumped', () => {
  // Pins that liveness, heartbeats and challenges run on timers, not on differences of now()
  // (a backward jump would otherwise look like an hour of silence, a forward one like none), and
  // RateLimiter's clamp of a negative elapsed time (checked once: without Math.max(0, …) in
  // RateLimiter.take, the hour back drains the bucket and the chat after it gets NJ_RATE_LIMITED).
  it('back an hour and forward two, mid-job and between jobs: no disconnect, every job settled on its receipt', async () => {
    const clock = new JumpClock();
    net = await startFaultyNet({ gateway: { clock, rateLimit: { perSecond: 5, burst: 5 } } });
    const engine = new FakeEngine({ slots: 2, tokenDelayMs: 20, words: ['one', ' two', ' three', ' four'] });
    const a = await net.addAgent(engine, { clock });
    let disconnects = 0;
    net.gateway.onAgentDisconnected(() => disconnects++);
    // One host: the client's clock jumps with them.
    const client = net.client({ clock });

    // A job running while the clock jumps back an hour, then another while it jumps forward two.
    for (const jump of [-HOUR, 2 * HOUR]) {
      const stream = client.chat(ask);
      let text = '';
      for await (const d of stream) {
        if (text === '') clock.offsetMs += jump;
        text += d;
      }
      expect(text).toBe('one two three four');
    }
    // And between jobs, a few in a row under the rate limit.
    clock.offsetMs -= HOUR;
    for (let i = 0; i < 3; i++) expect((await client.complete({ ...ask, maxTokens: 1 })).text).toBe('one');
    await a.receiptsSigned(5);
    expect(disconnects).toBe(0);
    expect(net.gateway.directory.get(a.agentId)).toBeDefined();
    expect(a.link.open).toHaveLength(1);
    const r = await net.reconcile();
    expect(r.problems).toEqual([]);
    expect(r.settled).toBe(5);
  });

  // Pins the client's check of the signed directory answer's time (a gateway whose clock is ahead
  // is named: "check this machine's clock") and the agents' request age limit
  // (LIMITS.maxRequestAgeMs plus the skew allowed), which is what stops a replayed envelope: a
  // request sealed on candidates fetched before the gateway's and the agent's clocks jumped 10
  // minutes ahead is refused, not served, and its hold goes back.
  it('forward past the request age limit: refused clearly (directory answer, then the sealed request), nothing held', async () => {
    const clock = new JumpClock();
    net = await startFaultyNet({ gateway: { clock } });
    const a = await net.addAgent(new FakeEngine({ slots: 1, words: ['late'] }), { clock });
    const seen = async (): Promise<{ code: string; message: string }> => {
      const error = await net!
        .client({ retry: false })
        .complete(ask)
        .catch((err: unknown) => err);
      expect(error).toBeInstanceOf(NightjarError);
      return { code: (error as NightjarError).code, message: (error as Error).message };
    };
    // The client's own clock stays put. Asking for candidates after the jump: the answer is from its future.
    clock.offsetMs = 10 * 60_000;
    expect(await seen()).toEqual({
      code: 'NJ_DIRECTORY_INVALID',
      message: "the directory answer was issued in the future (check this machine's clock)",
    });
    // Candidates fetched before the jump (the SDK reuses them for candidatesTtlMs): the envelope
    // says "now" in the old time, and the agent refuses it as stale.
    clock.offsetMs = 0;
    const client = net.client({ retry: false });
    expect((await client.complete(ask)).text).toBe('late');
    clock.offsetMs = 10 * 60_000;
    const error = await client.complete(ask).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(NightjarError);
    expect({ code: (error as NightjarError).code, message: (error as Error).message }).toEqual({
      code: 'NJ_STALE_REQUEST',
      message: 'the request was created outside the accepted time window',
    });
    clock.offsetMs = 0;
    expect((await client.complete(ask)).text).toBe('late');
    await a.receiptsSigned(2);
    const r = await net.reconcile();
    expect(r.problems).toEqual([]);
    expect(r.settled).toBe(2);
  });
});
