/**
 * The gateway's web pages through the one static-pages plugin of src/node (one page policy,
 * PAGE_CSP, from the security-headers plugin on the whole server): the sites handed in (the
 * browser chat page) and the operator dashboard at /dashboard/, written to a folder of its own
 * for the life of the gateway.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { FastifyPluginAsync } from 'fastify';
import { sendNightjarError, staticPages, type StaticSite } from '../../node/index.js';
import { NightjarError, type AsyncResource } from '../../shared/index.js';
import { writeDashboardPage } from '../operator/dashboard-page.js';

/** The dashboard's folder; dispose() removes it. */
export interface DashboardSite extends AsyncResource {
  readonly site: StaticSite;
}

/** Writes the operator dashboard to a fresh temporary folder, to serve at /dashboard/. */
export async function createDashboardSite(): Promise<DashboardSite> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'nightjar-dashboard-'));
  const dispose = (): Promise<void> => rm(dir, { recursive: true, force: true });
  try {
    await writeDashboardPage(dir);
  } catch (err) {
    await dispose();
    throw err;
  }
  return { site: { prefix: '/dashboard/', dir }, dispose, [Symbol.asyncDispose]: dispose };
}

/** Options of {@link pageRoutes}. */
export interface PagesPluginOptions {
  /** The folders to serve. */
  sites: readonly StaticSite[];
}

/** Serves the sites. A path the file server refuses (one that leaves its folder) is answered 404, as any missing page. */
export const pageRoutes: FastifyPluginAsync<PagesPluginOptions> = async (app, { sites }) => {
  app.setErrorHandler((err: Error & { statusCode?: number }, _request, reply) => {
    if (err.statusCode === 400 || err.statusCode === 403)
      return sendNightjarError(reply, new NightjarError('NJ_NOT_FOUND', 'no such page'));
    throw err; // the server's error handler answers the rest
  });
  await app.register(staticPages, { sites });
};
