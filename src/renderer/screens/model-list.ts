/**
 * The model lists the Set up and Models screens share: installed models (use, remove), the
 * catalog with whether each model fits this Mac, and download progress.
 */
import { formatBytes, modelFit, type CatalogEntry, type DownloadProgress, type ModelFit } from '../../shared/index.js';
import type { AppContext } from '../app.js';
import { actionButton, h, replaceChildren, uid, type Child } from '../dom.js';
import { badge } from './common.js';

const FIT_LABEL: Readonly<Record<ModelFit, [string, 'ok' | 'warn' | 'fail' | 'muted']>> = {
  fits: ['Fits this Mac', 'ok'],
  tight: ['Fits, once memory frees up', 'warn'],
  'too-big': ['Too big for this Mac', 'fail'],
  unknown: ['Size unknown', 'muted'],
};

/** The memory line: "This Mac has 16 GB of memory, 9.0 GB free now." */
export function memoryLine(ctx: AppContext): string {
  const m = ctx.state.models?.memory;
  return m
    ? `This Mac has ${formatBytes(m.totalBytes)} of memory, ${formatBytes(m.availableBytes)} free now.`
    : 'This Mac’s memory could not be read.';
}

/** A download's progress: a labelled progress bar with bytes and speed. */
export function downloadBar(p: DownloadProgress): HTMLElement {
  const id = uid('dl');
  const total = p.totalBytes;
  const label =
    p.phase === 'hashing-partial'
      ? `Checking the ${formatBytes(p.resumedFromBytes)} already downloaded…`
      : p.phase === 'verifying'
        ? 'Verifying sha256…'
        : p.phase === 'done'
          ? 'Downloaded and verified.'
          : p.phase === 'failed'
            ? `Failed: ${p.error?.message ?? 'no reason given'}`
            : `${formatBytes(p.receivedBytes)}${total ? ` of ${formatBytes(total)}` : ''}` +
              `${p.bytesPerSecond > 0 ? ` · ${formatBytes(p.bytesPerSecond)}/s` : ''}`;
  const bar = h('progress', { id, max: total ?? 1, 'aria-describedby': `${id}-text` });
  if (total && p.phase !== 'starting') bar.value = p.phase === 'done' ? total : Math.min(total, p.receivedBytes);
  if (p.phase === 'done') bar.value = total ?? 1;
  return h(
    'div',
    { class: 'download', 'data-model': p.modelId, 'data-phase': p.phase },
    h('label', { for: id, class: 'visually-hidden' }, `Download of ${p.modelId}`),
    bar,
    h('span', { id: `${id}-text`, class: 'muted' }, label),
  );
}

/** Installed models: which one is served, use another, remove. */
export function installedList(ctx: AppContext): HTMLElement {
  const models = ctx.state.models;
  if (!models || models.installed.length === 0)
    return h('p', { class: 'muted', 'data-field': 'no-installed' }, 'No model is installed yet.');
  const list = h('ul', { class: 'models' });
  for (const m of models.installed) {
    const selected = models.selected === m.id;
    list.append(
      h(
        'li',
        { 'data-model': m.id, 'data-selected': String(selected) },
        h(
          'div',
          { class: 'model-name' },
          h('strong', {}, m.id),
          selected ? badge('In use', 'ok') : null,
          m.synthetic ? badge('synthetic', 'warn') : null,
        ),
        h('div', { class: 'muted' }, `${formatBytes(m.bytes)} · sha256 ${m.sha256.slice(0, 12)}… · ${m.license ?? 'license unknown'}`),
        h(
          'div',
          { class: 'row-actions' },
          selected
            ? null
            : actionButton(
                'Use this model',
                { class: 'primary', 'data-action': 'select' },
                async () => {
                  await ctx.bridge.selectModel({ id: m.id });
                  ctx.notice(`${m.id} selected.`);
                  await ctx.refresh('models', 'status');
                },
                ctx.report,
              ),
          selected
            ? null
            : actionButton(
                'Remove',
                { class: 'danger', 'data-action': 'remove' },
                async () => {
                  if (!window.confirm(`Delete ${m.id} (${formatBytes(m.bytes)}) from this Mac?`)) return;
                  await ctx.bridge.removeModel({ id: m.id });
                  await ctx.refresh('models');
                },
                ctx.report,
              ),
        ),
      ),
    );
  }
  return list;
}

