/**
 * The client commands, driven in-process against a real gateway and real agents (FakeEngine:
 * the moment text arrives matters here, not the text): `nightjar chat` one-shot and
 * interactive (piped input, and a terminal with Ctrl-C), `models offered`, `receipts --client`,
 * `chat --keep-evidence` and `dispute`.
 */
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CliIo } from '../../../src/cli/io.js';
import { main } from '../../../src/cli/main.js';
import { FakeEngine } from '../../helpers/fake-engine.js';
import { perTestFetch } from '../../helpers/http-client.js';
import { RecordingEngine } from '../../client/support/engines.js';
import { Output } from '../support/output.js';
import { onceTrue } from '../../helpers/events.js';
import { FAKE_MODEL, startNet, type TestNet } from '../../client/support/net.js';

let net: TestNet | undefined;
let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'nightjar-cli-'));
});
afterEach(async () => {
  await net?.close();
  net = undefined;
  await rm(dir, { recursive: true, force: true });
});
// After the network's afterEach, so the client's sockets close before the gateway does.
const http = perTestFetch();

interface Run {
  io: CliIo;
  out: () => string;
  err: () => string;
  /** stderr, to await what the command writes there. */
  stderr: Output;
}

function io(stdin: CliIo['stdin'], extra: Partial<CliIo> = {}): Run {
  let out = '';
  const stderr = new Output();
  return {
    stderr,
    io: {
      stdout: { write: (t: string) => (out += t) },
      stderr: stderr.stream,
      stdin,
      env: { NIGHTJAR_CLIENT_DATA_DIR: dir },
      cwd: dir,
      signal: new AbortController().signal,
      fetch: http.fetch,
      ...extra,
    },
    out: () => out,
    err: () => stderr.text,
  };
}

/** `nightjar chat …`, in-process. */
const chatCommand = (argv: string[], io: CliIo): Promise<number> => main(['chat', ...argv], io);
/** `nightjar receipts --client …`, in-process. */
const clientReceiptsCommand = (argv: string[], io: CliIo): Promise<number> => main(['receipts', ...argv], io);
/** `nightjar models offered …`, in-process. */
const modelsOfferedCommand = (argv: string[], io: CliIo): Promise<number> =>
  main(['models', ...(argv[0] === 'offered' ? argv : ['offered', ...argv])], io);

const noInput = (): Readable => Readable.from([]);

