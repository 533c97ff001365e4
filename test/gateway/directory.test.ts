/**
 * The directory's arithmetic, on plain entries: free slots corrected for jobs since the last
 * heartbeat, eligibility (model, trust, state, challenge, binding for paid jobs), ranking by
 * expected latency, and failure penalties that fade with their half-life.
 */
import { describe, expect, it } from 'vitest';
import { Directory, newHealth, type DirectoryEntry, type FileCatalog } from '../../src/gateway/index.js';
import type { VerifiedBundle } from '../../src/shared/index.js';

function entry(id: string, over: Partial<DirectoryEntry> & { fresh?: boolean; synthetic?: boolean; sha256?: string } = {}): DirectoryEntry {
  const bundle = {
    bundle: {
      agentId: id,
      notAfter: 1_000_000,
      models: [{ id: 'm', sha256: over.sha256 ?? 'a'.repeat(64), synthetic: over.synthetic ?? false, contextLength: 1 }],
      capacity: { slots: 4 },
    },
  } as unknown as VerifiedBundle;
  return {
    agentId: id,
    bundle,
    trust: 'signed',
    status: { state: 'serving', model: 'm', freeSlots: 4, totalSlots: 4, tokensPerSecond: 20, ttftMs: 100 },
    inFlight: 0,
    inFlightAtStatus: 0,
    connectedAt: 0,
    lastSeenAt: 0,
    challengedAt: 0,
    challengeFresh: () => over.fresh ?? true,
    operatorId: 'op',
    accepting: true,
    health: newHealth(0),
    ...over,
  };
}

