/**
 * Static web pages the gateway serves (the browser chat page, the operator dashboard): files
 * from a folder under a URL prefix, with a strict Content Security Policy — scripts and styles
 * only from this origin, no inline code, no framing.
 */
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { NightjarError } from '../shared/index.js';

/** A folder served under a URL prefix. */
export interface StaticSite {
  /** URL prefix, with leading and trailing slash, e.g. '/chat/'. */
  prefix: string;
  /** Folder holding index.html and its assets. */
  dir: string;
}

/** The Content-Security-Policy every static page is served with. */
export const PAGE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.map': 'application/json',
  '.woff2': 'font/woff2',
};

/** Registers GET routes for each site. Unknown files and paths outside the folder are 404 NJ_NOT_FOUND. */
export function registerStaticSites(app: FastifyInstance, sites: readonly StaticSite[]): void {
  for (const site of sites) {
    if (!/^\/[a-z0-9-]+\/$/.test(site.prefix)) {
      throw new NightjarError('NJ_CONFIG_INVALID', `static site prefix "${site.prefix}" must look like /name/`);
    }
    const root = path.resolve(site.dir);
    app.get(site.prefix.slice(0, -1), async (_req, reply) => reply.redirect(site.prefix, 301));
    app.get(`${site.prefix}*`, async (req, reply) => {
      const rest = decodeURIComponent((req.params as { '*': string })['*'] || 'index.html');
      const file = path.resolve(root, rest);
      const info = file.startsWith(root + path.sep) ? await stat(file).catch(() => null) : null;
      if (!info?.isFile()) throw new NightjarError('NJ_NOT_FOUND', 'no such page');
      return reply
        .header('content-type', TYPES[path.extname(file)] ?? 'application/octet-stream')
        .header('content-security-policy', PAGE_CSP)
        .header('x-content-type-options', 'nosniff')
        .header('referrer-policy', 'no-referrer')
        .header('cache-control', 'no-cache')
        .send(await readFile(file));
    });
  }
}