describe('nightjar chat, one-shot', () => {
  it('keeps the pin and the verified receipt, which receipts --client lists and re-verifies', async () => {
    net = await startNet();
    const a = await net.addAgent(new FakeEngine({ words: ['Hi', '!'] }));
    const run = io(noInput());
    const code = await chatCommand(['--gateway', net.gateway.url, '--allow-synthetic', 'Hello'], run.io);
    expect(run.err()).toMatch(
      new RegExp(
        `^\\[synthetic-fake · agent ${a.agentId.slice(0, 8)} \\(signed\\) · \\d+ prompt \\+ 2 completion tokens · ` +
          'finish: stop · receipt verified\\]\\n$',
      ),
    );
    expect(code).toBe(0);
    expect(run.out()).toBe('Hi!\n');
    expect(Object.keys(JSON.parse(await readFile(path.join(dir, 'pins.json'), 'utf8')).pins)).toEqual([a.agentId]);

    const list = io(noInput());
    expect(await clientReceiptsCommand(['--client', '--verify'], list.io)).toBe(0);
    const [header, row] = list.out().trimEnd().split('\n');
    expect(header).toMatch(/^SAVED\s+JOB\s+MODEL\s+AGENT\s+PROMPT\s+COMPLETION\s+FINISH\s+SIGNATURE$/);
    // Dates for people, through formatDateTime (local time, to the second).
    expect(row).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d {2}/);
    expect(row).toMatch(new RegExp(`synthetic-fake\\s+${a.agentId.slice(0, 8)}\\s+\\d+\\s+2\\s+stop\\s+ok$`));
    expect(list.err()).toMatch(/^1 of 1 receipts · \d+ prompt \+ 2 completion tokens · /);
    const log = await readFile(path.join(dir, 'receipts.jsonl'), 'utf8');
    expect(log).not.toContain('Hi!');
    expect(log).not.toContain('Hello');

    const json = io(noInput());
    expect(await clientReceiptsCommand(['--client', '--json'], json.io)).toBe(0);
    expect(JSON.parse(json.out())).toMatchObject({ agentId: a.agentId, receipt: { receipt: { agentId: a.agentId, completionTokens: 2 } } });
  });

  // Security: fails if clientReceiptsCommand stops checking signatures under --verify.
  it('receipts --client --verify flags a receipt altered in the log', async () => {
    net = await startNet();
    await net.addAgent(new FakeEngine({ words: ['Hi'] }));
    expect(await chatCommand(['--gateway', net.gateway.url, '--allow-synthetic', '--quiet', 'Hello'], io(noInput()).io)).toBe(0);
    const file = path.join(dir, 'receipts.jsonl');
    await writeFile(file, (await readFile(file, 'utf8')).replace('"completionTokens":1', '"completionTokens":100'));
    const run = io(noInput());
    expect(await clientReceiptsCommand(['--client', '--verify'], run.io)).toBe(1);
    expect(run.out()).toMatch(/\s100\s+stop\s+INVALID\n$/);
    expect(run.err()).toContain('error NJ_RECEIPT_INVALID: a receipt in the log does not verify under its agent key');
  });

  it('Ctrl-C stops the reply and the generation at the agent (exit 130)', async () => {
    net = await startNet();
    const engine = new FakeEngine({ tokenDelayMs: 2, words: ['tick '] });
    const a = await net.addAgent(engine);
    const controller = new AbortController();
    let out = '';
    const run = io(noInput(), {
      signal: controller.signal,
      stdout: {
        write: (t: string) => {
          out += t;
          if (out.includes('tick tick')) controller.abort();
        },
      },
    });
    const code = await chatCommand(['--gateway', net.gateway.url, '--allow-synthetic', '--max-tokens', '4000', 'Count'], run.io);
    expect(code).toBe(130);
    expect(run.err()).toContain('error NJ_CANCELLED: the request was cancelled');
    await a.receiptsSigned(1);
    expect(a.receipts[0]!.receipt.finishReason).toBe('cancelled');
    expect(a.receipts[0]!.receipt.completionTokens).toBeLessThan(4000);
    expect(engine.busy).toBe(0);
  });

  it('a reply that breaks off is printed as far as it came and flagged incomplete (exit 1)', async () => {
    net = await startNet();
    await net.addAgent(new FakeEngine({ failAfter: 1, words: ['Partial', ' text'] }));
    const run = io(noInput());
    const code = await chatCommand(['--gateway', net.gateway.url, '--allow-synthetic', 'Go'], run.io);
    expect(code).toBe(1);
    expect(run.out()).toBe('Partial\n');
    expect(run.err()).toMatch(
      new RegExp(
        '^\\[the reply above is incomplete: no receipt covers it\\]\\n' +
          'error NJ_AGENT_FAILED: the reply broke off after 7 characters: the agent failed mid-reply',
      ),
    );
  });
});