describe('directory', () => {
  it('corrects the last heartbeat for jobs dispatched and ended since', () => {
    const d = new Directory();
    const e = entry('a', {
      status: { state: 'serving', model: 'm', freeSlots: 1, totalSlots: 4, tokensPerSecond: 20, ttftMs: 100 },
      inFlight: 3,
      inFlightAtStatus: 3,
    });
    d.set(e);
    expect(d.freeSlots(e)).toBe(1);
    e.inFlight = 1; // two ended since the heartbeat
    expect(d.freeSlots(e)).toBe(3);
    e.inFlight = 4; // one more dispatched than the agent had free
    expect(d.freeSlots(e)).toBe(0);
  });

  it('admits only serving, fresh, accepting agents of the model, and only bound ones for paid jobs', () => {
    const d = new Directory();
    const needs = { model: 'm', now: 0 };
    expect(d.eligible(entry('a'), needs)).toBe(true);
    expect(d.eligible(entry('a', { fresh: false }), needs)).toBe(false);
    expect(d.eligible(entry('a', { accepting: false }), needs)).toBe(false);
    expect(
      d.eligible(
        entry('a', { status: { state: 'draining', model: 'm', freeSlots: 4, totalSlots: 4, tokensPerSecond: 1, ttftMs: 1 } }),
        needs,
      ),
    ).toBe(false);
    expect(d.eligible(entry('a'), { ...needs, model: 'other' })).toBe(false);
    expect(d.eligible(entry('a'), { ...needs, minTrust: 'attested' })).toBe(false);
    expect(d.eligible(entry('a', { operatorId: null }), { ...needs, paid: true })).toBe(false);
    expect(d.eligible(entry('a', { operatorId: null }), needs)).toBe(true);
    expect(d.eligible(entry('a'), { ...needs, now: 1_000_000 })).toBe(false); // its bundle expired
    // On its own (OPEN_CATALOG) a directory offers every file, whatever its synthetic flag.
    expect(d.eligible(entry('a', { synthetic: true }), needs)).toBe(true);
  });

  // Fails if eligibility went by the file's own flag or by the model id alone (serves() ignoring the catalog).
  it('offers files as the catalog says: a listed id only from its listed files, an unlisted id as configured', () => {
    const listed = new Map([['m', new Set(['c'.repeat(64)])]]);
    const catalog = (serveUncatalogued: boolean): FileCatalog => ({
      lists: (id) => listed.has(id),
      catalogued: (id, sha) => listed.get(id)?.has(sha) ?? false,
      offers: (id, sha) => (listed.has(id) ? (listed.get(id)?.has(sha) ?? false) : serveUncatalogued),
    });
    const d = new Directory({ catalog: catalog(true) });
    const good = entry('a', { sha256: 'c'.repeat(64) });
    const fake = entry('b', { sha256: 'd'.repeat(64), synthetic: false });
    const needs = { model: 'm', now: 0 };
    expect([d.eligible(good, needs), d.eligible(fake, needs)]).toEqual([true, false]);
    expect([d.eligible(good, { ...needs, catalogued: true }), d.eligible(fake, { ...needs, catalogued: true })]).toEqual([true, false]);
    d.set(good);
    d.set(fake);
    expect(d.models(0)).toEqual([{ id: 'm', synthetic: false, catalogued: true, agents: 1, freeSlots: 4 }]);
    // An id the catalog does not list: offered (free) only where uncatalogued files are served.
    listed.clear();
    expect(d.eligible(fake, needs)).toBe(true);
    expect(d.eligible(fake, { ...needs, catalogued: true })).toBe(false);
    expect(d.models(0)).toEqual([{ id: 'm', synthetic: false, catalogued: false, agents: 2, freeSlots: 8 }]);
    const strict = new Directory({ catalog: catalog(false) });
    strict.set(fake);
    expect([strict.eligible(fake, needs), strict.knows('m'), strict.models(0)]).toEqual([false, false, []]);
  });

  it('ranks free before busy, then by expected latency; a failure ranks an agent lower until it fades', () => {
    // What the gateway measured (the agents' own claims are the other way round and do not count).
    const measured = new Map([
      ['b', { tokensPerSecond: 100, ttftMs: 50 }],
      ['a', { tokensPerSecond: 5, ttftMs: 900 }],
    ]);
    const d = new Directory({ failurePenaltyMs: 5000, failureHalfLifeMs: 60_000, measured: (id) => measured.get(id) });
    const fast = entry('b', { status: { state: 'serving', model: 'm', freeSlots: 4, totalSlots: 4, tokensPerSecond: 5, ttftMs: 900 } });
    const slow = entry('a', { status: { state: 'serving', model: 'm', freeSlots: 4, totalSlots: 4, tokensPerSecond: 100, ttftMs: 50 } });
    const busy = entry('c', {
      status: { state: 'serving', model: 'm', freeSlots: 0, totalSlots: 4, tokensPerSecond: 500, ttftMs: 1 },
      inFlight: 4,
      inFlightAtStatus: 4,
    });
    for (const e of [fast, slow, busy]) d.set(e);
    const order = (now: number): string[] => d.candidates({ model: 'm', now }, 3).map((e) => e.agentId);
    expect(order(0)).toEqual(['b', 'a', 'c']);
    d.recordFailure(fast, 0);
    expect(d.failureScore(fast, 0)).toBe(1);
    expect(order(0)).toEqual(['a', 'b', 'c']);
    expect(d.failureScore(fast, 60_000)).toBeCloseTo(0.5);
    expect(order(10 * 60_000)).toEqual(['b', 'a', 'c']);
    // The gateway's own measurement of time to first chunk outranks what the agent reports.
    d.recordFirstChunk(slow, 10);
    expect(d.expectedLatencyMs(slow, 0)).toBe(10);
  });

  it("ranks on the gateway's measured speed, not the claimed one; a lower score ranks lower, below minScore not at all", () => {
    const scores = new Map<string, number>();
    const measured = new Map([
      ['honest', { tokensPerSecond: 40, ttftMs: 100 }],
      ['boaster', { tokensPerSecond: 10, ttftMs: 400 }],
    ]);
    const d = new Directory({ measured: (id) => measured.get(id), score: (id) => scores.get(id) ?? 1, minScore: 0.25 });
    const status = { state: 'serving' as const, model: 'm', freeSlots: 4, totalSlots: 4, ttftMs: 1 };
    const honest = entry('honest', { status: { ...status, tokensPerSecond: 40 } });
    const boaster = entry('boaster', { status: { ...status, tokensPerSecond: 500 } });
    d.set(honest);
    d.set(boaster);
    const order = (): string[] => d.candidates({ model: 'm', now: 0 }, 2).map((e) => e.agentId);
    // Fails without routing on measured figures: the boaster's claimed 1 ms to first token would rank it first.
    expect(order()).toEqual(['honest', 'boaster']);
    measured.set('boaster', { tokensPerSecond: 80, ttftMs: 50 });
    expect(order()).toEqual(['boaster', 'honest']);
    // Fails without the score in the ranking: a score of ½ ranks it as if its jobs took twice as long.
    scores.set('boaster', 0.5);
    expect(d.expectedLatencyMs(boaster, 0)).toBeCloseTo(50 + (50 + (256 / 80) * 1000));
    expect(order()).toEqual(['honest', 'boaster']);
    // Fails without the floor in eligibility: below minScore the agent gets no job at all.
    scores.set('boaster', 0.2);
    expect(d.eligible(boaster, { model: 'm', now: 0 })).toBe(false);
    expect(order()).toEqual(['honest']);
  });

  it('ranks an agent whose machine is short of memory below an equal one that is not', () => {
    const d = new Directory({ pressurePenaltyMs: 10_000 });
    const status = { state: 'serving' as const, model: 'm', freeSlots: 4, totalSlots: 4, tokensPerSecond: 20, ttftMs: 100 };
    const calm = entry('b', { status: { ...status, memoryPressure: 'normal' } });
    const tight = entry('a', { status: { ...status, memoryPressure: 'warn' } });
    const swapping = entry('0', { status: { ...status, memoryPressure: 'critical' } });
    for (const e of [swapping, tight, calm]) d.set(e);
    expect(d.candidates({ model: 'm', now: 0 }, 3).map((e) => e.agentId)).toEqual(['b', 'a', '0']);
    expect(d.expectedLatencyMs(swapping, 0) - d.expectedLatencyMs(calm, 0)).toBe(10_000);
    expect(d.expectedLatencyMs(tight, 0) - d.expectedLatencyMs(calm, 0)).toBe(1000);
    // Still a candidate: pressure ranks, it does not exclude.
    expect(d.eligible(swapping, { model: 'm', now: 0 })).toBe(true);
  });
});
