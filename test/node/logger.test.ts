import { describe, expect, it } from 'vitest';
import { REDACTED, createLogger } from '../../src/node/index.js';

describe('createLogger (pino)', () => {
  it('writes one JSON line per call: time, level name, msg, then base and fields', () => {
    const lines: string[] = [];
    const log = createLogger({ write: (l) => lines.push(l), level: 'debug', base: { component: 'gw' }, now: () => Date.UTC(2026, 11, 1) });
    log.debug('hello', { jobId: 'j1', n: 3, ok: true });
    log.child({ agentId: 'a1' }).warn('careful');
    expect(lines.map((l) => JSON.parse(l))).toEqual([
      { time: '2026-12-01T00:00:00.000Z', level: 'debug', msg: 'hello', component: 'gw', jobId: 'j1', n: 3, ok: true },
      { time: '2026-12-01T00:00:00.000Z', level: 'warn', msg: 'careful', component: 'gw', agentId: 'a1' },
    ]);
    expect(lines.every((l) => !l.endsWith('\n'))).toBe(true);
  });

  it('drops lines below its level', () => {
    const lines: string[] = [];
    const log = createLogger({ write: (l) => lines.push(l), level: 'warn' });
    log.debug('a');
    log.info('b');
    log.warn('c');
    log.error('d');
    expect(lines.map((l) => (JSON.parse(l) as { msg: string }).msg)).toEqual(['c', 'd']);
  });

  // A security test: delete the `redact` option in src/node/logger.ts and the secrets below
  // appear verbatim in the line, so this fails.
  it('redacts secrets by field name, at the top level and one level down, whoever logged them', () => {
    const lines: string[] = [];
    const log = createLogger({ write: (l) => lines.push(l), redact: ['customSecret'] });
    const secrets = ['Bearer njk_live_abc', 'njk_live_abc', 'enroll-xyz', 'ticket-123', 'pw', 'hush', 'be brief'];
    log.info('request', {
      authorization: secrets[0],
      apiKey: secrets[1],
      enrollToken: secrets[2],
      ticket: secrets[3],
      password: secrets[4],
      customSecret: secrets[5],
      prompt: secrets[6],
      jobId: 'visible',
    });
    log.child({ request: { token: 'child-token-456' } } as never).info('nested');
    const text = lines.join('\n');
    for (const s of [...secrets, 'child-token-456']) expect(text).not.toContain(s);
    const first = JSON.parse(lines[0]!) as Record<string, unknown>;
    expect(first.authorization).toBe(REDACTED);
    expect(first.jobId).toBe('visible');
  });
});
