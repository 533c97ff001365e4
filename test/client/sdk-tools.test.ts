/**
 * The SDK's tool fields against a real gateway and a real agent (FakeEngine: the calls are made up
 * here, the path is real): tools, toolChoice, responseFormat and penalties travel sealed to the
 * agent while the header the gateway sees keeps only what it always had, and a reply whose tool
 * calls do not fit the request is refused.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { NightjarClient } from '../../src/client/index.js';
import type { GenerateRequest, GenerateResult } from '../../src/main/agent/index.js';
import type { ToolCall } from '../../src/shared/index.js';
import { FakeEngine } from '../helpers/fake-engine.js';
import { perTestFetch } from '../helpers/http-client.js';
import { FAKE_MODEL, startNet, type TestNet } from './support/net.js';

let net: TestNet | undefined;
afterEach(async () => {
  await net?.close();
  net = undefined;
});
const http = perTestFetch();

/** Answers every request with `calls` (finish reason tool_calls) and keeps what it was asked. */
class CallingEngine extends FakeEngine {
  readonly asked: GenerateRequest[] = [];
  constructor(readonly calls: ToolCall[]) {
    super();
  }
  override async generate(request: GenerateRequest): Promise<GenerateResult> {
    this.asked.push(request);
    return {
      text: '',
      finishReason: 'tool_calls',
      toolCalls: this.calls,
      usage: { promptTokens: 7, completionTokens: 9 },
      timeToFirstTokenMs: 1,
      tokensPerSecond: 100,
    };
  }
}

const PARAMS = { type: 'object', properties: { secret_field_name: { type: 'string' } }, required: ['secret_field_name'] };
const tools = [{ name: 'lookup_owls', description: 'a very private description', parameters: PARAMS }];
const ask = { model: FAKE_MODEL.id, messages: [{ role: 'user' as const, content: 'Find owls.' }], maxTokens: 32 };
const call = { id: 'call_abc', name: 'lookup_owls', arguments: '{"secret_field_name":"x"}' };

/** A client whose POST /v1/jobs bodies (what the gateway receives) are kept. */
function watched(n: TestNet): { client: NightjarClient; jobs: { envelope: { header: Record<string, unknown>; body: string } }[] } {
  const jobs: { envelope: { header: Record<string, unknown>; body: string } }[] = [];
  const f: typeof fetch = (input, init) => {
    const url = String(input instanceof Request ? input.url : input);
    if (url.endsWith('/v1/jobs') && typeof init?.body === 'string') jobs.push(JSON.parse(init.body) as (typeof jobs)[number]);
    return http.fetch(input, init);
  };
  return { client: new NightjarClient({ gatewayUrl: n.gateway.url, trust: { allowSynthetic: true }, fetch: f }), jobs };
}

describe('the SDK with tools', () => {
  it('seals tools, toolChoice, responseFormat and penalties for the agent; the gateway sees the header it always saw', async () => {
    net = await startNet();
    const engine = new CallingEngine([call]);
    await net.addAgent(engine);
    const { client, jobs } = watched(net);
    const result = await client.complete({
      ...ask,
      tools,
      toolChoice: { name: 'lookup_owls' },
      responseFormat: { type: 'json_object' },
      frequencyPenalty: 0.5,
      presencePenalty: 0.25,
    });
    expect(result).toMatchObject({ finishReason: 'tool_calls', text: '', toolCalls: [call] });
    // The agent got every field (it could only have through the sealed body).
    expect(engine.asked[0]).toMatchObject({
      tools,
      toolChoice: { name: 'lookup_owls' },
      responseFormat: { type: 'json_object' },
      sampling: { frequencyPenalty: 0.5, presencePenalty: 0.25, maxTokens: 32 },
    });
    // A plain request's header has the same fields (its reply, calls it did not ask for, is refused:
    // only its header matters here); nothing of the tools is in what the gateway got.
    const again = watched(net);
    await again.client.complete(ask).catch(() => undefined);
    const [withTools, without] = [jobs[0]!, again.jobs[0]!];
    expect(Object.keys(withTools.envelope.header).sort()).toEqual(Object.keys(without.envelope.header).sort());
    expect(withTools.envelope.header).toMatchObject({ model: FAKE_MODEL.id, maxTokens: 32 });
    const seen = JSON.stringify(withTools);
    for (const secret of ['lookup_owls', 'secret_field_name', 'very private', 'json_object', 'Penalty']) expect(seen).not.toContain(secret);
  });

  it('refuses a reply that calls a function the request did not offer, or calls when toolChoice was none', async () => {
    // Fails without the offered-names check in the SDK (client.ts #finish): the call would be returned.
    net = await startNet();
    await net.addAgent(new CallingEngine([{ ...call, name: 'delete_everything' }]));
    const { client } = watched(net);
    const refused = { code: 'NJ_FRAME_UNEXPECTED', message: expect.stringContaining('do not fit the request') };
    await expect(client.complete({ ...ask, tools })).rejects.toMatchObject(refused);
    await expect(
      client.complete({ ...ask, tools: [{ ...tools[0]!, name: 'delete_everything' }], toolChoice: 'none' }),
    ).rejects.toMatchObject(refused);
  });

  it('refuses a call whose arguments are not JSON', async () => {
    // Fails without the arguments check in the SDK (client.ts #finish): the proxies would hand
    // callers arguments that do not parse (the Anthropic one could not even build its input object).
    net = await startNet();
    await net.addAgent(new CallingEngine([{ ...call, arguments: '{"secret_field_name": ' }]));
    const { client } = watched(net);
    await expect(client.complete({ ...ask, tools })).rejects.toMatchObject({
      code: 'NJ_FRAME_UNEXPECTED',
      message: expect.stringContaining('arguments that are not JSON'),
    });
  });
});
