/**
 * The dashboard for a headless agent: building the renderer (src/renderer) into a folder the
 * control server serves, finding the prebuilt one, opening it in a browser, and the
 * `nightjar dashboard` command that opens a running agent's dashboard.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as EsbuildModule from 'esbuild';
import { NightjarError } from '../../shared/index.js';
import { DASHBOARD_TICKET_PATH, type ControlFile } from '../../main/agent/index.js';
import { cliPaths, requireRunningAgent } from './agent-context.js';
import type { CommandContext, CommandIo } from '../io.js';
import { packageRoot } from '../package-info.js';

/** Options of {@link buildDashboard}. */
export interface BuildDashboardOptions {
  /** Minify app.js. Defaults to true. */
  minify?: boolean;
  /** Where src/renderer is. Defaults to the package's. */
  sourceDir?: string;
}

/**
 * Bundles the dashboard into `outDir`: app.js (src/renderer/main.ts and the shared code it uses,
 * one ES module) and the static files (index.html, app.css, icon.svg). No inline script or style
 * anywhere, so it runs under the strict CSP both the control server and the app serve it with.
 */
export async function buildDashboard(outDir: string, options: BuildDashboardOptions = {}): Promise<string[]> {
  let esbuild: typeof EsbuildModule;
  try {
    esbuild = await import('esbuild');
  } catch (cause) {
    throw new NightjarError(
      'NJ_CONFIG_INVALID',
      'building the dashboard needs esbuild (a development dependency); run npm ci, or npm run build for a prebuilt one',
      { cause },
    );
  }
  const src = options.sourceDir ?? path.join(packageRoot(), 'src/renderer');
  const entry = path.join(src, 'main.ts');
  if (!existsSync(entry)) throw new NightjarError('NJ_CONFIG_INVALID', `the dashboard source ${entry} is missing`);
  await mkdir(outDir, { recursive: true });
  await esbuild.build({
    entryPoints: [entry],
    outfile: path.join(outDir, 'app.js'),
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: ['chrome120', 'safari17'],
    minify: options.minify ?? true,
    legalComments: 'none',
    logLevel: 'silent',
  });
  const files = ['app.js'];
  for (const name of await readdir(path.join(src, 'static'))) {
    await copyFile(path.join(src, 'static', name), path.join(outDir, name));
    files.push(name);
  }
  return files.sort();
}

/** A dashboard folder and how to let it go. */
export interface DashboardFolder {
  dir: string;
  /** Removes a folder built just for this run; nothing for a prebuilt one. */
  dispose(): Promise<void>;
}

/**
 * The dashboard to serve: the prebuilt one (`npm run build` writes dist/app/renderer) when
 * running from dist/; otherwise, if `build` is set, a fresh build in a temporary folder (running
 * from source, where a prebuilt folder may be stale). Null when there is none and `build` is off.
 */
export async function locateDashboard(options: { build: boolean; root?: string }): Promise<DashboardFolder | null> {
  const root = options.root ?? packageRoot();
  const fromDist = fileURLToPath(import.meta.url)
    .split(path.sep)
    .includes('dist');
  const prebuilt = path.join(root, 'dist/app/renderer');
  if (fromDist && existsSync(path.join(prebuilt, 'index.html'))) return { dir: prebuilt, dispose: async () => undefined };
  if (!options.build) return null;
  const dir = await mkdtemp(path.join(os.tmpdir(), 'nightjar-dashboard-'));
  await buildDashboard(dir, { sourceDir: path.join(root, 'src/renderer') });
  return { dir, dispose: () => rm(dir, { recursive: true, force: true }) };
}

/** How long {@link openInBrowser} waits for the opener to exit before taking it as opened (some wait for the browser). */
export const OPENER_WAIT_MS = 3000;

/**
 * Opens `url` in the default browser (`open` on macOS, `xdg-open` elsewhere); false if that fails
 * (no opener, or it exits non-zero: no browser). An opener still running after `waitMs` is taken
 * to have opened it and let go. The child stays referenced until then: an unreferenced one would
 * let the process exit before the answer, with nothing printed.
 */
export function openInBrowser(url: string, platform: NodeJS.Platform = process.platform, waitMs = OPENER_WAIT_MS): Promise<boolean> {
  const command = platform === 'darwin' ? '/usr/bin/open' : 'xdg-open';
  return new Promise((resolve) => {
    const child = spawn(command, [url], { stdio: 'ignore', detached: true });
    const timer = setTimeout(() => {
      child.unref();
      resolve(true);
    }, waitMs);
    const done = (opened: boolean): void => {
      clearTimeout(timer);
      resolve(opened);
    };
    child.once('error', () => done(false));
    child.once('exit', (code) => done(code === 0));
  });
}

/** Tells the owner where the dashboard is: opens it, or prints the one-time URL if it cannot. */
export async function presentDashboard(url: string, io: CommandIo): Promise<void> {
  const open = io.openUrl ?? openInBrowser;
  if (await open(url)) {
    io.stdout.write(`Opened the dashboard in your browser (${new URL(url).origin}/).\n`);
  } else {
    io.stdout.write(`Open the dashboard at this one-time address (it works once, within a minute):\n  ${url}\n`);
  }
}

/** Runs `nightjar dashboard`. */
export async function dashboardCommand({ io }: CommandContext): Promise<number> {
  const paths = cliPaths(io);
  await requireRunningAgent(paths);
  const { url, token } = JSON.parse(await readFile(paths.controlFile, 'utf8')) as ControlFile;
  const response = await fetch(new URL(DASHBOARD_TICKET_PATH, url), {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: '{}',
  });
  if (response.status === 404)
    throw new NightjarError('NJ_NOT_FOUND', 'The running agent serves no dashboard; restart it with `nightjar serve --dashboard`.');
  const body = (await response.json()) as { url?: string };
  if (!response.ok || typeof body.url !== 'string')
    throw new NightjarError('NJ_INTERNAL', `the agent answered HTTP ${response.status} for a dashboard ticket`);
  await presentDashboard(body.url, io);
  return 0;
}
