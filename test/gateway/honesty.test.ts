/**
 * The gateway's own timing of jobs, the physical ceiling and strikes, through a real gateway on a
 * real SQLite file with scripted agents (RawAgent speaks the real protocol with real keys). The
 * gateway's clock is a fake one the test moves between an agent's first chunk and the rest, so
 * every measured rate is exact; a heartbeat sent after the first chunk is the barrier that says
 * the gateway has read it (frames on one socket are handled in order).
 *
 * The numbers: REAL_FILE is 1 117 320 736 bytes. An "Apple M2" (100 GB/s) streams it at most
 * 89.5 times a second, so its ceiling with the 1.25 margin is 111.9 tokens/s; an "Apple M2 Max"
 * (400 GB/s) 447.5 tokens/s.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ceilingTokensPerSecond, type Gateway, type Strike } from '../../src/gateway/index.js';
import { nextEvent, operatorAgentsResponseSchema } from '../../src/shared/index.js';
import { perTestFetch } from '../helpers/http-client.js';
import { agentServing } from '../helpers/network.js';
import { FakeClock } from './support/fake-clock.js';
import { REAL_FILE, REAL_MODEL, clientOf, startBilledNetwork, tempDir, type BilledNetwork } from './support/net.js';
import { RawAgent } from './support/raw-agent.js';

const http = perTestFetch();
let tmp: Awaited<ReturnType<typeof tempDir>>;
let net: BilledNetwork;
let clock: FakeClock;
const raws: RawAgent[] = [];

beforeEach(async () => {
  tmp = await tempDir();
  clock = new FakeClock();
  // Challenges and heartbeats far apart: this clock only moves when the test moves it.
  net = await startBilledNetwork(tmp.dir, { clock, challengeIntervalMs: 3_600_000, heartbeatMs: 3_600_000 });
});
afterEach(async () => {
  await Promise.all(raws.splice(0).map((r) => r.close()));
  await net.close();
  await tmp.remove();
});

const ask = { model: REAL_MODEL.id, messages: [{ role: 'user' as const, content: 'hi' }], maxTokens: 256 };
const words = (n: number): string[] => Array.from({ length: n }, (_, i) => ` w${i}`);
const WORDS = words(11);
/** 126 chunks: timed over 250 ms, 500 tokens/s. */
const FAST = words(126);

async function agent(chip: string, claimedTokensPerSecond = 50): Promise<RawAgent> {
  const raw = await RawAgent.connect({
    url: net.gateway.agentUrl,
    model: REAL_MODEL,
    enrollToken: await net.enrollToken(),
    chip,
    claimedTokensPerSecond,
  });
  raws.push(raw);
  await agentServing(net.gateway, raw.agentId, 2000);
  return raw;
}

/** Waits until the gateway has handled a heartbeat `raw` sends now (and so every frame before it). */
async function barrier(gw: Gateway, raw: RawAgent): Promise<void> {
  const heard = nextEvent(gw.directory.onAgentChanged, (e) => e.agentId === raw.agentId, { timeoutMs: 5000 });
  raw.status();
  await heard;
}

/**
 * One job from a client: whichever of `agents` gets it serves `text` (WORDS unless told: 11 chunks
 * of one token, then the closing chunk), the first `ttftMs` after dispatch and the rest over
 * `decodeMs` on the gateway's clock. Resolves with the agent that served it.
 */
async function job(agents: RawAgent[], ttftMs: number, decodeMs: number, text = WORDS): Promise<RawAgent> {
  const stream = clientOf(net.gateway, http.fetch, net.key.key).chat(ask);
  const stop = new AbortController();
  const frames = agents.map((a) => a.next('job', 10_000, stop.signal).then((f) => ({ a, f })));
  for (const p of frames) p.catch(() => undefined);
  const { a, f } = await Promise.race(frames);
  stop.abort();
  const served = await a.serve(f, text, undefined, {
    beforeFirst: () => clock.advance(ttftMs),
    afterFirst: async () => {
      await barrier(net.gateway, a);
      clock.advance(decodeMs);
    },
  });
  served.finish();
  await stream.result;
  await net.gateway.honesty.whenWritten();
  return a;
}

async function strikes(agentId: string): Promise<Strike[]> {
  return net.store.strikes.list({ agentId });
}

