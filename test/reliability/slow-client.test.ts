/**
 * A slow client link, through the fault proxy (issue 17): latency with jitter and a bandwidth cap
 * on what the gateway sends the client. A long reply still completes, whole; a client slower than
 * the reply leaves more than maxBufferedBytesPerClient unread and its job is cancelled, as
 * docs/api.md says: the user sees NJ_STREAM_BROKEN with the text so far, the job is billed for
 * the chunks it was given (not the agent's whole receipt), and the next chat succeeds.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { IncompleteReplyError } from '../../src/client/index.js';
import type { JobOutcome } from '../../src/gateway/index.js';
import { onceTrue } from '../helpers/events.js';
import { FakeEngine } from '../helpers/fake-engine.js';
import { REAL_MODEL } from '../gateway/support/net.js';
import { startFaultyNet, type FaultyNet } from './support/faulty-net.js';

let net: FaultyNet | undefined;
afterEach(async () => {
  await net?.close();
  net = undefined;
});

const ask = { model: REAL_MODEL.id, messages: [{ role: 'user' as const, content: 'Tell me a long story.' }] };

describe('a slow client link', () => {
  // Pins flow control end to end: the gateway waits on the client's socket instead of failing a
  // reply that is merely slow (under maxBufferedBytesPerClient it never cuts). Would fail if the
  // gateway timed out slow writes or the SDK's idle timeout fired on a slow but moving stream.
  it('latency 30 ms ± 20 ms and 96 KiB/s: a long reply completes whole, billed on its receipt', async () => {
    net = await startFaultyNet({ clientProxy: { seed: 5, faults: { down: { latencyMs: 30, jitterMs: 20, bytesPerSecond: 96 * 1024 } } } });
    const words = Array.from({ length: 300 }, (_, i) => ` word${i}`.padEnd(64, '.'));
    const a = await net.addAgent(new FakeEngine({ slots: 1, words }));
    const result = await net.client().complete({ ...ask, maxTokens: 300 });
    expect(result.text).toBe(words.join(''));
    expect(result.usage.completionTokens).toBe(300);
    await a.receiptsSigned(1);
    const r = await net.reconcile();
    expect(r.problems).toEqual([]);
    expect(r.settled).toBe(1);
    // The cap held: the reply's bytes went through the proxy no faster than 96 KiB/s allows.
    expect(net.clientLink.connections.reduce((n, c) => n + c.forwarded.down, 0)).toBeGreaterThan(64 * 300);
  });

  // Pins maxBufferedBytesPerClient (NdjsonSink's check of writableLength): a client that cannot
  // keep up is cut off and its job cancelled, instead of the gateway buffering the whole reply
  // (4 MiB of text here). Would fail without it: the stalled stream never ends and the test times
  // out. The kernel's socket buffers and the proxy's 64 KiB take a few MiB before the gateway's
  // own buffer grows, so the link is capped at 256 KiB/s and then stalls (black hole) once
  // 256 KiB arrived: a client slower than the reply, reached in about two seconds.
  it('slower than the reply: cut off past maxBufferedBytesPerClient, the job cancelled and billed for what it was given', async () => {
    net = await startFaultyNet({
      gateway: { maxBufferedBytesPerClient: 64 * 1024 },
      clientProxy: { faults: { down: { bytesPerSecond: 256 * 1024 } } },
    });
    const outcomes = new Map<string, JobOutcome>();
    net.gateway.onJobFinished(({ jobId, outcome }) => outcomes.set(jobId, outcome));
    const big = Array.from({ length: 1000 }, (_, i) => `${i}`.padEnd(4 * 1024, '.'));
    const hog = new FakeEngine({ slots: 1, tokenDelayMs: 1, words: big });
    const a = await net.addAgent(hog);
    const stream = net.client().chat({ ...ask, maxTokens: 1000 });
    let received = 0;
    const error = await (async () => {
      for await (const d of stream) {
        received += d.length;
        // The link slows to a crawl once the reply is flowing.
        if (received >= 256 * 1024 && !net!.clientLink.faults('down').blackHole) net!.clientLink.set('down', { blackHole: 'buffer' });
      }
    })().catch((err: unknown) => err);
    expect(error).toBeInstanceOf(IncompleteReplyError);
    const e = error as IncompleteReplyError;
    expect(e.code).toBe('NJ_STREAM_BROKEN');
    expect(e.partialText.length).toBe(received);
    expect(received).toBeLessThan(4 * 1024 * 1000);
    await onceTrue(net.gateway.onJobFinished, () => outcomes.has(e.servedBy.jobId), 'the job to finish');
    expect(outcomes.get(e.servedBy.jobId)).toMatchObject({ status: 'cancelled', reason: 'the client is not reading its reply' });
    expect(await net.gateway.metrics.value(net.gateway.metrics.rejected, { limit: 'slow-client' })).toBe(1);
    // The agent stopped and signed for what it made; the job bills at most what was delivered.
    await a.receiptsSigned(1);
    expect(hog.generated).toBeLessThan(1000);

    // Service resumes: the same client, the link healed, a short reply.
    net.clientLink.heal();
    const next = await net.client().complete({ ...ask, maxTokens: 2 });
    expect(next.text).toBe(big.slice(0, 2).join(''));
    await a.receiptsSigned(2);
    const r = await net.reconcile();
    expect(r.problems).toEqual([]);
    expect(r.settled).toBe(2);
  });
});
