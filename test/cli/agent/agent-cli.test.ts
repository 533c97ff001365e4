/**
 * The agent's commands as a person types them, in-process through main() with NIGHTJAR_HOME in a
 * temporary directory (no keychain here: the plaintext key file is opted into), and
 * `nightjar serve` in its own process against a real gateway (enrolled with a token from a private
 * file), stopped with Ctrl-C.
 */
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../../src/cli/main.js';
import { commandContext, type CliIo } from '../../../src/cli/io.js';
import { doctorCommand, type DoctorParts } from '../../../src/cli/agent/doctor.js';
import { softwareEnclave } from '../../helpers/software-enclave.js';
import {
  AgentService,
  ManualEnvironmentSource,
  loadConfig,
  loadStateFile,
  pathsIn,
  readSignedReceiptLog,
} from '../../../src/main/agent/index.js';
import { NightjarClient } from '../../../src/client/index.js';
import { createLogger } from '../../../src/node/index.js';
import { generateIdentity } from '../../../src/shared/index.js';
import { FakeEngine } from '../../helpers/fake-engine.js';
import { perTestFetch } from '../../helpers/http-client.js';
import { agentGone, agentServing, startTestGateway } from '../../helpers/network.js';
import { startScriptedGateway } from '../../main/support/scripted-gateway.js';
import { Output } from '../support/output.js';

const ROOT = path.resolve(import.meta.dirname, '../../..');
const http = perTestFetch();
let tmp: string;
let n = 0;

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'nightjar-cli-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

interface Run {
  code: number;
  out: string;
  err: string;
}

function home(): string {
  return path.join(tmp, `home-${++n}`);
}

async function nightjar(nightjarHome: string, ...argv: string[]): Promise<Run> {
  let out = '';
  let err = '';
  const io: CliIo = {
    stdout: { write: (t: string) => (out += t) },
    stderr: { write: (t: string) => (err += t) },
    stdin: (async function* () {})(),
    env: { NIGHTJAR_HOME: nightjarHome, HOME: tmp },
    cwd: tmp,
    signal: new AbortController().signal,
  };
  const code = await main(argv, io);
  return { code, out, err };
}

