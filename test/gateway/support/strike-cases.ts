/**
 * Strike store cases shared by the SQLite suite (strikes.store.test.ts) and the PostgreSQL suite
 * (store.services.test.ts): the same behaviour on both databases.
 */
import { expect, it } from 'vitest';
import type { StoreFactory } from './ledger-cases.js';

/** Registers the strike store cases against `factory`. */
export function strikeCases(factory: StoreFactory): void {
  it('records strikes with numbers only, lists them newest first by agent and age, survives a reopen, and clears', async () => {
    const { store, reopen } = await factory.open();
    const a = await store.strikes.add({
      agentId: 'agent-a',
      reason: 'over-ceiling',
      jobId: 'job-1',
      details: { chip: 'Apple M2', measuredTps: 500, ceilingTps: 111.87 },
      at: 1000,
    });
    await store.strikes.add({ agentId: 'agent-a', reason: 'claim-gap', jobId: null, details: { factor: 25 }, at: 3000 });
    await store.strikes.add({ agentId: 'agent-b', reason: 'claim-gap', jobId: 'job-2', details: {}, at: 2000 });
    await store.dispose();
    const again = await reopen();
    try {
      const listA = await again.strikes.list({ agentId: 'agent-a' });
      expect(listA.map((s) => [s.reason, s.at, s.jobId])).toEqual([
        ['claim-gap', 3000, null],
        ['over-ceiling', 1000, 'job-1'],
      ]);
      expect(listA[1]).toEqual(a);
      expect((await again.strikes.list({ since: 2000 })).map((s) => s.agentId)).toEqual(['agent-a', 'agent-b']);
      expect(await again.strikes.list({ limit: 1 })).toHaveLength(1);
      expect(await again.strikes.clear('agent-a')).toBe(2);
      expect((await again.strikes.list({})).map((s) => s.agentId)).toEqual(['agent-b']);
      expect(await again.strikes.clear()).toBe(1);
      expect(await again.strikes.list({})).toEqual([]);
    } finally {
      await again.dispose();
    }
  });
}

/** Registers the audit store cases against `factory`. */
export function auditCases(factory: StoreFactory): void {
  it('records one audit per job and source with reasons and figures, lists and counts them, survives a reopen', async () => {
    const { store, reopen } = await factory.open();
    const failed = {
      jobId: 'job-1',
      agentId: 'agent-a',
      at: 1000,
      source: 'reveal' as const,
      pass: false,
      findings: [{ reason: 'off-distribution' as const, figures: { rank: 181, topK: 40 } }],
      figures: { tokens: 12 },
    };
    const a = await store.audits.add(failed);
    expect(a).toMatchObject(failed);
    expect(await store.audits.add({ ...failed, pass: true, at: 1001 })).toBeNull();
    await store.audits.add({ ...failed, jobId: 'job-2', pass: true, findings: [], at: 2000 });
    await store.audits.add({ ...failed, jobId: 'job-3', agentId: 'agent-b', at: 3000 });
    await store.dispose();
    const again = await reopen();
    try {
      expect(await again.audits.get('job-1', 'reveal')).toEqual(a);
      expect(await again.audits.get('job-9', 'reveal')).toBeNull();
      expect((await again.audits.list({ agentId: 'agent-a' })).map((x) => [x.jobId, x.pass])).toEqual([
        ['job-2', true],
        ['job-1', false],
      ]);
      expect((await again.audits.list({ failedOnly: true })).map((x) => x.jobId)).toEqual(['job-3', 'job-1']);
      expect(await again.audits.counts()).toEqual([
        { agentId: 'agent-a', passed: 1, failed: 1 },
        { agentId: 'agent-b', passed: 0, failed: 1 },
      ]);
    } finally {
      await again.dispose();
    }
  });
}
