/**
 * The dashboard's pure parts (and the shared view helpers the tray uses too): credits and tokens
 * as people read them, earnings per period and per day across time zones, whether a model fits,
 * schedule windows (overnight ones), chart geometry, and the security checks with what to do.
 */
import { describe, expect, it } from 'vitest';
import { layoutChart, niceTicks } from '../../src/renderer/model/chart.js';
import { checkSchedule, describeDays, describeWindow, isOvernight } from '../../src/renderer/model/schedule.js';
import { securityChecks, trustSummary } from '../../src/renderer/model/security.js';
import {
  dayIn,
  daysBefore,
  earningsByDay,
  earningsByModel,
  earningsPeriods,
  formatCredits,
  formatBytes,
  formatTokens,
  modelFit,
  type AgentStatusSnapshot,
  type EarningsSummary,
} from '../../src/shared/index.js';

describe('credits and sizes', () => {
  it('credits are exact by default and short in compact style; null is a dash', () => {
    expect(formatCredits('0')).toBe('0');
    expect(formatCredits('51')).toBe('0.000051');
    expect(formatCredits('12500000')).toBe('12.5');
    expect(formatCredits('1234567890123')).toBe('1,234,567.890123');
    expect(formatCredits(-2_000_000n)).toBe('-2');
    expect(formatCredits('123456', 'compact')).toBe('0.12');
    expect(formatCredits('999999999', 'compact')).toBe('999.99');
    expect(formatCredits('1234567890', 'compact')).toBe('1,234');
    expect(formatCredits(null)).toBe('—');
  });

  it('tokens and bytes', () => {
    expect([formatTokens(950), formatTokens(4200), formatTokens(12_345), formatTokens(4_100_000)]).toEqual(['950', '4.2k', '12k', '4.1M']);
    expect([formatBytes(512), formatBytes(428 * 1024), formatBytes(7.5 * 1024 ** 3), formatBytes(16 * 1024 ** 3)]).toEqual([
      '512 B',
      '428 KB',
      '7.5 GB',
      '16 GB',
    ]);
  });
});

const summary = (rows: EarningsSummary['rows'], timeZone = 'UTC'): EarningsSummary => ({
  v: 1,
  timeZone,
  priceSource: 'config',
  rows,
  totals: { jobs: 0, promptTokens: 0, completionTokens: 0, microCredits: null },
  rejectedLines: 0,
});
const row = (date: string, model: string, jobs: number, microCredits: string | null, completionTokens = 10 * jobs) => ({
  date,
  model,
  jobs,
  promptTokens: 5 * jobs,
  completionTokens,
  microCredits,
});

describe('earnings', () => {
  const now = Date.parse('2026-03-31T10:00:00Z');
  const s = summary([
    row('2026-03-31', 'a', 2, '200'),
    row('2026-03-31', 'b', 1, '50'),
    row('2026-03-25', 'a', 4, '400'),
    row('2026-03-24', 'a', 1, '100'),
    row('2026-03-02', 'b', 3, '300'),
    row('2026-02-28', 'b', 9, '900'),
  ]);

  it('today, the last 7 days and the last 30 days include today', () => {
    const p = earningsPeriods(s, now);
    expect(p.today).toEqual({ jobs: 3, promptTokens: 15, completionTokens: 30, microCredits: '250' });
    expect(p.week.jobs).toBe(3 + 4); // 03-25 … 03-31
    expect(p.month.jobs).toBe(3 + 4 + 1 + 3); // 03-02 … 03-31
    expect(p.month.microCredits).toBe('1050');
  });

  it('an unpriced row makes the period’s credits unknown, not smaller', () => {
    expect(earningsPeriods(summary([row('2026-03-31', 'a', 1, '10'), row('2026-03-31', 'x', 1, null)]), now).today.microCredits).toBeNull();
  });

  it('days are counted in the summary’s time zone, across a daylight-saving change', () => {
    // 2026-03-29 01:30 UTC is 03:30 in Paris, after the clocks went forward.
    expect(dayIn(Date.parse('2026-03-28T23:30:00Z'), 'Europe/Paris')).toBe('2026-03-29');
    expect(dayIn(Date.parse('2026-03-28T23:30:00Z'), 'America/Los_Angeles')).toBe('2026-03-28');
    expect(daysBefore('2026-03-30', 1)).toBe('2026-03-29');
    expect(daysBefore('2026-03-01', 1)).toBe('2026-02-28');
    const days = earningsByDay(s, 7, now);
    expect(days.map((d) => d.date)).toEqual([
      '2026-03-25',
      '2026-03-26',
      '2026-03-27',
      '2026-03-28',
      '2026-03-29',
      '2026-03-30',
      '2026-03-31',
    ]);
    expect(days[6]!.byModel).toEqual({ a: 200n, b: 50n });
    expect(days[1]!.byModel).toEqual({});
  });

  it('per model, most jobs first', () => {
    expect(earningsByModel(s).map((m) => [m.model, m.jobs, m.microCredits])).toEqual([
      ['b', 13, '1250'],
      ['a', 7, '700'],
    ]);
  });
});

