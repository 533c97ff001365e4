/**
 * The honesty checks' arithmetic on their own: the decode rate and its chunk-rate floor, the
 * ceiling table's name matching, the score's decay, the gateway's honesty options, and the
 * in-memory copy of the strikes following the store (a `strikes clear` next to a running gateway).
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CHIP_BANDWIDTH,
  HONESTY_DEFAULTS,
  Honesty,
  SCORE_DEFAULTS,
  chipBandwidth,
  decodeRate,
  openSqliteStore,
  resolveGatewayOptions,
  scoreOf,
  type GatewayStore,
  type JobTiming,
} from '../../src/gateway/index.js';
import { NightjarError } from '../../src/shared/index.js';
import { FakeClock } from './support/fake-clock.js';
import { tempDir } from './support/net.js';

const timing = (over: Partial<JobTiming> = {}): JobTiming => ({
  jobId: 'j',
  model: 'big',
  modelSha256: 'ab'.repeat(32),
  ttftMs: 100,
  decodeMs: 1000,
  tokens: 51,
  chunks: 52,
  ...over,
});

describe('decode rate', () => {
  it('is the tokens after the first over the decode time; untimed when too short', () => {
    expect(decodeRate(timing())).toBe(50);
    expect(decodeRate(timing({ chunks: 2 }))).toBeNull();
    expect(decodeRate(timing({ decodeMs: 0 }))).toBeNull();
  });

  // Fails without the minimum decode time: a 249 ms decode would be timed, and the relay's jitter
  // on such a job is a large part of the figure.
  it('leaves a decode shorter than the minimum untimed (250 ms unless told)', () => {
    expect(decodeRate(timing({ decodeMs: 249, tokens: 13, chunks: 14 }))).toBeNull();
    expect(decodeRate(timing({ decodeMs: 250, tokens: 13, chunks: 14 }))).toBe(48);
    expect(decodeRate(timing({ decodeMs: 100, tokens: 11, chunks: 12 }), 0)).toBe(100);
  });

  // Fails without the chunk-rate floor in decodeRate: a receipt signing 2 tokens for 52 chunks
  // would read as 1 token/s and slip under any ceiling.
  it('never reads below the chunk rate, so a receipt signing fewer tokens cannot hide a fast decode', () => {
    expect(decodeRate(timing({ tokens: 2 }))).toBe(50);
  });
});

describe('the ceiling table', () => {
  it('reads "Apple M2 Pro", "M2 Pro" and stray spaces alike, and has a source for every row', () => {
    expect(chipBandwidth('Apple M2 Pro')?.gbPerSecond).toBe(200);
    expect(chipBandwidth(' apple   m2  pro ')?.gbPerSecond).toBe(200);
    expect(chipBandwidth('M1')?.gbPerSecond).toBe(68.25);
    expect(chipBandwidth('Apple M5 Max')).toBeNull();
    expect(chipBandwidth('Intel(R) Core(TM) i7')).toBeNull();
    for (const row of CHIP_BANDWIDTH) expect(row.source).toMatch(/^(Apple, M\d.*: figure as published.*; checked against \S|Bus figure )/);
  });

  it('never keeps a figure below the bus figure where the bus figure is known (the ceiling must hold)', () => {
    // LPDDR5-6400 on a 1024-bit bus: 819.2 GB/s, which Apple rounds to 800 for the M1 and M2 Ultra.
    for (const chip of ['M1 Ultra', 'M2 Ultra', 'M3 Ultra']) expect(chipBandwidth(chip)?.gbPerSecond).toBe(819.2);
  });
});

describe('the score', () => {
  it('halves with one fresh over-ceiling strike and recovers with the half-life', () => {
    const strikes = [{ reason: 'over-ceiling' as const, at: 0 }];
    expect(scoreOf([], 0, SCORE_DEFAULTS)).toBe(1);
    expect(scoreOf(strikes, 0, SCORE_DEFAULTS)).toBe(0.5);
    expect(scoreOf(strikes, SCORE_DEFAULTS.halfLifeMs, SCORE_DEFAULTS)).toBeCloseTo(1 / 1.5);
    expect(scoreOf([{ reason: 'claim-gap', at: 0 }], 0, SCORE_DEFAULTS)).toBe(0.8);
  });

  // Fails without the cap on client-word strikes (maxClientWordPenalty): a client that disputes
  // 13 honest replies would bar the agent (1 / (1 + 13 × 0.25) < 0.25).
  it('lets strikes on a client’s word alone cost an agent jobs but never bar it', () => {
    const disputes = Array.from({ length: 100 }, () => ({ reason: 'count-disputed' as const, at: 0 }));
    expect(scoreOf(disputes, 0, SCORE_DEFAULTS)).toBe(0.5);
    expect(scoreOf(disputes, 0, SCORE_DEFAULTS)).toBeGreaterThan(SCORE_DEFAULTS.minScore);
    // Proven strikes still add on top of the capped ones.
    expect(scoreOf([...disputes, { reason: 'audit-failed', at: 0 }], 0, SCORE_DEFAULTS)).toBe(0.25);
  });
});

describe('the gateway’s honesty options', () => {
  it('default as documented, each field on its own, and refuse values out of range', () => {
    expect(resolveGatewayOptions({}).honesty).toEqual(HONESTY_DEFAULTS);
    expect(resolveGatewayOptions({ honesty: { minScore: 0.5 } }).honesty).toEqual({ ...HONESTY_DEFAULTS, minScore: 0.5 });
    for (const honesty of [
      { ceilingMargin: 0.9 },
      { claimGapFactor: 1 },
      { minScore: 2 },
      { strikeHalfLifeMs: 0 },
      { claimGapMinSamples: 0 },
    ]) {
      expect(() => resolveGatewayOptions({ honesty })).toThrow(NightjarError);
    }
  });
});

describe('Honesty on a store', () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let store: GatewayStore;
  beforeAll(async () => {
    tmp = await tempDir();
    store = await openSqliteStore({ path: path.join(tmp.dir, 'h.db') });
  });
  afterAll(async () => {
    await store.dispose();
    await tmp.remove();
  });

  it('strikes over the ceiling of a catalogued file only, and follows a clear made in the store by another process', async () => {
    const clock = new FakeClock(1_000_000);
    const sizes = new Map([['big', 40e9]]);
    const honesty = new Honesty({ store: store.strikes, fileBytes: (m) => sizes.get(m) ?? null, clock, refreshMs: 2000 });
    await honesty.reload();
    const agent = { agentId: 'a', chip: 'Apple M2', claimedTokensPerSecond: null };
    // 50 tokens/s of a 40 GB file on 100 GB/s: the ceiling is 3.1.
    expect(honesty.observe(agent, timing()).map((s) => s.reason)).toEqual(['over-ceiling']);
    // An uncatalogued file has no ceiling.
    expect(honesty.observe(agent, timing({ model: 'small' }))).toEqual([]);
    await honesty.whenWritten();
    expect(honesty.score('a')).toBe(0.5);
    // `nightjar gateway strikes clear` in another process: seen once the copy is refreshMs old.
    await store.strikes.clear('a');
    await honesty.refresh();
    expect(honesty.score('a')).toBe(0.5);
    clock.advance(2000);
    await honesty.refresh();
    expect(honesty.score('a')).toBe(1);
  });

  // Fails without claimGapMinMsPerToken: the fast agent's gap (3.3×, but 0.8 ms a token, what a
  // loaded relay adds to each chunk) is struck like the slow one's (3.3×, 7.8 ms a token).
  it('strikes a claim gap only when each token takes claimGapMinMsPerToken longer than claimed', async () => {
    const clock = new FakeClock(1_000_000);
    const honesty = new Honesty({ store: store.strikes, fileBytes: () => null, clock });
    await honesty.reload();
    const run = (agentId: string, claimed: number, measured: number): string[] => {
      const agent = { agentId, chip: 'test', claimedTokensPerSecond: claimed };
      const found: string[] = [];
      // 451 tokens, 452 chunks over 450 / measured seconds (half a second at the fast one's pace: timed).
      const t = timing({ tokens: 451, chunks: 452, decodeMs: (450 / measured) * 1000 });
      for (let i = 0; i < 3; i++) found.push(...honesty.observe(agent, t).map((s) => s.reason));
      return found;
    };
    expect(run('slow', 300, 90)).toEqual(['claim-gap']);
    expect(run('fast', 3000, 900)).toEqual([]);
    await honesty.whenWritten();
  });
});
