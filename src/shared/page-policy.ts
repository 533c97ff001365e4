/**
 * The one Content Security Policy every Nightjar page is served with — the agent's dashboard (on
 * its control server, and in the app), the gateway's operator dashboard and the browser chat page:
 * scripts, styles, images, fonts and connections from the page's own origin only, no inline code,
 * no eval, no framing, no forms, no base URL.
 */

/** The directives of {@link PAGE_CSP}, as helmet and Electron's session take them. */
export const PAGE_CSP_DIRECTIVES: Readonly<Record<string, readonly string[]>> = {
  'default-src': ["'none'"],
  'script-src': ["'self'"],
  'style-src': ["'self'"],
  'img-src': ["'self'", 'data:'],
  'font-src': ["'self'"],
  'connect-src': ["'self'"],
  'base-uri': ["'none'"],
  'form-action': ["'none'"],
  'frame-ancestors': ["'none'"],
};

/** `directives` as a Content-Security-Policy header value, written the way helmet writes it. */
export function cspHeader(directives: Readonly<Record<string, readonly string[]>>): string {
  return Object.entries(directives)
    .map(([name, values]) => `${name} ${values.join(' ')}`)
    .join(';');
}

/** The Content-Security-Policy header of every Nightjar page. */
export const PAGE_CSP = cspHeader(PAGE_CSP_DIRECTIVES);
