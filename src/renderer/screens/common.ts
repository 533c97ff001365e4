/** Pieces several screens use: key/value lists, badges, a sparkline, durations. */
import { h, svg, type Child } from '../dom.js';

/** A definition list of label → value rows; each value gets `data-field` for tests and styling. */
export function facts(rows: readonly [label: string, field: string, value: Child][]): HTMLDListElement {
  const dl = h('dl', { class: 'facts' });
  for (const [label, field, value] of rows) dl.append(h('dt', {}, label), h('dd', { 'data-field': field }, value));
  return dl;
}

/** Sets the text of the element with `data-field="<field>"` inside `root`. */
export function setField(root: ParentNode, field: string, value: string): void {
  const el = root.querySelector(`[data-field="${field}"]`);
  if (el && el.textContent !== value) el.textContent = value;
}

/** A small coloured label. */
export function badge(text: string, kind: 'ok' | 'warn' | 'fail' | 'info' | 'muted' = 'info'): HTMLSpanElement {
  return h('span', { class: `badge ${kind}` }, text);
}

/** A section with a heading. */
export function section(title: string, attrs: Record<string, string>, ...children: Child[]): HTMLElement {
  return h('section', { class: 'card', ...attrs }, h('h2', {}, title), ...children);
}

/** A line of recent values, scaled to its own maximum. */
export function sparkline(values: readonly number[], label: string): SVGSVGElement {
  const width = 160;
  const height = 36;
  const max = Math.max(1, ...values);
  const step = values.length > 1 ? width / (values.length - 1) : width;
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${(height - 2 - ((height - 4) * v) / max).toFixed(1)}`).join(' ');
  return svg(
    'svg',
    { class: 'sparkline', viewBox: `0 0 ${width} ${height}`, width, height, role: 'img', 'aria-label': label },
    values.length > 1 ? svg('polyline', { points, fill: 'none' }) : null,
  );
}
