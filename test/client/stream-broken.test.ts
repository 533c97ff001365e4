/**
 * A reply stream whose connection goes silent (a gateway killed behind a proxy, a network cut:
 * no FIN ever arrives) ends with NJ_STREAM_BROKEN once it has been silent for streamIdleMs (1 s),
 * on the client's clock, because the gateway promised keepalives on it — mid-reply, and before
 * the first chunk too (the SDK asks for the stream to begin at admission); and a stream whose
 * connection ends mid-reply says so with the same code.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { IncompleteReplyError, NightjarClient } from '../../src/client/index.js';
import { perTestFetch } from '../helpers/http-client.js';
import { NightjarError } from '../../src/shared/index.js';
import { startRecordingProxy, type RecordingProxy } from '../helpers/recording-proxy.js';
import { onceTrue } from '../helpers/events.js';
import { StallingEngine } from './support/engines.js';
import { FAKE_MODEL, ManualClock, startNet, type TestNet } from './support/net.js';

let net: TestNet | undefined;
let relay: RecordingProxy | undefined;
afterEach(async () => {
  await net?.close();
  await relay?.close();
  net = undefined;
  relay = undefined;
});
const http = perTestFetch();

const ask = { model: FAKE_MODEL.id, messages: [{ role: 'user' as const, content: 'Say hello.' }], maxTokens: 32 };

/** A fetch whose reply bodies can be black-holed: once frozen, nothing more arrives and nothing ends. */
function freezableFetch(): { fetch: typeof fetch; freeze(): void } {
  let frozen = false;
  const never = new Promise<void>(() => undefined);
  const wrapped: typeof fetch = async (input, init) => {
    const res = await http.fetch(input, init);
    if (!String(input).endsWith('/v1/jobs') || !res.body) return res;
    const reader = res.body.getReader();
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (frozen) return never;
        const { value, done } = await reader.read();
        if (frozen) return never;
        if (done) controller.close();
        else controller.enqueue(value);
      },
      cancel: (reason) => reader.cancel(reason),
    });
    return new Response(body, { status: res.status, headers: res.headers });
  };
  return { fetch: wrapped, freeze: () => (frozen = true) };
}

describe('a reply stream that breaks', () => {
  // Fails without the SDK's idle timeout (readNdjson's idleMs): the read waits forever and the
  // test times out. Fails without the gateway's keepalives too: the SDK never arms the timeout.
  it('silent for streamIdleMs after a keepalive: NJ_STREAM_BROKEN, with the text so far', async () => {
    net = await startNet();
    await net.addAgent(new StallingEngine(['Only', ' this'], { slots: 2 }));
    const clock = new ManualClock();
    const wire = freezableFetch();
    const client = new NightjarClient({ gatewayUrl: net.gateway.url, trust: { allowSynthetic: true }, fetch: wire.fetch, clock });
    const stream = client.chat(ask);
    let text = '';
    let cut!: () => void;
    const frozen = new Promise<void>((resolve) => (cut = resolve));
    const error = (async () => {
      for await (const d of stream) {
        text += d;
        if (text === 'Only this') {
          wire.freeze();
          cut();
        }
      }
    })().catch((err: unknown) => err);
    await frozen;
    // The one timer left is the idle timeout of the read that will never complete.
    expect(await clock.nextTimer()).toBe(1000);
    clock.fire();
    const e = await error;
    expect(e).toBeInstanceOf(IncompleteReplyError);
    expect(e).toMatchObject({ code: 'NJ_STREAM_BROKEN', partialText: 'Only this' });
    expect((e as Error).message).toMatch(/went silent for 1000 ms mid-reply/);
  });

  // Fails without the stream beginning at admission (NdjsonSink.begin in the gateway's jobs route,
  // asked for by the SDK's EARLY_STREAM_HEADER): the response waits for a first chunk the stalled
  // agent never sends and the SDK arms no timer (shown once with the SDK's header removed: "the
  // stream to begin did not happen within 5000 ms").
  it('silent before the first chunk, while the agent thinks: NJ_STREAM_BROKEN after streamIdleMs', async () => {
    net = await startNet();
    const engine = new StallingEngine([], { slots: 2 });
    await net.addAgent(engine);
    // The client reaches the gateway through a relay the test black-holes.
    relay = await startRecordingProxy(Number(new URL(net.gateway.url).port));
    const clock = new ManualClock();
    const client = new NightjarClient({
      gatewayUrl: `http://127.0.0.1:${relay.port}`,
      trust: { allowSynthetic: true },
      fetch: http.fetch,
      clock,
    });
    const result = client.chat(ask).result.then(
      () => null,
      (e: unknown) => e,
    );
    // The agent has the job and thinks on; the stream began at admission with its first keepalive.
    const began = (): boolean =>
      relay!.connections.some((c) => /x-ndjson[\s\S]*\r\n\r\n1\r\n\n\r\n/.test(Buffer.concat(c.fromTarget).toString('latin1')));
    await onceTrue(engine.onStalled, () => engine.started === 1, 'the agent to start');
    await onceTrue(relay.onForwarded, began, 'the stream to begin');
    relay.blackHole();
    // The one timer left is the idle timeout of the read that will never complete.
    expect(await clock.nextTimer()).toBe(1000);
    clock.fire();
    const e = await result;
    expect(e).toBeInstanceOf(NightjarError);
    expect(e).toMatchObject({ code: 'NJ_STREAM_BROKEN', message: expect.stringMatching(/went silent for 1000 ms/) });
    expect(engine.aborted).toBe(0);
  });
});