describe('nightjar chat --keep-evidence and nightjar dispute', () => {
  // Fails if the evidence file were written with the default mode (0644 under a usual umask):
  // other users of the machine could read the conversation.
  it('writes the evidence privately with a warning, and dispute reveals it and prints the verdict', async () => {
    const verdict = {
      pass: false,
      findings: [
        { reason: 'off-distribution' as const, detail: 'token 2 of 2 ranks 181st; the request allowed the top 40', figures: { rank: 181 } },
      ],
      figures: { tokens: 2 },
    };
    net = await startNet({ honesty: { checker: async () => verdict } });
    const a = await net.addAgent(new FakeEngine({ words: ['Hi', '!'] }));
    const key = await net.gateway.store.accounts.createApiKey({ name: 'cli', now: Date.now() });
    const file = path.join(dir, 'job.json');
    const flags = ['--gateway', net.gateway.url, '--allow-synthetic', '--api-key', key.key];
    const chat = io(noInput());
    expect(await chatCommand([...flags, '--keep-evidence', file, 'Hello'], chat.io)).toBe(0);
    expect(chat.err()).toMatch(/\[evidence of job [\w-]+ written to .*job\.json: it holds this conversation's key/);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const evidence = JSON.parse(await readFile(file, 'utf8')) as { agentId: string; jobId: string };
    expect(evidence.agentId).toBe(a.agentId);
    const dispute = io(noInput());
    expect(await main(['dispute', file, ...flags.filter((f) => f !== '--allow-synthetic')], dispute.io)).toBe(1);
    expect(dispute.out()).toBe(
      `Job ${evidence.jobId} on agent ${a.agentId}: the reply failed the gateway's check.\n` +
        '  off-distribution: token 2 of 2 ranks 181st; the request allowed the top 40\n' +
        'the reply failed its check (off-distribution): the agent is struck and ' +
        "the job's charge went back to this key (0 micro-credits).\n",
    );
    const again = io(noInput());
    expect(await main(['dispute', file, '--gateway', net.gateway.url, '--api-key', key.key], again.io)).toBe(1);
    expect(again.err()).toMatch(/NJ_ALREADY_REVEALED/);
  });

  it('refuses --keep-evidence in a conversation, and a file that is not evidence', async () => {
    const chat = io(noInput());
    expect(await chatCommand(['-i', '--keep-evidence', path.join(dir, 'x.json')], chat.io)).toBe(2);
    expect(chat.err()).toMatch(/--keep-evidence is for one-shot replies/);
    const bad = path.join(dir, 'bad.json');
    await writeFile(bad, '{"v":1}');
    const dispute = io(noInput());
    expect(await main(['dispute', bad, '--api-key', 'k'], dispute.io)).toBe(1);
    expect(dispute.err()).toMatch(/NJ_EVIDENCE_INVALID/);
  });
});

describe('nightjar chat, interactive', () => {
  it('keeps the conversation (and its cache key) across turns; /reset starts over; the system message stays', async () => {
    net = await startNet();
    const engine = new RecordingEngine({ words: ['Sure', '.'] });
    await net.addAgent(engine);
    const run = io(Readable.from(['first\nsecond\n/reset\nthird\n']));
    const code = await chatCommand(['--gateway', net.gateway.url, '--allow-synthetic', '--quiet', '-i', '--system', 'Be brief.'], run.io);
    expect(run.err()).toBe('[new conversation]\n');
    expect(code).toBe(0);
    expect(run.out()).toBe('Sure.\nSure.\nSure.\n');
    const system = { role: 'system', content: 'Be brief.' };
    expect(engine.conversations).toEqual([
      [system, { role: 'user', content: 'first' }],
      [system, { role: 'user', content: 'first' }, { role: 'assistant', content: 'Sure.' }, { role: 'user', content: 'second' }],
      [system, { role: 'user', content: 'third' }],
    ]);
    // One cache key per conversation: the same for its turns, a new one after /reset.
    const [k1, k2, k3] = engine.cacheKeys;
    expect(k1).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(k2).toBe(k1);
    expect(k3).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(k3).not.toBe(k1);
  });

  it('/exit quits before the remaining input', async () => {
    net = await startNet();
    const engine = new RecordingEngine();
    await net.addAgent(engine);
    const run = io(Readable.from(['one\n/exit\ntwo\n']));
    expect(await chatCommand(['--gateway', net.gateway.url, '--allow-synthetic', '--quiet', '--interactive'], run.io)).toBe(0);
    expect(engine.conversations).toHaveLength(1);
  });

  it('on a terminal, Ctrl-C stops the reply (the agent stops too) and it leaves the history; two more quit', async () => {
    net = await startNet();
    const engine = new RecordingEngine({ tokenDelayMs: 2, words: ['la '] });
    const a = await net.addAgent(engine);
    const stdin = Object.assign(new PassThrough(), { isTTY: true });
    const stdout = Object.assign(new PassThrough(), { isTTY: true, columns: 100 });
    const screen = Output.of(stdout);
    const run = io(stdin, { stdout });
    const done = chatCommand(['--gateway', net.gateway.url, '--allow-synthetic', '--quiet', '--max-tokens', '4000'], run.io);

    stdin.write('sing\r');
    await screen.written(/la la/, 'the reply to stream');
    stdin.write('\x03');
    await run.stderr.written(/\[reply stopped; it is not part of the conversation\]/, 'the reply to stop');
    await a.receiptsSigned(1);
    expect(a.receipts[0]!.receipt.finishReason).toBe('cancelled');
    expect(engine.busy).toBe(0);

    // The stopped turn is not part of the conversation.
    const shortEngineWords = engine.conversations.length;
    const mark = screen.text.length;
    stdin.write('again\r');
    await onceTrue(engine.onStarted, () => engine.conversations.length === shortEngineWords + 1, 'the second request');
    expect(engine.conversations.at(-1)).toEqual([{ role: 'user', content: 'again' }]);
    await screen.written((text) => text.slice(mark).includes('la la'), 'the second reply');
    stdin.write('\x03');
    await run.stderr.written((text) => text.split('[reply stopped').length === 3, 'the second reply to stop');
    await a.receiptsSigned(2);

    // Ctrl-C at an empty prompt right after stopping a reply quits.
    stdin.write('\x03');
    expect(await done).toBe(0);
  });

  it("the command's signal (SIGTERM, or Ctrl-C without a terminal) ends the conversation and the job (exit 130)", async () => {
    net = await startNet();
    const engine = new FakeEngine({ tokenDelayMs: 2, words: ['hum '] });
    const a = await net.addAgent(engine);
    const stdin = new PassThrough();
    const controller = new AbortController();
    let out = '';
    const run = io(stdin, {
      signal: controller.signal,
      stdout: {
        write: (t: string) => {
          out += t;
          if (out.includes('hum hum')) controller.abort();
        },
      },
    });
    const done = chatCommand(['--gateway', net.gateway.url, '--allow-synthetic', '--quiet', '-i', '--max-tokens', '4000'], run.io);
    stdin.write('hum\n');
    expect(await done).toBe(130);
    await a.receiptsSigned(1);
    expect(a.receipts[0]!.receipt.finishReason).toBe('cancelled');
    stdin.end();
  });
});

describe('the gateway key: pinned by nightjar chat, given by --gateway-key, forgotten by nightjar trust reset', () => {
  it('pins on first use in gateway-keys.json; a wrong --gateway-key is refused before sealing; trust reset forgets the pin', async () => {
    net = await startNet();
    const agent = await net.addAgent(new FakeEngine({ words: ['ok'] }));
    const url = net.gateway.url;
    const served = (await (await http.fetch(`${url}/v1/gateway-key`)).json()) as { key: string; keyId: string };
    const first = io(noInput());
    expect(await chatCommand(['--gateway', url, '--allow-synthetic', '--quiet', 'Hello'], first.io)).toBe(0);
    const file = path.join(dir, 'gateway-keys.json');
    expect(JSON.parse(await readFile(file, 'utf8'))).toMatchObject({ v: 1, gateways: { [url]: { key: served.key, keyId: served.keyId } } });

    const given = io(noInput());
    expect(await chatCommand(['--gateway', url, '--allow-synthetic', '--gateway-key', served.keyId, '--quiet', 'Hi'], given.io)).toBe(0);
    const wrong = io(noInput());
    const other = '0123456789abcdef';
    expect(await chatCommand(['--gateway', url, '--allow-synthetic', '--gateway-key', other, 'Hi'], wrong.io)).toBe(1);
    expect(wrong.err()).toMatch(/^error NJ_GATEWAY_KEY_MISMATCH: .* check the key you gave \(--gateway-key\)/);
    expect(agent.receipts).toHaveLength(2);
    const bad = io(noInput());
    expect(await chatCommand(['--gateway', url, '--allow-synthetic', '--gateway-key', 'nope', 'Hi'], bad.io)).toBe(1);
    expect(bad.err()).toMatch(/^error NJ_CONFIG_INVALID: a gateway key is its base64url public key/);

    const reset = io(noInput());
    expect(await main(['trust', 'reset', '--gateway', `${url}/`], reset.io)).toBe(0);
    expect(reset.out()).toMatch(new RegExp(`^Forgot gateway key ${served.keyId} of ${url}\\. The next use pins`));
    expect(JSON.parse(await readFile(file, 'utf8'))).toEqual({ v: 1, gateways: {} });
    const again = io(noInput());
    expect(await main(['trust', 'reset', '--gateway', url], again.io)).toBe(0);
    expect(again.out()).toBe(`No key is pinned for ${url}; the next use pins the key it signs with.\n`);
  });
});

describe('nightjar models offered', () => {
  it('lists what the gateway offers, synthetic models marked', async () => {
    net = await startNet();
    await net.addAgent(new FakeEngine({ slots: 2 }));
    const run = io(noInput());
    expect(await modelsOfferedCommand(['offered', '--gateway', net.gateway.url], run.io)).toBe(0);
    expect(run.out()).toBe('MODEL           AGENTS  FREE SLOTS\nsynthetic-fake  1       2           synthetic (random weights)\n');
    const json = io(noInput());
    expect(await modelsOfferedCommand(['--gateway', net.gateway.url, '--json'], json.io)).toBe(0);
    expect(JSON.parse(json.out())).toEqual([
      {
        id: FAKE_MODEL.id,
        synthetic: true,
        catalogued: false,
        agents: 1,
        freeSlots: 2,
        price: { promptPerMTok: '0', completionPerMTok: '0' },
      },
    ]);
  });

  it('says what to do when the gateway cannot be reached', async () => {
    const run = io(noInput());
    expect(await modelsOfferedCommand(['--gateway', 'http://127.0.0.1:9'], run.io)).toBe(1);
    expect(run.err()).toBe(
      'error NJ_GATEWAY_UNREACHABLE: cannot reach the gateway at http://127.0.0.1:9\n' +
        '  Check the gateway URL and that the gateway is running.\n',
    );
  });
});
