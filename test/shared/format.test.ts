import { describe, expect, it } from 'vitest';
import { NightjarError, formatBytes, formatDateTime, formatDuration, parseDuration } from '../../src/shared/index.js';

describe('format', () => {
  it('writes durations one way everywhere', () => {
    expect([45_000, 185_000, 2 * 3600_000 + 5 * 60_000, 28 * 3600_000].map(formatDuration)).toEqual(['45s', '3m 05s', '2h 05m', '1d 4h']);
    expect(formatDuration(-5)).toBe('0s');
  });

  it('reads durations people type, and names the flag when it cannot', () => {
    expect(['90s', '30m', '1.5h', '7d'].map((t) => parseDuration(t, '--for'))).toEqual([90_000, 1_800_000, 5_400_000, 604_800_000]);
    for (const bad of ['', '10', '5w', '-1h', '1e3s', '1.2345h']) {
      const err = (() => {
        try {
          parseDuration(bad, '--ttl');
        } catch (e) {
          return e;
        }
      })();
      expect(err).toBeInstanceOf(NightjarError);
      expect((err as NightjarError).code).toBe('NJ_USAGE');
      expect((err as NightjarError).message).toContain('--ttl');
    }
  });

  it('writes bytes in powers of 1024', () => {
    expect([512, 1536, 7.5 * 1024 ** 3].map(formatBytes)).toEqual(['512 B', '1.5 KB', '7.5 GB']);
  });

  it('writes a moment as YYYY-MM-DD HH:MM in the time zone given', () => {
    const t = Date.UTC(2026, 11, 1, 13, 31, 6);
    expect(formatDateTime(t, { timeZone: 'UTC' })).toBe('2026-12-01 13:31');
    expect(formatDateTime(t, { timeZone: 'Asia/Tokyo', seconds: true })).toBe('2026-12-01 22:31:06');
    expect(formatDateTime(Date.UTC(2026, 0, 1, 0, 0), { timeZone: 'UTC' })).toBe('2026-01-01 00:00');
  });
});