describe('models, keys and the offline commands', () => {
  it('synth installs a model, select writes the config, list shows both and the catalog', async () => {
    const h = home();
    const synth = await nightjar(h, 'models', 'synth', '--shape', 'tiny');
    expect(synth.code).toBe(0);
    expect(synth.out).toContain('installed; serve it with `nightjar models select synthetic-tiny`');
    expect(await nightjar(h, 'models', 'select', 'synthetic-tiny')).toMatchObject({
      code: 0,
      out: expect.stringContaining('Selected synthetic-tiny'),
    });
    expect((await loadConfig(path.join(h, 'config/config.json'))).model.selected).toBe('synthetic-tiny');
    const list = await nightjar(h, 'models', 'list');
    expect(list.out).toMatch(/^ \*\s+synthetic-tiny\s+428 KB/m);
    expect(list.out).toMatch(/llama-3\.2-1b-instruct-q4_k_m\s+Q4_K_M .*needs --sha256/);
    const json = JSON.parse((await nightjar(h, 'models', 'list', '--json')).out) as { selected: string; installed: { id: string }[] };
    expect(json).toMatchObject({ selected: 'synthetic-tiny', installed: [{ id: 'synthetic-tiny' }] });
    expect(await nightjar(h, 'models', 'rm', 'synthetic-tiny')).toMatchObject({ code: 0 });
    expect(await nightjar(h, 'models', 'select', 'synthetic-tiny')).toMatchObject({
      code: 1,
      err: expect.stringContaining('error NJ_MODEL_NOT_INSTALLED'),
    });
  });

  it('a pull of an unverified catalog entry without --sha256 says where to find the hash', async () => {
    const r = await nightjar(home(), 'models', 'pull', 'qwen2.5-0.5b-instruct-q4_k_m');
    expect(r.code).toBe(2);
    expect(r.err).toContain('error NJ_USAGE');
    expect(r.err).toContain('https://huggingface.co/Qwen/Qwen2.5-0.5B-Instruct-GGUF/blob/main/qwen2.5-0.5b-instruct-q4_k_m.gguf');
  });

  it('keys: the opt-in key file is created once, shown, and deleted only with --yes', async () => {
    const h = home();
    const keyFile = path.join(h, 'identity.plaintext');
    expect((await nightjar(h, 'keys', '--key-file', keyFile)).out).toContain('No identity yet');
    const created = await nightjar(h, 'keys', 'create', '--key-file', keyFile);
    const id = /agent ([0-9a-f]{32})/.exec(created.out)?.[1];
    expect(id).toBeDefined();
    expect((await stat(keyFile)).mode & 0o777).toBe(0o600);
    expect((await nightjar(h, 'keys', 'show', '--key-file', keyFile)).out).toContain(`agent id      ${id}`);
    expect((await nightjar(h, 'keys', 'delete', '--key-file', keyFile)).code).toBe(2);
    expect((await nightjar(h, 'keys', 'delete', '--yes', '--key-file', keyFile)).out).toContain('Deleted');
  });

  it('without a keychain and without opting in, keys fails with a clear error', async () => {
    // No D-Bus session here: keytar loads but the Secret Service cannot be reached.
    const r = await nightjar(home(), 'keys');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^error NJ_KEYCHAIN_UNAVAILABLE: /);
    expect(r.err).toContain('--key-file');
  });

  it('pause and resume with no agent running set what the next start does; status and serve-now say none runs', async () => {
    const h = home();
    expect((await nightjar(h, 'pause', '--for', '2h')).out).toContain('the next `nightjar serve` starts paused until');
    const state = await loadStateFile(path.join(h, 'config/state.json'));
    expect(state.manual.mode).toBe('paused');
    expect(state.manual.until! - Date.now()).toBeGreaterThan(7_100_000);
    expect((await nightjar(h, 'resume')).out).toContain('following the policy');
    expect((await loadStateFile(path.join(h, 'config/state.json'))).manual).toEqual({ mode: 'auto', until: null });
    const status = await nightjar(h, 'status');
    expect(status).toMatchObject({ code: 1, err: expect.stringContaining('error NJ_AGENT_NOT_RUNNING') });
    expect(status.err).toContain('nightjar serve');
    expect((await nightjar(h, 'serve-now')).code).toBe(1);
    expect((await nightjar(h, 'pause', '--for', 'soon')).code).toBe(2);
  });

  it('serve refuses to start without a gateway address, naming where to put one', async () => {
    const h = home();
    const r = await nightjar(h, 'serve', '--key-file', path.join(h, 'k'));
    expect(r.code).toBe(2);
    expect(r.err).toContain(path.join(h, 'config/config.json'));
  });

  it('a bad config field is named', async () => {
    const h = home();
    await nightjar(h, 'models', 'synth');
    await mkdir(path.join(h, 'config'), { recursive: true });
    await writeFile(path.join(h, 'config/config.json'), JSON.stringify({ policy: { graceMs: 'soon' } }));
    const r = await nightjar(h, 'models', 'list');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/error NJ_CONFIG_INVALID: .*config\.json: policy\.graceMs/);
  });
});

describe('talking to a running agent', () => {
  it('status, pause, resume, earnings and receipts go through the control API', async () => {
    const h = home();
    await nightjar(h, 'models', 'synth');
    await nightjar(h, 'models', 'select', 'synthetic-tiny');
    const gw = await startScriptedGateway();
    const paths = pathsIn(path.join(h, 'config'), path.join(h, 'data'));
    const service = await AgentService.start({
      paths,
      config: await loadConfig(paths.configFile),
      gatewayUrl: gw.url,
      identity: await generateIdentity(),
      environment: new ManualEnvironmentSource({ idleSeconds: 1000, onAc: true }),
      loadEngine: async () => new FakeEngine(),
      memoryProbe: async () => ({ totalBytes: 8e9, availableBytes: 4e9, swapFreeBytes: 0 }),
      // A fixed estimate: node-llama-cpp's would load its binary, which this test does not need
      // and which takes seconds on a busy machine.
      estimate: async () => ({ modelBytes: 1e6, contextBytes: 1e6, totalBytes: 2.2e6 }),
    });
    try {
      await service.runtime.whenState('serving', { timeoutMs: 30_000 });
      const status = await nightjar(h, 'status');
      expect(status.out).toMatch(/^Agent [0-9a-f]{12}… serving · synthetic-tiny \(loaded\)/);
      expect(status.out).toContain('The owner is away; serving.');
      expect(status.out).toMatch(/machine +idle 16m 40s · on AC/);
      expect(JSON.parse((await nightjar(h, 'status', '--json')).out)).toMatchObject({ state: 'serving' });

      await (
        await gw.submit([{ role: 'user', content: 'hi' }], { maxTokens: 4 })
      ).ended;
      expect((await nightjar(h, 'receipts')).out).toMatch(/synthetic-tiny\s+\d+\s+4\s+length/);
      expect((await nightjar(h, 'earnings')).out).toMatch(/total\s+1\s+\d+\s+4\s+—/);

      expect((await nightjar(h, 'pause')).code).toBe(0);
      await service.runtime.whenState('paused', { timeoutMs: 10_000 });
      expect((await nightjar(h, 'status')).out).toContain('override  paused until resumed');
      await nightjar(h, 'resume');
      await service.runtime.whenState('serving', { timeoutMs: 10_000 });
    } finally {
      await service.dispose();
      await gw.close();
    }
    // With the agent gone, the receipts are read from the log, signatures unchecked without the key.
    const offline = await nightjar(h, 'receipts');
    expect(offline.out).toContain('1 of 1 receipts');
    expect((await readSignedReceiptLog(paths.receiptsFile)).receipts).toHaveLength(1);
  });
});

