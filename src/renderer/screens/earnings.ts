/**
 * Earnings: today, the last 7 and 30 days, a bar chart by day (stacked by model), totals per
 * model, and the receipts, all from this Mac's own signed receipt log.
 */
import {
  earningsByDay,
  earningsByModel,
  earningsPeriods,
  formatCredits,
  formatDateTime,
  formatTokens,
  type EarningsTotal,
} from '../../shared/index.js';
import type { AppContext, Screen } from '../app.js';
import { h, replaceChildren, svg } from '../dom.js';
import { layoutChart } from '../model/chart.js';

const DAYS = 14;

function credits(t: EarningsTotal): string {
  return t.microCredits === null ? '—' : formatCredits(t.microCredits);
}

function periodCard(id: string, title: string, t: EarningsTotal): HTMLElement {
  return h(
    'section',
    { class: 'card period', id, 'aria-labelledby': `${id}-h` },
    h('h2', { id: `${id}-h` }, title),
    h(
      'p',
      { class: 'big' },
      h('span', { 'data-field': 'credits' }, credits(t)),
      h('span', { class: 'unit' }, t.microCredits === null ? '' : ' credits'),
    ),
    h(
      'p',
      { class: 'muted' },
      h('span', { 'data-field': 'jobs' }, String(t.jobs)),
      t.jobs === 1 ? ' job · ' : ' jobs · ',
      `${formatTokens(t.completionTokens)} tokens out`,
    ),
  );
}

/** The chart as SVG, with a text alternative. */
function chart(ctx: AppContext): Element {
  const e = ctx.state.earnings!;
  const days = earningsByDay(e, DAYS, Date.now());
  const layout = layoutChart(days);
  const palette = (m: string): number => layout.models.indexOf(m) % 6;
  const label = (v: number): string =>
    layout.unit === 'credits' ? (v >= 1 ? v.toFixed(v >= 10 ? 0 : 1) : v.toPrecision(2).replace(/\.?0+$/, '')) : formatTokens(v);
  const top = layout.ticks[layout.ticks.length - 1]!;
  const plotTop = 8;
  const yOf = (v: number): number => layout.bottom - ((layout.bottom - plotTop) * v) / top;
  const summary = days.filter((d) => Object.keys(d.tokensByModel).length > 0).length;
  const graphic = svg(
    'svg',
    {
      id: 'chart',
      viewBox: `0 0 ${layout.width} ${layout.height}`,
      role: 'img',
      'aria-label':
        `${layout.unit === 'credits' ? 'Credits' : 'Tokens'} per day, last ${DAYS} days; ` +
        `${summary} day${summary === 1 ? '' : 's'} with jobs.`,
      'data-unit': layout.unit,
    },
    ...layout.ticks.map((t) =>
      svg(
        'g',
        { class: 'tick' },
        svg('line', { x1: layout.left, x2: layout.width - 4, y1: yOf(t), y2: yOf(t) }),
        svg('text', { x: layout.left - 6, y: yOf(t) + 4, 'text-anchor': 'end' }, label(t)),
      ),
    ),
    ...layout.segments.map((s) =>
      svg(
        'rect',
        {
          x: s.x.toFixed(1),
          y: s.y.toFixed(1),
          width: s.width.toFixed(1),
          height: s.height.toFixed(1),
          class: `series-${palette(s.model)}`,
          'data-day': s.date,
          'data-model': s.model,
        },
        svg('title', {}, `${s.date} · ${s.model}: ${label(s.value)} ${layout.unit}`),
      ),
    ),
    ...days
      .map((d, i) => ({ d, i }))
      .filter(({ i }) => i % 2 === (DAYS - 1) % 2)
      .map(({ d, i }) => {
        const slot = (layout.width - layout.left - 8) / DAYS;
        return svg(
          'text',
          { class: 'day-label', x: (layout.left + i * slot + slot / 2).toFixed(1), y: layout.height - 6, 'text-anchor': 'middle' },
          d.date.slice(5),
        );
      }),
  );
  const legend = h(
    'ul',
    { class: 'legend' },
    ...layout.models.map((m) => h('li', {}, h('span', { class: `swatch series-${palette(m)}`, 'aria-hidden': 'true' }), m)),
  );
  return h('figure', { class: 'chart' }, graphic, legend);
}

