/**
 * `nightjar models`: the models on this machine and the catalog. list, pull (with a progress
 * bar, resuming a partial download), rm, select, and synth (a synthetic model for development).
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { NightjarError, type DownloadProgress } from '../../shared/index.js';
import {
  BUILT_IN_CATALOG,
  ModelStore,
  SYNTHETIC_SHAPES,
  isSyntheticShapeName,
  loadCatalogFile,
  mergeCatalogs,
  syntheticModelId,
  updateConfig,
  writeSyntheticModel,
} from '../../main/agent/index.js';
import { formatBytes, formatDuration } from '../../shared/index.js';
import { cliConfig, cliPaths, indent, runningAgent, table } from './agent-context.js';
import type { CliIo } from '../io.js';

/** Usage text of `nightjar models`. */
export const MODELS_USAGE = `Usage:
  nightjar models list [--json]               installed models, partial downloads, the catalog
  nightjar models pull ID [--sha256 HEX]      download a catalog model (resumes a partial one)
  nightjar models rm ID                       delete an installed model
  nightjar models select ID                   serve this installed model (the running agent
                                              drains, unloads and loads it)
  nightjar models synth [--shape NAME] [--seed N] [--out FILE]
                                              write a synthetic model (random weights, for
                                              development) into the models directory, or to FILE

Downloads check the file's sha256 while it streams and install nothing that does not match.
Catalog entries that are not verified carry no hash: give the one from the file's download page
with --sha256. Synthetic shapes: ${Object.keys(SYNTHETIC_SHAPES).join(', ')}.
`;

/** Runs `nightjar models …`. */
export async function modelsCommand(argv: string[], io: CliIo): Promise<number> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case 'list':
    case 'ls':
      return list(rest, io);
    case 'pull':
      return pull(rest, io);
    case 'rm':
    case 'remove':
      return remove(rest, io);
    case 'select':
      return select(rest, io);
    case 'synth':
      return synth(rest, io);
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      io.stdout.write(MODELS_USAGE);
      return 0;
    default:
      throw new NightjarError('NJ_USAGE', `unknown models command "${sub}"`);
  }
}

async function context(
  io: CliIo,
): Promise<{ store: ModelStore; catalog: ReturnType<typeof mergeCatalogs>; selected: string | null; paths: ReturnType<typeof cliPaths> }> {
  const paths = cliPaths(io);
  const config = await cliConfig(paths);
  const extra = config.catalogFile ? await loadCatalogFile(config.catalogFile) : null;
  return {
    paths,
    store: new ModelStore({ dir: paths.modelsDir }),
    catalog: mergeCatalogs(BUILT_IN_CATALOG, extra),
    selected: config.model.selected,
  };
}

function oneId(rest: string[], what: string): string {
  const { positionals } = parseArgs({ args: rest, allowPositionals: true, options: {} });
  if (positionals.length !== 1) throw new NightjarError('NJ_USAGE', `models ${what} takes one model id`);
  return positionals[0]!;
}

async function list(rest: string[], io: CliIo): Promise<number> {
  const { values } = parseArgs({ args: rest, options: { json: { type: 'boolean' } } });
  const { store, catalog, selected } = await context(io);
  const installed = await store.list();
  const partials = await store.partials();
  if (values.json) {
    io.stdout.write(JSON.stringify({ selected, installed, partials, catalog }, null, 2) + '\n');
    return 0;
  }
  io.stdout.write(`Installed in ${store.dir}:\n`);
  if (installed.length === 0) io.stdout.write('  none — `nightjar models pull ID` downloads one\n');
  else {
    const rows = installed.map((m) => [
      m.id === selected ? '*' : ' ',
      m.id,
      formatBytes(m.bytes),
      m.sha256.slice(0, 12),
      m.synthetic ? 'synthetic' : (m.license ?? ''),
    ]);
    io.stdout.write(indent(table(rows), ' '));
  }
  if (selected && !installed.some((m) => m.id === selected)) io.stdout.write(`  (the selected model ${selected} is not installed)\n`);
  for (const p of partials) io.stdout.write(`  partial download: ${p.file} (${formatBytes(p.bytes)}) — pull again to resume\n`);
  io.stdout.write('\nCatalog:\n');
  const rows = catalog.map((m) => [
    m.id,
    m.quantization,
    `${m.contextLength} ctx`,
    m.license,
    m.sha256 ? (m.verified ? 'verified' : 'hash known') : 'needs --sha256',
  ]);
  io.stdout.write(indent(table(rows), '  '));
  return 0;
}