describe('chart', () => {
  it('ticks are 1, 2 or 5 × 10ⁿ apart and reach the maximum', () => {
    expect(niceTicks(0.000478)).toEqual([0, 0.0002, 0.0004, 0.0006]);
    expect(niceTicks(37)).toEqual([0, 10, 20, 30, 40]);
    expect(niceTicks(100)).toEqual([0, 50, 100]);
    expect(niceTicks(0)).toEqual([0, 1]);
  });

  it('stacks models per day, in credits when priced and in tokens when not', () => {
    const now = Date.parse('2026-03-31T10:00:00Z');
    const priced = layoutChart(
      earningsByDay(summary([row('2026-03-31', 'a', 2, '2000000'), row('2026-03-31', 'b', 1, '1000000')]), 3, now),
    );
    expect(priced.unit).toBe('credits');
    expect(priced.models).toEqual(['a', 'b']);
    const [a, b] = priced.segments;
    expect([a!.value, b!.value]).toEqual([2, 1]);
    expect(b!.y + b!.height).toBeCloseTo(a!.y); // b sits on a
    const unpriced = layoutChart(earningsByDay(summary([row('2026-03-30', 'a', 1, null, 300)]), 3, now));
    expect(unpriced.unit).toBe('tokens');
    expect(unpriced.segments.map((x) => [x.date, x.value])).toEqual([['2026-03-30', 300]]);
  });
});

describe('models that fit', () => {
  const mem = { totalBytes: 16 * 1024 ** 3, availableBytes: 6 * 1024 ** 3 };
  it('by stated minimum, else the file size plus a fifth', () => {
    expect(modelFit(4 * 1024 ** 3, null, mem)).toBe('fits');
    expect(modelFit(8 * 1024 ** 3, null, mem)).toBe('tight');
    expect(modelFit(32 * 1024 ** 3, null, mem)).toBe('too-big');
    expect(modelFit(null, 14 * 1024 ** 3, mem)).toBe('too-big');
    expect(modelFit(null, null, mem)).toBe('unknown');
    expect(modelFit(1, 1, null)).toBe('unknown');
  });
});

describe('schedule', () => {
  it('reads windows as sentences, overnight ones included', () => {
    expect(describeDays(['mon', 'tue', 'wed', 'thu', 'fri'])).toBe('Mon–Fri');
    expect(describeDays(['sat', 'sun'])).toBe('Sat, Sun');
    expect(describeDays(['mon', 'wed', 'thu', 'fri'])).toBe('Mon, Wed–Fri');
    expect(describeWindow({ days: ['mon', 'tue', 'wed', 'thu', 'fri'], start: '22:00', end: '07:00' })).toBe(
      'Mon–Fri 22:00 → 07:00 the next day',
    );
    expect(describeWindow({ days: ['sat'], start: '09:00', end: '17:30' })).toBe('Sat 09:00 → 17:30');
    expect(describeWindow({ days: ['sun'], start: '00:00', end: '00:00' })).toBe('Sun, all day');
    expect(isOvernight({ start: '23:30', end: '06:45' })).toBe(true);
    expect(isOvernight({ start: '00:00', end: '00:00' })).toBe(false);
  });

  it('checks a draft before it is sent, naming the window', () => {
    expect(checkSchedule([{ days: ['sun', 'mon'], start: '22:00', end: '07:00' }])).toEqual({
      ok: true,
      schedule: [{ days: ['mon', 'sun'], start: '22:00', end: '07:00' }],
    });
    expect(checkSchedule([{ days: [], start: '25:00', end: '' }])).toEqual({
      ok: false,
      problems: [
        'Window 1: pick at least one day.',
        'Window 1: the start must be a time such as 22:00.',
        'Window 1: the end must be a time such as 07:00.',
      ],
    });
  });
});

