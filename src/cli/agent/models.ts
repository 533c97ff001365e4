/**
 * `nightjar models`: the models on this machine and the catalog. list, pull (with a progress
 * bar, resuming a partial download), rm, select, and synth (a synthetic model for development).
 */
import path from 'node:path';
import { NightjarError, formatBytes, formatDuration, type DownloadProgress } from '../../shared/index.js';
import {
  BUILT_IN_CATALOG,
  ModelStore,
  loadCatalogFile,
  mergeCatalogs,
  syntheticModelId,
  updateConfig,
  writeSyntheticModel,
  type SyntheticShapeName,
} from '../../main/agent/index.js';
import type { CommandContext, CommandIo } from '../io.js';
import { table } from '../table.js';
import { cliConfig, cliPaths, indent, runningAgent } from './agent-context.js';

/** Flags of `nightjar models list`. */
export interface ModelsListFlags {
  json?: boolean;
}

/** Flags of `nightjar models pull`. */
export interface ModelsPullFlags {
  /** The file's sha256, for a catalog entry that does not carry one. */
  sha256?: string;
}

/** Flags of `nightjar models synth`. */
export interface ModelsSynthFlags {
  shape: SyntheticShapeName;
  seed: number;
  out?: string;
}

async function context(
  io: CommandIo,
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

/** Runs `nightjar models list`. */
export async function listModels(values: ModelsListFlags, { io }: CommandContext): Promise<number> {
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
function progressPrinter(io: CommandIo, id: string): { update(p: DownloadProgress): void; done(): void } {
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
          `\r${id} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}% ` +
            `${formatBytes(p.receivedBytes)}${total ? ' of ' + formatBytes(total) : ''} ${rate}${eta}   `,
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

/** Runs `nightjar models pull ID`. */
export async function pullModel(id: string, values: ModelsPullFlags, { io, signal }: CommandContext): Promise<number> {
  const { store, catalog } = await context(io);
  const entry = catalog.find((m) => m.id === id);
  if (!entry) throw new NightjarError('NJ_MODEL_NOT_INSTALLED', `${id} is not in the catalog.`);
  const progress = progressPrinter(io, id);
  let installed;
  try {
    installed = await store.pull(entry, {
      sha256: values.sha256 || undefined,
      signal,
      onProgress: (p) => progress.update(p),
    });
  } finally {
    progress.done();
  }
  io.stdout.write(
    `Installed ${installed.id}: ${formatBytes(installed.bytes)}, sha256 ${installed.sha256}.\n` +
      `Serve it with \`nightjar models select ${installed.id}\`.\n`,
  );
  return 0;
}

/** Runs `nightjar models rm ID`. */
export async function removeModel(id: string, { io }: CommandContext): Promise<number> {
  const { store, paths } = await context(io);
  const client = await runningAgent(paths);
  if (client) await client.call('removeModel', { id });
  else if (!(await store.remove(id)))
    throw new NightjarError('NJ_MODEL_NOT_INSTALLED', `The model ${id} is not installed on this machine.`);
  io.stdout.write(`Removed ${id}.\n`);
  return 0;
}

/** Runs `nightjar models select ID`. */
export async function selectModel(id: string, { io }: CommandContext): Promise<number> {
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

/** Runs `nightjar models synth`. */
export async function synthModel({ shape, seed, ...values }: ModelsSynthFlags, { io, signal }: CommandContext): Promise<number> {
  const store = values.out ? null : (await context(io)).store;
  const id = syntheticModelId(shape);
  const out = values.out ? path.resolve(io.cwd, values.out) : path.join(store!.dir, store!.fileNameFor(id));
  let lastPercent = -1;
  const file = await writeSyntheticModel({
    path: out,
    shape,
    seed,
    signal,
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
