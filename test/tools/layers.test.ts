/**
 * The layer rule, run through the project's real ESLint config, so removing the rule from the
 * config (or weakening it) fails here.
 */
import path from 'node:path';
import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';
import { LAYERS, layerOf } from '../../tools/eslint/layers.js';

const root = path.resolve(import.meta.dirname, '../..');
const eslint = new ESLint({ cwd: root });

async function lint(file: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath: path.join(root, file) });
  return (result?.messages ?? [])
    .filter((m) => m.ruleId === 'nightjar/layers' || m.ruleId === 'no-restricted-globals')
    .map((m) => m.message);
}

describe('nightjar/layers', () => {
  it.each([
    ['src/shared/x.ts', "import fs from 'node:fs';\nexport const a = fs;", /may not import the Node built-in "node:fs"/],
    ['src/shared/x.ts', "import fs from 'fs';\nexport const a = fs;", /Node built-in "fs"/],
    ['src/shared/x.ts', "import { app } from 'electron';\nexport const a = app;", /Only src\/main\/electron may import "electron"/],
    ['src/shared/x.ts', "import { a } from '../gateway/index.js';\nexport const b = a;", /shared may not import gateway/],
    ['src/shared/x.ts', 'export const t = document.title;', /no DOM/],
    ['src/main/agent/x.ts', "import { a } from '../../gateway/index.js';\nexport const b = a;", /agent may not import gateway/],
    ['src/main/agent/x.ts', "import { a } from '../../client/index.js';\nexport const b = a;", /agent may not import client/],
    ['src/main/agent/x.ts', "import { app } from 'electron';\nexport const a = app;", /Only src\/main\/electron/],
    ['src/main/agent/x.ts', "import { a } from '../electron/tray.js';\nexport const b = a;", /agent may not import electron/],
    ['src/gateway/x.ts', "import { a } from '../main/agent/index.js';\nexport const b = a;", /gateway may not import agent/],
    ['src/gateway/x.ts', "import { a } from '../client/index.js';\nexport const b = a;", /gateway may not import client/],
    ['src/client/x.ts', "import { a } from '../gateway/index.js';\nexport const b = a;", /client may not import gateway/],
    ['src/renderer/x.ts', "import { a } from '../main/agent/index.js';\nexport const b = a;", /renderer may not import agent/],
    ['src/renderer/x.ts', "import path from 'node:path';\nexport const a = path;", /renderer must run outside Node/],
    ['src/client/sdk/x.ts', "import path from 'node:path';\nexport const a = path;", /client\/sdk must run outside Node/],
    ['src/gateway/web/x.ts', "import path from 'node:path';\nexport const a = path;", /gateway\/web must run outside Node/],
    ['src/gateway/x.ts', "import { a } from './web/page.js';\nexport const b = a;", /gateway may not import gateway\/web/],
    ['src/cli/x.ts', "import { a } from '../gateway/directory.js';\nexport const b = a;", /through its front door/],
    ['src/cli/agent/x.ts', "export async function f() { return import('../../main/agent/engine/engine.js'); }", /through its front door/],
    ['src/cli/x.ts', "import { app } from 'electron';\nexport const a = app;", /Only src\/main\/electron/],
    ['src/cli/x.ts', "import { a } from '../main/electron/index.js';\nexport const b = a;", /cli may not import electron/],
    ['src/cli/x.ts', "import { a } from '../renderer/main.js';\nexport const b = a;", /cli may not import renderer/],
    // src/main, src/gateway and src/client stand side by side: none imports another, nor the CLI.
    ['src/client/x.ts', "import { a } from '../main/agent/index.js';\nexport const b = a;", /client may not import agent/],
    ['src/client/proxy/x.ts', "export async function f() { return import('../../main/agent/index.js'); }", /client may not import agent/],
    ['src/gateway/x.ts', "import { a } from '../main/electron/index.js';\nexport const b = a;", /gateway may not import electron/],
    ['src/main/electron/x.ts', "import { a } from '../../gateway/index.js';\nexport const b = a;", /electron may not import gateway/],
    ['src/main/electron/x.ts', "import { a } from '../../client/index.js';\nexport const b = a;", /electron may not import client/],
    ['src/main/agent/x.ts', "import { a } from '../../cli/main.js';\nexport const b = a;", /agent may not import cli/],
    ['src/gateway/x.ts', "import { a } from '../cli/gateway/gateway-command.js';\nexport const b = a;", /gateway may not import cli/],
    ['src/client/x.ts', "import { a } from '../cli/client/chat.js';\nexport const b = a;", /client may not import cli/],
    ['src/gateway/x.ts', "export async function f() { return import('../main/agent/index.js'); }", /gateway may not import agent/],
    ['src/node/x.ts', "import { a } from '../gateway/index.js';\nexport const b = a;", /node may not import gateway/],
    ['src/node/x.ts', "import { a } from '../main/agent/index.js';\nexport const b = a;", /node may not import agent/],
    ['src/renderer/x.ts', "import { a } from '../node/index.js';\nexport const b = a;", /renderer may not import node/],
    ['src/client/sdk/x.ts', "import { a } from '../../node/index.js';\nexport const b = a;", /client\/sdk may not import node/],
    ['src/gateway/x.ts', "import { a } from '../node/web.js';\nexport const b = a;", /through its front door/],
  ])('%s: rejects %s', async (file, code, message) => {
    const messages = await lint(file, code);
    expect(
      messages.some((m) => message.test(m)),
      messages.join('\n'),
    ).toBe(true);
  });

  it.each([
    ['src/shared/x.ts', "import { z } from 'zod';\nexport const a = z;"],
    ['src/main/agent/x.ts', "import fs from 'node:fs';\nimport { a } from '../../shared/index.js';\nexport const b = [fs, a];"],
    ['src/main/electron/x.ts', "import { app } from 'electron';\nimport { a } from '../agent/index.js';\nexport const b = [app, a];"],
    [
      'src/cli/x.ts',
      "import { a } from '../gateway/index.js';\nimport { b } from '../client/index.js';\n" +
        "import { c } from '../main/agent/index.js';\nexport const d = [a, b, c];",
    ],
    ['src/cli/agent/x.ts', "export async function f() { return [await import('../../main/agent/index.js'), await import('./y.js')]; }"],
    [
      'src/cli/x.ts',
      "import { a } from '../node/index.js';\nimport { b } from '../shared/index.js';\n" +
        "import { c } from './agent/y.js';\nexport const d = [a, b, c];",
    ],
    ['src/gateway/x.ts', "import { a } from '../shared/index.js';\nimport { b } from './relay.js';\nexport const c = [a, b];"],
    ['src/client/web/x.ts', "import { a } from '../sdk/index.js';\nexport const b = a;"],
    ['src/gateway/x.ts', "import { a } from '../node/index.js';\nexport const b = a;"],
    ['src/main/agent/x.ts', "import { a } from '../../node/index.js';\nexport const b = a;"],
    ['src/node/x.ts', "import fs from 'node:fs';\nimport { a } from '../shared/index.js';\nexport const b = [fs, a];"],
  ])('%s: allows %s', async (file, code) => {
    expect(await lint(file, code)).toEqual([]);
  });

  it('maps every path to its most specific layer', () => {
    expect(layerOf('src/client/sdk/client.ts')?.name).toBe('client/sdk');
    expect(layerOf('src/client/proxy/proxy.ts')?.name).toBe('client');
    expect(layerOf('src/cli/client/chat.ts')?.name).toBe('cli');
    expect(layerOf('src/cli/run.ts')?.name).toBe('cli');
    expect(layerOf('src/main/cli/main.ts')).toBeUndefined();
    expect(layerOf('src/main/agent/engine/engine.ts')?.name).toBe('agent');
    expect(layerOf('test/shared/x.test.ts')).toBeUndefined();
    for (const l of LAYERS) for (const other of l.mayImport) expect(LAYERS.some((x) => x.name === other)).toBe(true);
  });

  it('lets only src/cli import more than one of src/main, src/gateway and src/client', () => {
    const sides = ['agent', 'electron', 'gateway', 'client'];
    const sideOf = (name: string): string => (name === 'electron' ? 'agent' : name.split('/')[0]!);
    for (const l of LAYERS) {
      const reached = new Set([l.name, ...l.mayImport].filter((n) => sides.includes(sideOf(n))).map(sideOf));
      if (l.name === 'cli') expect([...reached].sort()).toEqual(['agent', 'client', 'gateway']);
      else expect(reached.size, `${l.name} reaches ${[...reached].join(', ')}`).toBeLessThanOrEqual(1);
    }
  });
});
