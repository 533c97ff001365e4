/**
 * The `nightjar` dispatcher in-process: generated help, usage errors (exit 2, naming the flag or
 * argument), the version, and what `nightjar --help` loads (nothing but commander and the command
 * table: each command imports its layer when it runs).
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import type { CliIo } from '../../src/cli/io.js';
import { main } from '../../src/cli/main.js';
import { packageRoot, packageVersion } from '../../src/cli/package-info.js';
import { AGENT_VERSION } from '../../src/main/agent/index.js';

const ROOT = path.resolve(import.meta.dirname, '../..');

async function nightjar(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io: CliIo = {
    stdout: { write: (t: string) => (out += t) },
    stderr: { write: (t: string) => (err += t) },
    stdin: (async function* () {})(),
    env: { NIGHTJAR_HOME: path.join(ROOT, 'no-such-home') },
    cwd: ROOT,
    signal: new AbortController().signal,
  };
  const code = await main(argv, io);
  return { code, out, err };
}

describe('usage errors', () => {
  it.each([
    // The case: a bad run-wide flag before the command.
    [
      ['--log-level', 'nonsense', 'status'],
      /^error NJ_USAGE: option '--log-level <level>' argument 'nonsense' is invalid\. Allowed choices are debug, info, warn, error\.\n/,
    ],
    [['status', '--log-level', 'loud'], /option '--log-level <level>' argument 'loud' is invalid/],
    [['frobnicate'], /^error NJ_USAGE: unknown command 'frobnicate'\n/],
    [['stauts'], /unknown command 'stauts'\n\(Did you mean status\?\)/],
    [['status', '--frob'], /^error NJ_USAGE: unknown option '--frob'\n/],
    [['serve', '--gateway'], /^error NJ_USAGE: option '--gateway <url>' argument missing\n/],
    [['up', '--port', '99999'], /option '--port <n>' argument '99999' is invalid\. It must be a whole number from 0 to 65535\./],
    [['serve', '--slots', '0'], /option '--slots <n>' argument '0' is invalid\. It must be a whole number 1 or more\./],
    [['chat', '--temperature', 'warm', 'hi'], /option '--temperature <t>' argument 'warm' is invalid\. It must be a number\./],
    [
      ['chat', '--min-trust', 'blind', 'hi'],
      /option '--min-trust <level>' argument 'blind' is invalid\. Allowed choices are signed, attested\./,
    ],
    [['models', 'synth', '--shape', 'huge'], /option '--shape <name>' argument 'huge' is invalid\. Allowed choices are tiny, /],
    [['models', 'pull'], /^error NJ_USAGE: missing required argument 'id'\n/],
    [['models', 'select', 'a', 'b'], /too many arguments for 'select'/],
    [['models', 'frob'], /unknown command 'frob'/],
    [['models', 'offered', 'x'], /too many arguments for 'offered'/],
    [['keys', 'create', 'x'], /too many arguments for 'create'/],
    [['gateway', 'ledger', 'check', 'x'], /too many arguments for 'check'/],
    [['keys', 'frob'], /unknown command 'frob'/],
    [['gateway', 'frob'], /unknown command 'frob'/],
    [['gateway', 'keys', 'create'], /required option '--name <name>' not specified/],
    [['receipts', '--verify'], /option '--verify' needs --client/],
    [['receipts', '--client', '--key-file', 'k'], /option '--key-file' is for the agent's receipts, not --client/],
  ])('nightjar %j exits 2 with a usage error that names what is wrong', async (argv, message) => {
    const r = await nightjar(...argv);
    expect(r.err).toMatch(message);
    expect(r.err).toMatch(/^error NJ_USAGE: .*\n(?:.*\n)*? {2}Run the command with --help to see its usage\.\n$/);
    expect(r.code).toBe(2);
    expect(r.out).toBe('');
  });

  it('prints the help, on stderr, and exits 2 when no command is given', async () => {
    const r = await nightjar();
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/^Usage: nightjar \[options\] \[command\]/);
  });

  it('a usage error found by a command (not by its flags) also exits 2', async () => {
    const r = await nightjar('pause', '--for', 'soon');
    expect(r).toMatchObject({ code: 2, err: expect.stringMatching(/^error NJ_USAGE: --for takes a duration such as 90s/) });
  });
});

describe('help', () => {
  it('lists every command, grouped, with a line about each', async () => {
    const r = await nightjar('--help');
    expect(r.code).toBe(0);
    for (const command of ['up', 'serve', 'status', 'dashboard', 'pause', 'resume', 'serve-now', 'models', 'earnings', 'receipts'])
      expect(r.out).toMatch(new RegExp(`^ {2}${command} `, 'm'));
    for (const command of ['keys', 'doctor', 'chat', 'proxy', 'gateway', 'version', 'help'])
      expect(r.out).toMatch(new RegExp(`^ {2}${command} `, 'm'));
    expect(r.out).toMatch(/^Provider \(this machine serves\):$/m);
    expect(r.out).toMatch(/^Client:$/m);
    expect(r.out).toMatch(/--log-level <level> +lowest level of log lines written/);
    expect(await nightjar('help')).toMatchObject({ code: 0, out: r.out });
  });

  it.each([
    ['up', /--slots <n> +jobs the agent serves at once \(default: 4\)/],
    ['serve', /--no-control +do not serve the control API/],
    ['status', /--json +print the status as JSON/],
    ['pause', /DURATION is like 30m, 2h or 1d\./],
    ['models', /^ {2}synth \[options\] +write a synthetic model/m],
    ['earnings', /--days <n>/],
    ['receipts', /--client +the receipts this machine verified as a client/],
    ['keys', /^ {2}delete \[options\] +delete the identity/m],
    ['doctor', /--gateway <url>/],
    ['chat', /Examples:\n {2}nightjar chat --allow-synthetic "Hello, Nightjar"/],
    ['proxy', /--allow-origin <url> +let web pages from this origin call the proxy \(repeatable\)/],
    ['gateway', /--operator-share <pct>/],
  ])('nightjar %s --help prints its help and exits 0', async (command, content) => {
    const r = await nightjar(command, '--help');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(new RegExp(`^Usage: nightjar ${command} `));
    expect(r.out).toMatch(content);
    // The run-wide flags are listed too.
    expect(r.out).toMatch(/^Global Options:\n {2}--log-level <level>/m);
    expect(r.err).toBe('');
    expect(await nightjar('help', command)).toMatchObject({ code: 0, out: r.out });
  });

  it('subcommands have their own help', async () => {
    const pull = await nightjar('models', 'pull', '--help');
    expect(pull.out).toMatch(/^Usage: nightjar models pull \[options\] <id>/);
    expect(pull.out).toMatch(/--sha256 <hex>/);
    const offered = await nightjar('models', 'offered', '-h');
    expect(offered).toMatchObject({ code: 0, out: expect.stringMatching(/^Usage: nightjar models offered \[options\]/) });
  });
});

describe('version', () => {
  it('nightjar version and --version print package.json’s version, which the agent reports too', async () => {
    const { version } = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    expect(packageRoot()).toBe(ROOT);
    expect(packageVersion()).toBe(version);
    expect(AGENT_VERSION).toBe(version);
    expect(await nightjar('version')).toEqual({ code: 0, out: `nightjar ${version}\n`, err: '' });
    expect(await nightjar('--version')).toEqual({ code: 0, out: `nightjar ${version}\n`, err: '' });
  });
});

/** The project files `file` imports at run time: static imports and re-exports, not types. */
function runtimeImports(file: string, text: string): string[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest);
  const found: string[] = [];
  for (const node of source.statements) {
    let spec: ts.Expression | undefined;
    // Under verbatimModuleSyntax only `import type` is erased (`import { type X }` still loads).
    if (ts.isImportDeclaration(node) && !node.importClause?.isTypeOnly) spec = node.moduleSpecifier;
    else if (ts.isExportDeclaration(node) && !node.isTypeOnly) spec = node.moduleSpecifier;
    if (spec && ts.isStringLiteral(spec)) found.push(spec.text);
  }
  return found;
}

describe('what `nightjar --help` loads', () => {
  it('run.ts statically loads commander, node built-ins and the command table only: each command loads its layer lazily', async () => {
    const loaded = new Set<string>();
    const packages = new Set<string>();
    const visit = async (file: string): Promise<void> => {
      if (loaded.has(file)) return;
      loaded.add(file);
      for (const spec of runtimeImports(file, await readFile(file, 'utf8'))) {
        if (spec.startsWith('.')) await visit(path.resolve(path.dirname(file), spec).replace(/\.js$/, '.ts'));
        else packages.add(spec);
      }
    };
    await visit(path.join(ROOT, 'src/cli/run.ts'));
    expect([...packages].filter((p) => !p.startsWith('node:')).sort()).toEqual(['commander']);
    expect([...loaded].map((f) => path.relative(ROOT, f)).sort()).toEqual([
      'src/cli/agent/commands.ts',
      'src/cli/client/commands.ts',
      'src/cli/flags.ts',
      'src/cli/gateway/commands.ts',
      'src/cli/main.ts',
      'src/cli/package-info.ts',
      'src/cli/program.ts',
      'src/cli/run.ts',
    ]);
  });
});
