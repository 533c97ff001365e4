/**
 * The client's local files: where the data folder is, the pin file (0600, trust on first use,
 * merged across processes, a damaged file refused), and the receipt log (append, read, rotate).
 */
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FilePinStore, VerifiedReceiptLog, clientDataDir, type ChatResult } from '../../src/client/index.js';
import { NightjarError } from '../../src/shared/index.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'nightjar-client-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('clientDataDir', () => {
  it.each([
    [{ HOME: '/home/ann' }, 'linux', '/home/ann/.local/share/nightjar/client'],
    [{ HOME: '/home/ann', XDG_DATA_HOME: '/data' }, 'linux', '/data/nightjar/client'],
    [{ HOME: '/home/ann', XDG_DATA_HOME: 'relative' }, 'linux', '/home/ann/.local/share/nightjar/client'],
    [{ HOME: '/Users/ann' }, 'darwin', '/Users/ann/Library/Application Support/Nightjar/client'],
    [{ HOME: '/Users/ann', XDG_DATA_HOME: '/data' }, 'darwin', '/Users/ann/Library/Application Support/Nightjar/client'],
    // Windows paths are joined with Windows separators (nightjarDirs), and the home folder is USERPROFILE.
    [
      { USERPROFILE: 'C:\\Users\\ann', APPDATA: 'C:\\Users\\ann\\AppData\\Roaming' },
      'win32',
      'C:\\Users\\ann\\AppData\\Roaming\\Nightjar\\client',
    ],
    [{ USERPROFILE: 'C:\\Users\\ann' }, 'win32', 'C:\\Users\\ann\\AppData\\Roaming\\Nightjar\\client'],
    // NIGHTJAR_HOME (one folder for everything, as the agent reads it) holds the client's files too.
    [{ HOME: '/home/ann', NIGHTJAR_HOME: '/nj' }, 'linux', '/nj/data/client'],
    [{ NIGHTJAR_HOME: '/nj' }, 'darwin', '/nj/data/client'],
    [{ NIGHTJAR_HOME: '/nj', NIGHTJAR_CLIENT_DATA_DIR: '/elsewhere' }, 'linux', '/elsewhere'],
    [{ HOME: '/home/ann', NIGHTJAR_CLIENT_DATA_DIR: '/elsewhere' }, 'linux', '/elsewhere'],
    [{}, 'linux', null],
    [{}, 'darwin', null],
    // No home folder named: nothing is kept, whatever else the environment says.
    [{ XDG_DATA_HOME: '/data' }, 'linux', null],
    [{ APPDATA: 'C:\\Users\\ann\\AppData\\Roaming' }, 'win32', null],
  ] as const)('%j on %s → %s', (env, platform, expected) => {
    expect(clientDataDir({ env, platform })).toBe(expected);
  });
});

const KEY_A = new Uint8Array(32).fill(1);
const KEY_B = new Uint8Array(32).fill(2);
const ID_A = 'a'.repeat(32);
const ID_B = 'b'.repeat(32);

describe('FilePinStore', () => {
  it('pins on first use into a 0600 file in a 0700 folder, and never replaces a pin', async () => {
    const file = path.join(dir, 'client', 'pins.json');
    const store = new FilePinStore({ file, now: () => 1234 });
    expect(await store.get(ID_A)).toBeUndefined();
    await store.set(ID_A, KEY_A);
    await store.set(ID_A, KEY_B);
    expect(await store.get(ID_A)).toEqual(KEY_A);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect((await stat(path.dirname(file))).mode & 0o777).toBe(0o700);
    const again = new FilePinStore({ file });
    expect(await again.get(ID_A)).toEqual(KEY_A);
    expect(JSON.parse(await readFile(file, 'utf8'))).toEqual({
      v: 1,
      pins: { [ID_A]: { identityKey: 'AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE', firstSeen: 1234 } },
    });
  });

  it('merges pins two processes add, losing neither', async () => {
    const file = path.join(dir, 'pins.json');
    const one = new FilePinStore({ file });
    const two = new FilePinStore({ file });
    await one.get(ID_A);
    await two.get(ID_A);
    await one.set(ID_A, KEY_A);
    await two.set(ID_B, KEY_B);
    expect(Object.keys(await new FilePinStore({ file }).list()).sort()).toEqual([ID_A, ID_B]);
  });

  it('refuses a damaged pin file instead of silently starting over', async () => {
    const file = path.join(dir, 'pins.json');
    await writeFile(file, '{"v":1,"pins":{"not-an-agent":{}}}');
    const error = await new FilePinStore({ file }).get(ID_A).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NightjarError);
    expect(error).toMatchObject({
      code: 'NJ_CONFIG_INVALID',
      message: `the pin file ${file} is not a valid Nightjar pin file; fix it, or remove it to forget every pinned agent`,
    });
  });
});

function result(n: number): ChatResult {
  return {
    jobId: 'AAAAAAAAAAAAAAAAAAAAAA',
    agentId: ID_A,
    trust: 'signed',
    attempt: 0,
    sends: 1,
    model: 'synthetic-fake',
    text: 'never stored',
    finishReason: 'stop',
    usage: { promptTokens: n, completionTokens: 1 },
    receipt: {} as ChatResult['receipt'],
    signedReceipt: {
      receipt: {
        v: 1,
        jobId: 'AAAAAAAAAAAAAAAAAAAAAA',
        attempt: 0,
        agentId: ID_A,
        model: 'synthetic-fake',
        modelSha256: 'ab'.repeat(32),
        promptTokens: n,
        completionTokens: 1,
        requestDigest: 'A'.repeat(43),
        replyDigest: 'A'.repeat(43),
        startedAt: 1,
        endedAt: 2,
        finishReason: 'stop',
      },
      signature: 'A'.repeat(86),
    },
    identityKey: 'AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE',
  };
}

describe('VerifiedReceiptLog', () => {
  it('appends entries without the reply text, reads them back, and skips torn lines', async () => {
    const file = path.join(dir, 'receipts.jsonl');
    const log = new VerifiedReceiptLog({ file, now: () => 99 });
    await Promise.all([log.append(result(1), 'http://gw'), log.append(result(2), 'http://gw')]);
    await writeFile(file, (await readFile(file, 'utf8')) + '{"torn":\n');
    const { entries, unreadable } = await log.read();
    expect(entries.map((e) => e.receipt.receipt.promptTokens)).toEqual([1, 2]);
    expect(entries[0]).toMatchObject({ v: 1, savedAt: 99, gateway: 'http://gw', agentId: ID_A, trust: 'signed', model: 'synthetic-fake' });
    expect(unreadable).toBe(1);
    expect(await readFile(file, 'utf8')).not.toContain('never stored');
    expect((await stat(file)).mode & 0o777).toBe(0o600);
  });

  it('moves a full log aside before the next append', async () => {
    const file = path.join(dir, 'receipts.jsonl');
    const log = new VerifiedReceiptLog({ file, maxBytes: 100 });
    await log.append(result(1), 'http://gw');
    await log.append(result(2), 'http://gw');
    expect((await log.read()).entries.map((e) => e.receipt.receipt.promptTokens)).toEqual([2]);
    expect((await new VerifiedReceiptLog({ file: `${file}.1` }).read()).entries).toHaveLength(1);
  });

  it('reads a missing log as empty', async () => {
    expect(await new VerifiedReceiptLog({ file: path.join(dir, 'none.jsonl') }).read()).toEqual({ entries: [], unreadable: 0 });
  });
});
