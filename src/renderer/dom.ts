/**
 * A few lines of DOM building, so screens read as markup. Text always goes in as text nodes
 * (never innerHTML), so nothing an agent, a gateway or a catalog says can become markup.
 */

/** Attribute values: strings and numbers are set, true sets an empty attribute, false and null leave it out. */
export type Attrs = Record<string, string | number | boolean | null | undefined>;
/** What may go inside an element. */
export type Child = Node | string | number | null | undefined | false;

function append(el: Element, children: readonly Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    el.append(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
  }
}

function setAttrs(el: Element, attrs: Attrs): void {
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    el.setAttribute(k, v === true ? '' : String(v));
  }
}

/** An HTML element with attributes and children. */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

/** An SVG element with attributes and children. */
export function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

/** Replaces an element's children. */
export function replaceChildren(el: Element, ...children: Child[]): void {
  el.replaceChildren();
  append(el, children);
}

/** A button that runs `action`, disabled while it runs; errors go to `onError`. */
export function actionButton(
  label: string,
  attrs: Attrs,
  action: () => Promise<unknown>,
  onError: (err: unknown) => void,
): HTMLButtonElement {
  const b = h('button', { type: 'button', ...attrs }, label);
  b.addEventListener('click', () => {
    b.disabled = true;
    b.setAttribute('aria-busy', 'true');
    action()
      .catch(onError)
      .finally(() => {
        b.disabled = false;
        b.removeAttribute('aria-busy');
      });
  });
  return b;
}

let ids = 0;
/** A unique id for label/aria wiring. */
export function uid(prefix: string): string {
  return `${prefix}-${++ids}`;
}
