/**
 * `nightjar audit`, in-process, against a real gateway (the harness network: the synthetic
 * mini-q8_0 model catalogued, a reply checker of its own) with real agents: progress lines and a
 * summary that never show content, the exit code when an audit failed, and the refusals before
 * any job is sent (a model file the catalog does not list for the id, a bad prompt file).
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CliIo } from '../../../src/cli/io.js';
import { main } from '../../../src/cli/main.js';
import { createReplyChecker, type ReplyCheckerHandle } from '../../../src/main/agent/index.js';
import {
  HARNESS_MODEL_ID,
  startHonestyNetwork,
  writeHarnessModels,
  type HarnessModels,
  type HonestyNetwork,
} from '../../helpers/cheating-agents.js';
import { perTestFetch } from '../../helpers/http-client.js';

let models: HarnessModels;
let gatewayChecker: ReplyCheckerHandle;
let net: HonestyNetwork;
beforeAll(async () => {
  models = await writeHarnessModels();
  gatewayChecker = createReplyChecker({ modelPath: models.modelPath, threads: 1 });
  net = await startHonestyNetwork({ models, gateway: { honesty: { checker: gatewayChecker.check } } });
});
afterAll(async () => {
  await net?.close();
  await gatewayChecker?.dispose();
  await models?.remove();
});
const http = perTestFetch();

function io(): { io: CliIo; out: () => string; err: () => string } {
  let out = '';
  let err = '';
  return {
    io: {
      stdout: { write: (t: string) => (out += t) },
      stderr: { write: (t: string) => (err += t) },
      stdin: { isTTY: false, [Symbol.asyncIterator]: async function* () {} } as unknown as CliIo['stdin'],
      env: { NIGHTJAR_API_KEY: net.auditorKey.key },
      cwd: models.dir,
      signal: new AbortController().signal,
      fetch: http.fetch,
    },
    out: () => out,
    err: () => err,
  };
}

const base = (): string[] => [
  'audit',
  '--gateway',
  net.gateway.url,
  '--no-pin',
  '--model',
  HARNESS_MODEL_ID,
  '--threads',
  '1',
  '--rate',
  '6000',
];

describe('nightjar audit', () => {
  it('audits an honest agent: one line per audit, a summary, exit 0, no content', async () => {
    const agent = await net.startAgent('honest');
    try {
      const run = io();
      const code = await main([...base(), '--model-file', models.claimed.path, '--jobs', '3', '--reveal', 'failed'], run.io);
      expect({ code, err: run.err() }).toMatchObject({ code: 0 });
      // Progress lines in brackets; the checker's log lines (model loaded, unloaded) beside them.
      const lines = run
        .err()
        .trimEnd()
        .split('\n')
        .filter((l) => l.startsWith('['));
      expect(lines[0]).toMatch(
        new RegExp(`^\\[auditing ${HARNESS_MODEL_ID} \\(sha256 ${models.claimed.sha256.slice(0, 12)}…\\) at .+: 3 audits,`),
      );
      expect(lines.slice(1)).toHaveLength(3);
      for (const line of lines.slice(1)) {
        expect(line).toMatch(
          new RegExp(
            `^\\[audit \\d · agent ${agent.agentId.slice(0, 8)} · job \\S+ · (greedy|t=[\\d.]+), max \\d+.* · ` +
              'pass · local pass · gateway –\\]$',
          ),
        );
      }
      expect(run.out()).toBe(`3 audits: 3 passed, 0 failed, 0 unchecked\n  agent ${agent.agentId}: 3 audits, 0 failed\n`);
    } finally {
      await agent.dispose();
    }
  });

  it('exits 3 when an audit failed, with the reasons, as JSON lines under --json', async () => {
    const agent = await net.startAgent('small-model');
    try {
      const run = io();
      const code = await main([...base(), '--model-file', models.claimed.path, '--jobs', '2', '--json'], run.io);
      expect(code).toBe(3);
      expect(run.err()).not.toMatch(/^\[/m);
      const lines = run
        .out()
        .trimEnd()
        .split('\n')
        .map(
          (l) =>
            JSON.parse(l) as { type: string; pass?: boolean; reasons?: string[]; gateway?: { forfeited: boolean } | null; failed?: number },
        );
      expect(lines.map((l) => l.type)).toEqual(['audit', 'audit', 'summary']);
      for (const l of lines.slice(0, 2)) {
        expect(l.pass).toBe(false);
        expect(l.reasons).toContain('off-distribution');
        expect(l.gateway?.forfeited).toBe(true);
      }
      expect(lines[2]!.failed).toBe(2);
    } finally {
      await agent.dispose();
    }
  });

  it('refuses a model file the catalog does not list for the id, before sending a job', async () => {
    const run = io();
    const code = await main([...base(), '--model-file', models.smaller.path, '--jobs', '1'], run.io);
    expect(code).toBe(2);
    expect(run.err()).toContain(
      `the model file ${models.smaller.path} (sha256 ${models.smaller.sha256}) ` +
        `is not a file the gateway's catalog lists for ${HARNESS_MODEL_ID} ` +
        `(it lists ${models.claimed.sha256}); audit with the file the catalog names`,
    );
  });

  it('refuses a prompt file with a bad line, naming the line and not its content', async () => {
    const file = path.join(models.dir, 'prompts.jsonl');
    await writeFile(file, '{"prompt": "fine"}\n{"prompt": "secret", "oops": 1}\n');
    const run = io();
    const code = await main([...base(), '--model-file', models.claimed.path, '--prompts', file], run.io);
    expect(code).toBe(2);
    expect(run.err()).toContain('line 2 of the prompt file is not a prompt');
    expect(run.err()).not.toContain('secret');
  });
});