/** The Earnings screen. */
export function earningsScreen(ctx: AppContext): Screen {
  const body = h('div', {});
  let key = '';
  return {
    title: 'Earnings',
    mount(el) {
      el.append(h('h1', {}, 'Earnings'), body);
    },
    update() {
      const e = ctx.state.earnings;
      const r = ctx.state.receipts;
      if (!e || !r) return;
      const k = JSON.stringify([e.totals, r.total, new Date().toDateString()]);
      if (k === key) return;
      key = k;
      const p = earningsPeriods(e, Date.now());
      replaceChildren(
        body,
        h(
          'div',
          { class: 'periods' },
          periodCard('today', 'Today', p.today),
          periodCard('week', 'Last 7 days', p.week),
          periodCard('month', 'Last 30 days', p.month),
        ),
        e.priceSource === 'none'
          ? h(
              'p',
              { class: 'notice', 'data-field': 'no-prices' },
              'No prices are configured, so this shows tokens: ' +
                'add your gateway’s prices under earnings.prices in config.json to see credits.',
            )
          : h(
              'p',
              { class: 'muted' },
              `Estimates at the prices in config.json, your share applied. The gateway’s ledger settles each job. ` +
                `Days are counted in ${e.timeZone}.`,
            ),
        e.rejectedLines > 0
          ? h(
              'p',
              { class: 'error' },
              `${e.rejectedLines} line${e.rejectedLines === 1 ? '' : 's'} of the receipt log did not verify and are not counted.`,
            )
          : null,
        h('section', { class: 'card', 'aria-labelledby': 'chart-h' }, h('h2', { id: 'chart-h' }, `By day, last ${DAYS} days`), chart(ctx)),
        h(
          'section',
          { class: 'card', 'aria-labelledby': 'by-model-h' },
          h('h2', { id: 'by-model-h' }, 'By model, last 31 days'),
          h(
            'table',
            { id: 'by-model' },
            h(
              'thead',
              {},
              h(
                'tr',
                {},
                h('th', { scope: 'col' }, 'Model'),
                h('th', { scope: 'col' }, 'Jobs'),
                h('th', { scope: 'col' }, 'Tokens in'),
                h('th', { scope: 'col' }, 'Tokens out'),
                h('th', { scope: 'col' }, 'Credits'),
              ),
            ),
            h(
              'tbody',
              {},
              ...earningsByModel(e).map((m) =>
                h(
                  'tr',
                  { 'data-model': m.model },
                  h('th', { scope: 'row' }, m.model),
                  h('td', {}, String(m.jobs)),
                  h('td', {}, formatTokens(m.promptTokens)),
                  h('td', {}, formatTokens(m.completionTokens)),
                  h('td', {}, credits(m)),
                ),
              ),
            ),
          ),
        ),
        h(
          'section',
          { class: 'card', 'aria-labelledby': 'receipts-h' },
          h('h2', { id: 'receipts-h' }, `Receipts (${r.total})`),
          h(
            'p',
            { class: 'muted' },
            'Each receipt is signed by this Mac over the exact request and reply it handled; ' +
              'the gateway checks it before crediting anyone.',
          ),
          r.receipts.length === 0
            ? h('p', { class: 'muted', 'data-field': 'no-receipts' }, 'No jobs yet.')
            : h(
                'table',
                { id: 'receipts' },
                h(
                  'thead',
                  {},
                  h(
                    'tr',
                    {},
                    h('th', { scope: 'col' }, 'Ended'),
                    h('th', { scope: 'col' }, 'Model'),
                    h('th', { scope: 'col' }, 'Tokens in'),
                    h('th', { scope: 'col' }, 'Tokens out'),
                    h('th', { scope: 'col' }, 'Finish'),
                    h('th', { scope: 'col' }, 'Job'),
                  ),
                ),
                h(
                  'tbody',
                  {},
                  ...r.receipts.map(({ receipt: x }) =>
                    h(
                      'tr',
                      { 'data-job': x.jobId },
                      h('td', {}, formatDateTime(x.endedAt)),
                      h('td', {}, x.model),
                      h('td', {}, String(x.promptTokens)),
                      h('td', {}, String(x.completionTokens)),
                      h('td', {}, x.finishReason),
                      h('td', { class: 'mono' }, x.jobId.slice(0, 10)),
                    ),
                  ),
                ),
              ),
        ),
      );
    },
  };
}
