/**
 * A conversation's cache key through the SDK, a real gateway and real agents (FakeEngine: the
 * cache itself is the engine's, tested in test/main/agent/engine/warm-cache.test.ts): the key
 * travels sealed to the agent, the next turn goes to the agent that served the last one while it
 * is free and to another when it is not, and an agent that drains forgets its warm conversations.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { NightjarClient, newCacheKey } from '../../src/client/index.js';
import type { GenerateRequest, GenerateResult } from '../../src/main/agent/index.js';
import { FakeEngine } from '../helpers/fake-engine.js';
import { perTestFetch } from '../helpers/http-client.js';
import { FAKE_MODEL, startNet, type TestNet } from './support/net.js';

let net: TestNet | undefined;
afterEach(async () => {
  await net?.close();
  net = undefined;
});
const http = perTestFetch();

/** One slot; keeps what it was asked; a request whose last message is 'hold' waits for release(). */
class HoldingEngine extends FakeEngine {
  readonly asked: GenerateRequest[] = [];
  forgotten = 0;
  #release: (() => void) | undefined;
  #held: (() => void) | undefined;
  /** Resolves when a 'hold' request is waiting. */
  readonly holding = new Promise<void>((resolve) => (this.#held = resolve));

  constructor() {
    super({ slots: 1 });
  }

  release(): void {
    this.#release?.();
  }

  override async generate(request: GenerateRequest): Promise<GenerateResult> {
    this.asked.push(request);
    if (request.messages.at(-1)?.content !== 'hold') return super.generate(request);
    this.busy++;
    try {
      await new Promise<void>((resolve) => {
        this.#release = resolve;
        this.#held?.();
      });
    } finally {
      this.busy--;
    }
    return {
      text: 'held',
      finishReason: 'stop',
      usage: { promptTokens: 1, completionTokens: 1 },
      timeToFirstTokenMs: 1,
      tokensPerSecond: 1,
    };
  }

  async forgetConversations(): Promise<void> {
    this.forgotten++;
  }
}

/** A client whose POST /v1/jobs bodies (what the gateway receives) are kept. */
function watched(n: TestNet): { client: NightjarClient; bodies: string[] } {
  const bodies: string[] = [];
  const f: typeof fetch = (input, init) => {
    const url = String(input instanceof Request ? input.url : input);
    if (url.endsWith('/v1/jobs') && typeof init?.body === 'string') bodies.push(init.body);
    return http.fetch(input, init);
  };
  return { client: new NightjarClient({ gatewayUrl: n.gateway.url, trust: { allowSynthetic: true }, fetch: f }), bodies };
}

const turn = (content: string, cacheKey?: string) => ({
  model: FAKE_MODEL.id,
  messages: [{ role: 'user' as const, content }],
  maxTokens: 8,
  ...(cacheKey === undefined ? {} : { cacheKey }),
});

describe('a conversation cache key in the SDK', () => {
  it('is sealed for the agent and never in what the gateway sees', async () => {
    net = await startNet();
    const engine = new HoldingEngine();
    await net.addAgent(engine);
    const { client, bodies } = watched(net);
    const key = newCacheKey();
    expect(key).toMatch(/^[A-Za-z0-9_-]{43}$/);
    await client.complete(turn('Hello.', key));
    expect(engine.asked[0]!.cacheKey).toBe(key);
    expect(bodies).toHaveLength(1);
    expect(bodies[0]).not.toContain(key);
    await expect(client.complete(turn('Hello.', 'too-short'))).rejects.toMatchObject({ code: 'NJ_BAD_REQUEST' });
  });

  it('sends the next turn to the agent that served the last one while it is free, and to another when it is not', async () => {
    net = await startNet();
    const engines = [new HoldingEngine(), new HoldingEngine()];
    for (const e of engines) await net.addAgent(e);
    const { client } = watched(net);
    const byEngine = new Map(net.agents.map((a, i) => [a.agentId, engines[i]!]));

    // The gateway's own pick takes a held job, so the conversation starts on the other agent.
    const hold = client.complete(turn('hold'));
    await Promise.race(engines.map((e) => e.holding));
    const key = newCacheKey();
    const first = await client.complete(turn('Hi.', key));
    const held = engines.find((e) => e.asked.some((r) => r.messages[0]!.content === 'hold'))!;
    expect(byEngine.get(first.agentId)).not.toBe(held);
    held.release();
    await hold;

    // Both free now. Without a key the gateway picks the other agent (its ranking): so a
    // conversation's turn lands on its own agent only because the SDK sealed it for that one
    // first (seen failing without the preference).
    const control = await client.complete(turn('Hi.'));
    expect(control.agentId).not.toBe(first.agentId);
    for (let i = 0; i < 3; i++) expect((await client.complete(turn(`Turn ${i}.`, key))).agentId).toBe(first.agentId);

    // Its agent busy (a held turn of this conversation), the next turn fails over to the other.
    const warm = byEngine.get(first.agentId)!;
    const busy = client.complete(turn('hold', key));
    await warm.holding;
    const fallback = await client.complete(turn('Meanwhile.', key));
    expect(fallback.agentId).not.toBe(first.agentId);
    warm.release();
    await busy;
  });

  it('an agent that drains forgets its warm conversations', async () => {
    net = await startNet();
    const engine = new HoldingEngine();
    const agent = await net.addAgent(engine);
    await watched(net).client.complete(turn('Hello.', newCacheKey()));
    expect(engine.forgotten).toBe(0);
    await agent.agent.drain(0);
    expect(engine.forgotten).toBe(1);
  });
});