function status(extra: Partial<AgentStatusSnapshot> = {}): AgentStatusSnapshot {
  return {
    v: 1,
    agentId: 'a'.repeat(32),
    state: 'serving',
    since: 0,
    reason: null,
    decision: null,
    manual: { mode: 'auto', until: null },
    link: 'connected',
    gatewayUrl: 'wss://gw.example/v1/agent',
    gateway: { enrollToken: true, operator: 'op_1', trust: 'signed', rejected: null },
    model: { id: 'qwen', sha256: 'ab'.repeat(32), synthetic: false, loaded: true },
    totalSlots: 4,
    freeSlots: 4,
    activeJobs: 0,
    jobsServed: 0,
    tokensPerSecond: 0,
    ttftMs: 0,
    environment: null,
    security: {
      keyStore: 'keychain',
      platform: { os: 'darwin', osVersion: '25', arch: 'arm64', chip: 'Apple M3', memoryBytes: 1 },
      posture: { sip: null, hardenedRuntime: null, debuggerDenied: null, secureEnclave: false, appVersion: '0.1.0', appHash: null },
    },
    ...extra,
  };
}

describe('security checks', () => {
  const byId = (s: AgentStatusSnapshot) => Object.fromEntries(securityChecks(s).map((c) => [c.id, c]));

  it('today’s agent: link and admission fine, the hardening unchecked (no native addon), not a released build', () => {
    const c = byId(status());
    expect(Object.fromEntries(Object.entries(c).map(([k, v]) => [k, v.result]))).toEqual({
      'gateway-tls': 'ok',
      'gateway-admission': 'ok',
      'key-store': 'ok',
      sip: 'unknown',
      'hardened-runtime': 'unknown',
      debugger: 'unknown',
      'secure-enclave': 'unknown',
      'app-hash': 'warn',
      model: 'ok',
    });
    expect(trustSummary(status()).level).toBe('Signed');
  });

  it('every failing item says what to do', () => {
    const bad = status({
      gatewayUrl: 'ws://gw.example/v1/agent',
      gateway: {
        enrollToken: true,
        operator: null,
        trust: null,
        rejected: { code: 'NJ_ENROLL_INVALID', message: 'the enrollment token has expired' },
      },
      model: { id: 'synthetic-tiny', sha256: 'ab'.repeat(32), synthetic: true, loaded: true },
      security: {
        keyStore: 'plaintext-file',
        platform: status().security.platform,
        posture: { sip: false, hardenedRuntime: false, debuggerDenied: false, secureEnclave: false, appVersion: '0.1.0', appHash: null },
      },
    });
    const checks = securityChecks(bad);
    for (const c of checks.filter((x) => x.result === 'fail' || x.result === 'warn')) expect(c.action, c.id).toMatch(/\S/);
    const c = byId(bad);
    expect(c['gateway-tls']).toMatchObject({ result: 'fail', action: 'Link again with the gateway’s https:// address.' });
    expect(c['gateway-admission']).toMatchObject({
      result: 'fail',
      detail: 'The gateway refused this Mac: the enrollment token has expired',
    });
    expect(c.sip).toMatchObject({ result: 'fail', action: expect.stringContaining('csrutil enable') });
    expect(c['key-store']!.result).toBe('warn');
    expect(c.model!.result).toBe('warn');
    // A gateway on this machine needs no TLS; an unbound agent is told it earns nothing.
    expect(byId(status({ gatewayUrl: 'ws://127.0.0.1:8787/v1/agent' }))['gateway-tls']!.result).toBe('ok');
    expect(
      byId(status({ gateway: { enrollToken: false, operator: null, trust: 'signed', rejected: null } }))['gateway-admission'],
    ).toMatchObject({ result: 'warn', detail: expect.stringContaining('earns nothing') });
    expect(byId(status({ gatewayUrl: null }))['gateway-tls']!.result).toBe('unknown');
  });

  it('the agent’s own attestation reasons: each named with what to do, or attested', () => {
    const security = status().security;
    const not = byId(status({ security: { ...security, attestation: ['no-attestation', 'sip-off'] } }))['secure-enclave']!;
    expect(not).toMatchObject({ result: 'warn' });
    expect(not.detail).toContain('no Secure Enclave co-signature');
    expect(not.detail).toContain('System Integrity Protection is off');
    expect(not.action).toContain('csrutil enable');
    expect(byId(status({ security: { ...security, attestation: ['valid'] } }))['secure-enclave']).toMatchObject({
      result: 'ok',
      action: null,
    });
  });
});