/** The catalog, with fit, and download buttons (a hash field where the catalog has none). */
export function catalogList(ctx: AppContext, options: { selectAfterDownload: boolean }): HTMLElement {
  const models = ctx.state.models;
  if (!models) return h('p', { class: 'muted' }, 'Loading…');
  const installed = new Set(models.installed.map((m) => m.id));
  const list = h('ul', { class: 'models catalog' });
  const entries = [...models.catalog].sort((a, b) => rank(a) - rank(b) || a.name.localeCompare(b.name));
  // Models that fit first; among them, those the catalog can verify (a known sha256) first.
  function rank(e: CatalogEntry): number {
    return { fits: 0, tight: 1, unknown: 2, 'too-big': 3 }[modelFit(e.minMemoryBytes, e.bytes, models!.memory)] * 2 + (e.sha256 ? 0 : 1);
  }
  for (const entry of entries) {
    const fit = modelFit(entry.minMemoryBytes, entry.bytes, models.memory);
    const [fitText, fitKind] = FIT_LABEL[fit];
    const progress = ctx.state.downloads.get(entry.id);
    const downloading = progress && progress.phase !== 'done' && progress.phase !== 'failed';
    const hashId = uid('sha');
    const hashInput = entry.sha256
      ? null
      : h('input', {
          id: hashId,
          type: 'text',
          inputmode: 'latin',
          autocomplete: 'off',
          spellcheck: 'false',
          pattern: '[0-9a-f]{64}',
          placeholder: '64 hex digits',
          'aria-describedby': `${hashId}-help`,
        });
    const action = installed.has(entry.id)
      ? h('span', { class: 'muted' }, 'Installed')
      : downloading
        ? null
        : actionButton(
            options.selectAfterDownload ? 'Download and use' : 'Download',
            { class: fit === 'too-big' ? '' : 'primary', 'data-action': 'download', disabled: fit === 'too-big' },
            async () => {
              const sha256 = hashInput ? hashInput.value.trim().toLowerCase() : undefined;
              if (hashInput && !/^[0-9a-f]{64}$/.test(sha256 ?? '')) {
                hashInput.setAttribute('aria-invalid', 'true');
                hashInput.focus();
                throw new Error(`Enter the SHA-256 of ${entry.name} from its download page: Nightjar installs only files it can verify.`);
              }
              if (options.selectAfterDownload) ctx.state.selectWhenDownloaded.add(entry.id);
              await ctx.bridge.downloadModel({ id: entry.id, ...(sha256 ? { sha256 } : {}) });
              await ctx.refresh('models');
            },
            ctx.report,
          );
    list.append(
      h(
        'li',
        { 'data-model': entry.id, 'data-fit': fit },
        h(
          'div',
          { class: 'model-name' },
          h('strong', {}, entry.name),
          badge(fitText, fitKind),
          entry.verified ? badge('verified', 'info') : null,
        ),
        h(
          'div',
          { class: 'muted' },
          [
            entry.quantization,
            entry.bytes === null ? 'size unknown' : formatBytes(entry.bytes),
            `needs ${formatBytes(entry.minMemoryBytes)}`,
            entry.license,
          ].join(' · '),
        ),
        hashInput
          ? h(
              'div',
              { class: 'field' },
              h('label', { for: hashId }, 'SHA-256 of the file'),
              hashInput,
              h(
                'small',
                { id: `${hashId}-help`, class: 'muted' },
                'The catalog has no hash for this file; copy it from the file’s page on its host.',
              ),
            )
          : null,
        progress ? downloadBar(progress) : null,
        h('div', { class: 'row-actions' }, action),
      ),
    );
  }
  return list;
}

/**
 * Redraws model lists in `container` when what they list changes (models, selection, a download
 * starting or ending), and otherwise only moves the progress bars, so a hash being typed into
 * the catalog survives the download events of another model. Returns the new key.
 */
export function refreshModelLists(ctx: AppContext, container: HTMLElement, previousKey: string, build: () => Child[]): string {
  const m = ctx.state.models;
  const downloads = [...ctx.state.downloads.values()];
  const key = JSON.stringify([
    m?.selected,
    m?.installed.map((x) => x.id),
    m?.catalog.map((x) => x.id),
    m?.memory,
    downloads.map((d) => [d.modelId, d.phase === 'done' || d.phase === 'failed']),
  ]);
  if (key !== previousKey) {
    replaceChildren(container, ...build());
    return key;
  }
  for (const d of downloads) {
    const old = container.querySelector(`.download[data-model="${CSS.escape(d.modelId)}"]`);
    if (old && (old.getAttribute('data-phase') !== d.phase || d.phase === 'downloading')) old.replaceWith(downloadBar(d));
  }
  return key;
}