describe('the physical ceiling', () => {
  it('the table gives the ceiling the comment above says', () => {
    expect(ceilingTokensPerSecond('Apple M2', REAL_FILE.bytes)).toBeCloseTo(111.87, 1);
    expect(ceilingTokensPerSecond('Apple M2 Max', REAL_FILE.bytes)).toBeCloseTo(447.5, 0);
    expect(ceilingTokensPerSecond('test', REAL_FILE.bytes)).toBeNull();
    expect(ceilingTokensPerSecond('Apple M2', null)).toBeNull();
  });

  // Fails without the ceiling check in Honesty.observe (no strike is recorded, and the cheat keeps
  // getting jobs), and without the score floor in Directory.eligible (the fourth strike does not
  // bar it: the fifth job still goes to it).
  it('an agent decoding faster than its chip allows is struck on each job, its score falls, then no jobs; an honest one none', async () => {
    const cheat = await agent('Apple M2');
    // 125 tokens after the first in 250 ms: 500 tokens/s, where 111.9 is the most an M2 can do.
    const scores: number[] = [];
    for (let i = 0; i < 4; i++) {
      expect(await job([cheat], 50, 250, FAST)).toBe(cheat);
      scores.push(net.gateway.honesty.score(cheat.agentId));
    }
    const struck = await strikes(cheat.agentId);
    expect(struck.map((s) => s.reason)).toEqual(['over-ceiling', 'over-ceiling', 'over-ceiling', 'over-ceiling']);
    expect(struck[0]!.details).toMatchObject({ chip: 'Apple M2', measuredTps: 500, ceilingTps: 111.87, modelBytes: REAL_FILE.bytes });
    expect(scores.map((s) => Math.round(s * 100) / 100)).toEqual([0.5, 0.33, 0.25, 0.2]);
    expect(net.gateway.directory.eligible(net.gateway.directory.get(cheat.agentId)!, { model: REAL_MODEL.id, now: clock.now() })).toBe(
      false,
    );
    // No agent left for the model: the client is told there is no capacity.
    const refused = await http.fetch(`${net.gateway.url}/v1/candidates?model=${REAL_MODEL.id}`, {
      headers: { authorization: `Bearer ${net.key.key}` },
    });
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('NJ_NO_CAPACITY');
    // The operator sees the score and each strike with its reason and numbers.
    const res = await http.fetch(`${net.gateway.url}/v1/operator/agents`, { headers: { authorization: `Bearer ${net.operator.token}` } });
    const view = operatorAgentsResponseSchema.parse(await res.json()).agents.find((v) => v.agentId === cheat.agentId)!;
    expect(view).toMatchObject({ routable: false, score: expect.closeTo(0.2, 3), measuredTokensPerSecond: 500, tokensPerSecond: 50 });
    expect(view.strikes.map((s) => [s.reason, s.details.measuredTps])).toEqual(Array(4).fill(['over-ceiling', 500]));

    // An honest M2 Max at 50 tokens/s (20 tokens in 400 ms) beside it: every job goes to it, no strike.
    const honest = await agent('Apple M2 Max');
    for (let i = 0; i < 5; i++) expect(await job([cheat, honest], 30, 400, words(21))).toBe(honest);
    expect(await strikes(honest.agentId)).toEqual([]);
    expect(net.gateway.honesty.score(honest.agentId)).toBe(1);
    expect(net.gateway.honesty.measured(honest.agentId, REAL_MODEL.id)).toMatchObject({ tokensPerSecond: 50, samples: 5 });

    // The operator clears the strikes: the agent is routable again.
    await net.gateway.honesty.clear(cheat.agentId);
    expect(net.gateway.honesty.score(cheat.agentId)).toBe(1);
    expect(await strikes(cheat.agentId)).toEqual([]);
  });

  it('a score decays with the half-life on the gateway clock', async () => {
    const cheat = await agent('Apple M2');
    await job([cheat], 50, 250, FAST);
    expect(net.gateway.honesty.score(cheat.agentId)).toBeCloseTo(0.5);
    clock.advance(86_400_000);
    expect(net.gateway.honesty.score(cheat.agentId)).toBeCloseTo(1 / 1.5);
  });
});

describe('measured speed', () => {
  // Fails without the claim-gap check in Honesty.observe (no strike). The order below follows the
  // measured time to first chunk; that the claimed figures do not rank at all is directory.test.ts's
  // (it fails when expectedLatencyMs falls back to the claimed time to first token).
  it('an agent claiming 500 tokens/s while delivering 20 is timed by the gateway, routed on that, and struck for the gap', async () => {
    const boaster = await agent('test', 500);
    // 10 tokens after the first in 500 ms: 20 tokens/s; 400 ms to the first chunk.
    for (let i = 0; i < 2; i++) await job([boaster], 400, 500);
    expect(await strikes(boaster.agentId)).toEqual([]);
    await job([boaster], 400, 500);
    const struck = await strikes(boaster.agentId);
    expect(struck.map((s) => s.reason)).toEqual(['claim-gap']);
    expect(struck[0]!.details).toMatchObject({ claimedTps: 500, measuredTps: 20, factor: 25 });
    expect(net.gateway.honesty.measured(boaster.agentId, REAL_MODEL.id)).toMatchObject({ tokensPerSecond: 20, ttftMs: 400, samples: 3 });

    // An honest agent that claims what it does (50 tokens/s, 30 ms to first chunk, once measured).
    const honest = await agent('test', 50);
    expect(await job([boaster, honest], 30, 400, words(21))).toBe(honest);
    const d = net.gateway.directory;
    const order = d.candidates({ model: REAL_MODEL.id, paid: true, catalogued: true, now: clock.now() }, 2).map((e) => e.agentId);
    expect(order).toEqual([honest.agentId, boaster.agentId]);
    for (let i = 0; i < 4; i++) expect(await job([boaster, honest], 30, 400, words(21))).toBe(honest);
    expect(await strikes(honest.agentId)).toEqual([]);
  });

  // Fails without the minimum decode time in decodeRate: these jobs read as 100 tokens/s against a
  // claim of 500 (a gap of 5) and as over an M2's ceiling, and the agent is struck for each. The
  // figures of such short jobs are mostly the relay's own jitter.
  it('does not time, measure or strike on decodes shorter than the minimum', async () => {
    const quick = await agent('Apple M2', 500);
    for (let i = 0; i < 4; i++) await job([quick], 30, 100, words(11));
    for (let i = 0; i < 4; i++) await job([quick], 30, 200, FAST);
    expect(await strikes(quick.agentId)).toEqual([]);
    expect(net.gateway.honesty.measured(quick.agentId, REAL_MODEL.id)).toMatchObject({ tokensPerSecond: 0, samples: 0 });
  });
});