/** A progress line: a bar on a terminal, a line per 10% otherwise. */
function progressPrinter(io: CliIo, id: string): { update(p: DownloadProgress): void; done(): void } {
  const tty = io.stderr.isTTY === true;
  let lastTenth = -1;
  let drew = false;
  return {
    update(p) {
      const total = p.totalBytes;
      const fraction = total ? Math.min(1, p.receivedBytes / total) : 0;
      if (p.phase === 'hashing-partial') {
        io.stderr.write(`${tty ? '\r' : ''}Checking the ${formatBytes(p.resumedFromBytes)} already downloaded…${tty ? '' : '\n'}`);
        drew = tty;
        return;
      }
      if (p.phase !== 'downloading') return;
      const rate = p.bytesPerSecond > 0 ? `${formatBytes(p.bytesPerSecond)}/s` : '';
      const eta = total && p.bytesPerSecond > 0 ? ` · ${formatDuration(((total - p.receivedBytes) / p.bytesPerSecond) * 1000)} left` : '';
      if (tty) {
        const width = 30;
        const filled = Math.round(fraction * width);
        io.stderr.write(
          `\r${id} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}% ${formatBytes(p.receivedBytes)}${total ? ' of ' + formatBytes(total) : ''} ${rate}${eta}   `,
        );
        drew = true;
      } else {
        const tenth = Math.floor(fraction * 10);
        if (tenth !== lastTenth) {
          lastTenth = tenth;
          io.stderr.write(`${id}: ${tenth * 10}% (${formatBytes(p.receivedBytes)}${total ? ' of ' + formatBytes(total) : ''}) ${rate}\n`);
        }
      }
    },
    done() {
      if (drew) io.stderr.write('\n');
    },
  };
}

async function pull(rest: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: { sha256: { type: 'string' } } });
  if (positionals.length !== 1) throw new NightjarError('NJ_USAGE', 'models pull takes one model id (see `nightjar models list`)');
  const id = positionals[0]!;
  const { store, catalog } = await context(io);
  const entry = catalog.find((m) => m.id === id);
  if (!entry) throw new NightjarError('NJ_MODEL_NOT_INSTALLED', `${id} is not in the catalog.`);
  const progress = progressPrinter(io, id);
  let installed;
  try {
    installed = await store.pull(entry, {
      ...(values.sha256 ? { sha256: values.sha256 } : {}),
      signal: io.signal,
      onProgress: (p) => progress.update(p),
    });
  } finally {
    progress.done();
  }
  io.stdout.write(
    `Installed ${installed.id}: ${formatBytes(installed.bytes)}, sha256 ${installed.sha256}.\nServe it with \`nightjar models select ${installed.id}\`.\n`,
  );
  return 0;
}

async function remove(rest: string[], io: CliIo): Promise<number> {
  const id = oneId(rest, 'rm');
  const { store, paths } = await context(io);
  const client = await runningAgent(paths);
  if (client) await client.call('removeModel', { id });
  else if (!(await store.remove(id)))
    throw new NightjarError('NJ_MODEL_NOT_INSTALLED', `The model ${id} is not installed on this machine.`);
  io.stdout.write(`Removed ${id}.\n`);
  return 0;
}

async function select(rest: string[], io: CliIo): Promise<number> {
  const id = oneId(rest, 'select');
  const { store, paths } = await context(io);
  await store.require(id);
  const client = await runningAgent(paths);
  if (client) {
    await client.call('selectModel', { id });
    io.stdout.write(`Selected ${id}; the running agent is switching to it.\n`);
  } else {
    await updateConfig(paths.configFile, (c) => ({ ...c, model: { ...c.model, selected: id } }));
    io.stdout.write(`Selected ${id}; \`nightjar serve\` will serve it.\n`);
  }
  return 0;
}

async function synth(rest: string[], io: CliIo): Promise<number> {
  const { values } = parseArgs({
    args: rest,
    options: { shape: { type: 'string' }, out: { type: 'string' }, seed: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    io.stdout.write(MODELS_USAGE);
    return 0;
  }
  const shape = values.shape ?? 'tiny';
  if (!isSyntheticShapeName(shape))
    throw new NightjarError('NJ_USAGE', `unknown shape "${shape}"; choose one of ${Object.keys(SYNTHETIC_SHAPES).join(', ')}`);
  const seed = values.seed === undefined ? 0 : Number(values.seed);
  if (!Number.isInteger(seed) || seed < 0) throw new NightjarError('NJ_USAGE', '--seed must be a non-negative integer');
  const store = values.out ? null : (await context(io)).store;
  const id = syntheticModelId(shape);
  const out = values.out ? path.resolve(io.cwd, values.out) : path.join(store!.dir, store!.fileNameFor(id));
  let lastPercent = -1;
  const file = await writeSyntheticModel({
    path: out,
    shape,
    seed,
    signal: io.signal,
    onProgress(done, total) {
      const percent = Math.floor((done / total) * 100);
      if (percent !== lastPercent && io.stderr.isTTY) {
        lastPercent = percent;
        io.stderr.write(`\rwriting ${shape}: ${percent}%`);
      }
    },
  });
  if (io.stderr.isTTY) io.stderr.write('\n');
  if (store) await store.adopt(id, { synthetic: true });
  io.stdout.write(`${file.path}\n  model id ${file.modelId}, ${file.bytes} bytes, sha256 ${file.sha256}\n`);
  if (store) io.stdout.write(`  installed; serve it with \`nightjar models select ${id}\`\n`);
  return 0;
}
