/**
 * app://dashboard: the built dashboard served from inside the app.
 *
 * Why a custom scheme and not file://: a page on file:// has an opaque origin that every other
 * local file shares, so "is this our dashboard?" could not be answered exactly; file:// also
 * carries legacy privileges (the grantFileProtocolExtraPrivileges fuse is off in the build).
 * app:// is registered as a privileged *standard* scheme (real origins, relative URLs) and
 * *secure* (a secure context); the handler serves only the dashboard's own files, each with the
 * strict CSP, and refuses any other host or path.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { ProtocolLike } from './electron-like.js';
import { DASHBOARD_HOST, DASHBOARD_SCHEME } from './surface.js';
import { APP_CSP } from './window.js';

/** What protocol.registerSchemesAsPrivileged is given (before the app is ready). */
export const DASHBOARD_SCHEME_PRIVILEGES = {
  scheme: DASHBOARD_SCHEME,
  privileges: {
    standard: true,
    secure: true,
    supportFetchAPI: false,
    corsEnabled: false,
    stream: false,
    bypassCSP: false,
    allowServiceWorkers: false,
  },
} as const;

const TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
};

/**
 * The file under `root` that `url` names, or null: only app://dashboard, only a flat file name
 * of a known type (no folders, no dot files, no escapes); `/` is index.html.
 */
export function dashboardFile(url: string, root: string): string | null {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return null;
  }
  if (u.protocol !== `${DASHBOARD_SCHEME}:` || u.host !== DASHBOARD_HOST || u.username || u.password) return null;
  let name: string;
  try {
    name = decodeURIComponent(u.pathname.slice(1)) || 'index.html';
  } catch {
    return null;
  }
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name) || !TYPES[path.extname(name)]) return null;
  return path.join(root, name);
}

/** Answers one app:// request from the dashboard folder `root`. */
export async function dashboardResponse(
  request: Request,
  root: string,
  read: (file: string) => Promise<Uint8Array> = readFile,
): Promise<Response> {
  const file = request.method === 'GET' ? dashboardFile(request.url, root) : null;
  const body = file ? await read(file).catch(() => null) : null;
  if (!file || !body)
    return new Response('Not found', {
      status: 404,
      headers: { 'content-type': 'text/plain; charset=utf-8', 'content-security-policy': APP_CSP },
    });
  return new Response(body as Uint8Array<ArrayBuffer>, {
    status: 200,
    headers: {
      'content-type': TYPES[path.extname(file)]!,
      'content-security-policy': APP_CSP,
      'x-content-type-options': 'nosniff',
      'cache-control': 'no-store',
    },
  });
}

/** Serves app://dashboard from `root`; dispose() stops. */
export function serveDashboard(protocol: ProtocolLike, root: string): { dispose(): void } {
  protocol.handle(DASHBOARD_SCHEME, (request) => dashboardResponse(request, root));
  return { dispose: () => protocol.unhandle(DASHBOARD_SCHEME) };
}
