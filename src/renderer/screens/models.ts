/** Models: what is installed (use, remove), downloads under way, and the catalog with fit. */
import type { AppContext, Screen } from '../app.js';
import { h } from '../dom.js';
import { catalogList, installedList, memoryLine, refreshModelLists } from './model-list.js';

/** The Models screen. */
export function modelsScreen(ctx: AppContext): Screen {
  const memory = h('p', { class: 'muted', 'data-field': 'memory' });
  const installed = h('div', { id: 'installed' });
  const catalog = h('div', { id: 'catalog' });
  let installedKey = '';
  let catalogKey = '';
  return {
    title: 'Models',
    mount(el) {
      el.append(
        h('h1', {}, 'Models'),
        memory,
        h('section', { class: 'card', 'aria-labelledby': 'installed-h' }, h('h2', { id: 'installed-h' }, 'On this Mac'), installed),
        h(
          'section',
          { class: 'card', 'aria-labelledby': 'catalog-h' },
          h('h2', { id: 'catalog-h' }, 'Catalog'),
          h(
            'p',
            { class: 'muted' },
            'Every file is checked against its sha256 while it downloads and again before each load; ' +
              'a file that does not match is never served.',
          ),
          catalog,
        ),
      );
    },
    update() {
      memory.textContent = memoryLine(ctx);
      installedKey = refreshModelLists(ctx, installed, installedKey, () => [installedList(ctx)]);
      catalogKey = refreshModelLists(ctx, catalog, catalogKey, () => [catalogList(ctx, { selectAfterDownload: false })]);
    },
  };
}