describe('doctor', () => {
  it('passes on a healthy setup and names what to fix otherwise', async () => {
    const h = home();
    const keyFile = path.join(h, 'key');
    const bad = await nightjar(h, 'doctor', '--key-file', keyFile);
    expect(bad.code).toBe(1);
    expect(bad.out).toContain('✗ model     no model is selected');
    expect(bad.out).toContain('→ Run `nightjar models list`, `nightjar models pull ID`, then `nightjar models select ID`.');
    expect(bad.out).toContain('✗ gateway   no gateway address');

    await nightjar(h, 'models', 'synth');
    await nightjar(h, 'models', 'select', 'synthetic-tiny');
    const gateway = await startTestGateway();
    try {
      let out = '';
      const io: CliIo = {
        stdout: { write: (t: string) => (out += t) },
        stderr: { write: () => true },
        stdin: (async function* () {})(),
        env: { NIGHTJAR_HOME: h, HOME: tmp },
        cwd: tmp,
        signal: new AbortController().signal,
      };
      const code = await doctorCommand({ gateway: gateway.url, keyFile }, commandContext(io), {
        environment: new ManualEnvironmentSource({ idleSeconds: 5, onAc: true, thermal: 'nominal' }),
        freeBytes: async () => 50e9,
      });
      expect(out).toContain('✓ model     synthetic-tiny: 428 KB, sha256 matches');
      expect(out).toMatch(/✓ gateway {3}ws:\/\/127\.0\.0\.1:\d+\/v1\/agent answers/);
      expect(out).toMatch(/✓ clock {5}this clock is \d+ ms (behind|ahead of) the gateway's/);
      expect(out).toContain('✓ llama.cpp prebuilt binding loads');
      expect(out).toContain('Everything checks out.');
      expect(code).toBe(0);

      // A tampered model file and a full disk are named, each with what to do.
      const file = path.join(h, 'data/models/synthetic-tiny.gguf');
      const handle = await open(file, 'r+');
      await handle.write(Buffer.from([9]), 0, 1, 3000);
      await handle.close();
      out = '';
      expect(await doctorCommand({ gateway: gateway.url, keyFile }, commandContext(io), { freeBytes: async () => 1e9 })).toBe(1);
      expect(out).toContain('✗ model     NJ_MODEL_FILE_INVALID');
      expect(out).toContain('→ Run `nightjar models rm synthetic-tiny` and `nightjar models pull synthetic-tiny`.');
      expect(out).toContain('✗ disk      954 MB free for models');
    } finally {
      await gateway.dispose();
    }
  });
});

describe('doctor on attestation', () => {
  const hardened = {
    sip: true,
    hardenedRuntime: true,
    debuggerDenied: true,
    secureEnclave: true,
    appVersion: '1',
    appHash: 'ab'.repeat(32),
  };
  const run = async (attestation: DoctorParts['attestation']): Promise<string> => {
    const h = home();
    let out = '';
    const io: CliIo = {
      stdout: { write: (t: string) => (out += t) },
      stderr: { write: () => true },
      stdin: (async function* () {})(),
      env: { NIGHTJAR_HOME: h, HOME: tmp },
      cwd: tmp,
      signal: new AbortController().signal,
    };
    await doctorCommand({ keyFile: path.join(h, 'key') }, commandContext(io), { attestation, freeBytes: async () => 50e9 });
    return out;
  };

  it('names each reason this Mac is not attested, with what to do, as a warning', async () => {
    const out = await run({ posture: { ...hardened, sip: false, appHash: null }, enclave: null });
    expect(out).toContain('! attested  not attested (no-attestation): The bundle carries no Secure Enclave co-signature.');
    expect(out).toContain('! attested  not attested (sip-off): System Integrity Protection is off (or could not be read).');
    expect(out).toContain('→ Turn SIP back on: restart into Recovery, run `csrutil enable`, restart.');
    expect(out).toContain('! attested  not attested (unreleased-app-hash)');
    expect(out).not.toContain('(debugger-allowed)');
  });

  it('says so when this Mac can be attested', async () => {
    const out = await run({ posture: hardened, enclave: await softwareEnclave() });
    expect(out).toContain(`✓ attested  Secure Enclave key, SIP on, hardened runtime, debugger denied; app hash ${'ab'.repeat(32)}`);
  });
});

describe('nightjar serve in its own process', () => {
  it('serves through a real gateway, answers status, records the receipt, and stops on Ctrl-C with a goodbye', async () => {
    const h = home();
    await nightjar(h, 'models', 'synth');
    await nightjar(h, 'models', 'select', 'synthetic-tiny');
    const gatewayLog: string[] = [];
    const gateway = await startTestGateway({ logger: createLogger({ level: 'info', write: (l) => gatewayLog.push(l) }) });
    // Enrolled with a token from a private file, never on the command line (which `ps` shows everyone).
    const operator = await gateway.store.accounts.createOperator({ name: 'Ada', now: Date.now() });
    const { token } = await gateway.store.accounts.createEnrollmentToken({ operatorId: operator.id, now: Date.now(), ttlMs: 3600_000 });
    const tokenFile = path.join(tmp, `enroll-${n}`);
    await writeFile(tokenFile, `${token}\n`, { mode: 0o600 });
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        path.join(ROOT, 'src/cli/run.ts'),
        'serve',
        '--gateway',
        gateway.url,
        '--key-file',
        path.join(h, 'key'),
        '--slots',
        '2',
        '--threads',
        '1',
        '--enroll-token-file',
        tokenFile,
      ],
      {
        cwd: ROOT,
        env: { ...process.env, NODE_OPTIONS: '', NIGHTJAR_HOME: h },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    const stdout = Output.of(child.stdout);
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    try {
      const out = await stdout.written(/Created the agent identity ([0-9a-f]{32})/, 'the agent to start', 60_000).catch(() => stdout.text);
      const agentId = /Created the agent identity ([0-9a-f]{32})/.exec(out)?.[1];
      expect(agentId, err).toBeDefined();
      const session = await agentServing(gateway, agentId!, 60_000).then(() => gateway.directory.get(agentId!)!);
      expect(session.operatorId).toBe(operator.id);
      if (process.platform === 'linux') expect(await readFile(`/proc/${child.pid}/cmdline`, 'utf8')).not.toContain(token);
      expect(err).not.toMatch(/warning/);
      expect((await nightjar(h, 'status')).out).toContain('serving · synthetic-tiny (loaded)');

      const client = new NightjarClient({ gatewayUrl: gateway.url, trust: { allowSynthetic: true }, fetch: http.fetch });
      const result = await client.chat({
        model: 'synthetic-tiny',
        messages: [{ role: 'user', content: 'Hello' }],
        maxTokens: 8,
        temperature: 0,
      }).result;
      expect(result.usage.completionTokens).toBe(8);
      const log = await readFile(path.join(h, 'data/receipts.jsonl'), 'utf8');
      expect((JSON.parse(log.trim()) as { receipt: { jobId: string } }).receipt.jobId).toBe(result.receipt.jobId);

      child.kill('SIGINT');
      expect(await exited).toBe(0);
      expect(err).toMatch(/agent runtime stopped/);
      await expect(stat(path.join(h, 'config/control.json'))).rejects.toMatchObject({ code: 'ENOENT' });
      await agentGone(gateway, agentId!, 10_000);
      expect(gatewayLog.some((l) => l.includes('agent said goodbye') && l.includes('"reason":"quit"'))).toBe(true);
    } finally {
      if (child.exitCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
      await gateway.dispose();
    }
  }, 120_000);
});
