/**
 * The command context and the terminal logger: the human format, JSON lines under --log-json,
 * the injected clock, and secrets redacted in both formats.
 */
import { describe, expect, it } from 'vitest';
import { commandContext, terminalLogger, type CliIo } from '../../src/cli/io.js';
import { ManualClock } from '../main/support/manual-clock.js';

function sink(): { stderr: { write(t: string): boolean }; text(): string } {
  let text = '';
  return { stderr: { write: (t: string) => ((text += t), true) }, text: () => text };
}

const AT = Date.UTC(2026, 11, 1, 13, 5, 9);

describe('terminalLogger', () => {
  it('writes HH:MM:SS level component: message key=value for people', () => {
    const out = sink();
    const log = terminalLogger(out, { name: 'gateway', now: () => AT });
    log.info('listening', { port: 8787, url: 'http://127.0.0.1:8787', note: 'two words' });
    log.debug('not shown at info');
    log.child({ agent: 'a1' }).warn('slow');
    expect(out.text()).toBe(
      '13:05:09 info  gateway: listening  port=8787 url=http://127.0.0.1:8787 note="two words"\n' +
        '13:05:09 warn  gateway: slow  agent=a1\n',
    );
  });

  it('writes JSON lines under --log-json', () => {
    const out = sink();
    terminalLogger(out, { json: true, level: 'debug', name: 'proxy', now: () => AT }).debug('request', { status: 200 });
    expect(JSON.parse(out.text())).toEqual({
      time: '2026-12-01T13:05:09.000Z',
      level: 'debug',
      component: 'proxy',
      msg: 'request',
      status: 200,
    });
  });

  // Security: fails if the logger stops redacting (remove `redact` from src/node's createLogger, or
  // write the human format from the fields before pino sees them, and the secrets show up here).
  it.each([false, true])('redacts secrets by field name (json: %s)', (json) => {
    const out = sink();
    const log = terminalLogger(out, { json });
    log.info('linked', { token: 'njen_SECRET1', apiKey: 'njk_SECRET2', authorization: 'Bearer SECRET3', agent: 'a1' });
    log.child({ enrollToken: 'SECRET4' }).warn('enrolling');
    expect(out.text()).not.toMatch(/SECRET/);
    expect(out.text().match(/\[redacted\]/g)).toHaveLength(4);
    expect(out.text()).toContain('a1');
  });
});

describe('commandContext', () => {
  it('hands the io, the signal and the clock on, and makes loggers at the run’s level and format', () => {
    const out = sink();
    const clock = new ManualClock(AT);
    const signal = new AbortController().signal;
    const io: CliIo = { ...out, stdout: { write: () => true }, stdin: (async function* () {})(), env: {}, cwd: '/', signal, clock };
    const ctx = commandContext(io, { logLevel: 'warn', logJson: false });
    expect(ctx.signal).toBe(signal);
    expect(ctx.clock).toBe(clock);
    expect(ctx.io).toBe(io);
    ctx.logger('agent').info('dropped at warn');
    ctx.logger('agent').warn('kept');
    ctx.logger('web', 'debug').debug('a level of its own');
    expect(out.text()).toBe('13:05:09 warn  agent: kept\n13:05:09 debug web: a level of its own\n');
    const json = sink();
    commandContext({ ...io, stderr: json.stderr }, { logJson: true })
      .logger()
      .info('line');
    expect(JSON.parse(json.text())).toMatchObject({ level: 'info', msg: 'line' });
  });
});
