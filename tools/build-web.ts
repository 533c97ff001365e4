/**
 * Builds the web pages besides the compiled TypeScript (`npm run build:web`, the last step of
 * `npm run build`):
 * - what the menu-bar app and `nightjar serve --dashboard` load: the dashboard bundle
 *   (dist/app/renderer: index.html, app.js, app.css, icon.svg) and the preload script as one
 *   CommonJS file (dist/app/preload.cjs), which a sandboxed preload must be: it may require
 *   nothing but 'electron';
 * - the browser chat page the gateway serves at /chat/ (dist/web/chat).
 *
 *   npx tsx tools/build-web.ts [appOutDir]     (default dist/app)
 */
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { build } from 'esbuild';
import { buildDashboard } from '../src/cli/agent/dashboard.js';
import { packageRoot } from '../src/cli/package-info.js';
import { buildWebPages } from '../src/cli/web-pages.js';

/** Builds the renderer and the preload into `outDir`; returns the files written, relative to it. */
export async function buildApp(outDir: string): Promise<string[]> {
  const root = packageRoot();
  await rm(outDir, { recursive: true, force: true });
  const renderer = await buildDashboard(path.join(outDir, 'renderer'));
  await build({
    entryPoints: [path.join(root, 'src/main/electron/preload.ts')],
    outfile: path.join(outDir, 'preload.cjs'),
    bundle: true,
    format: 'cjs',
    platform: 'node',
    target: 'chrome140',
    external: ['electron'],
    minify: false,
    legalComments: 'none',
    logLevel: 'silent',
  });
  return [...renderer.map((f) => `renderer/${f}`), 'preload.cjs'];
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const out = path.resolve(process.argv[2] ?? path.join(packageRoot(), 'dist/app'));
  const files = await buildApp(out);
  console.log(`built ${files.length} files in ${path.relative(process.cwd(), out) || '.'}: ${files.join(', ')}`);
  console.log(`built the chat page in ${path.relative(process.cwd(), await buildWebPages()) || '.'}`);
}
