/**
 * The browser chat page, as the gateway serves it. `npm run build` writes it to dist/web/chat;
 * running from source, it is built on first use into the same place (esbuild is a development
 * dependency, so a production install uses the prebuilt copy).
 */
import { access } from 'node:fs/promises';
import path from 'node:path';
import type { StaticSite } from '../gateway/index.js';
import type { Logger } from '../shared/index.js';
import { packageRoot } from './package-info.js';

/** Where the built chat page lives. */
export function chatPageDir(): string {
  return path.join(packageRoot(), 'dist', 'web', 'chat');
}

/** Builds the chat page into dist/web/chat. */
export async function buildWebPages(): Promise<string> {
  const dir = chatPageDir();
  // The client's builder loads only when a build is needed: a built gateway never loads the client.
  const { buildChatPage } = await import('../client/index.js');
  await buildChatPage(dir);
  return dir;
}

/**
 * The chat page as a static site for the gateway: the built copy, or one built now. Resolves
 * with no sites (and a warning) if neither is possible, so the gateway still runs.
 */
export async function chatPageSites(logger: Logger): Promise<StaticSite[]> {
  const dir = chatPageDir();
  const built = await access(path.join(dir, 'index.html')).then(
    () => true,
    () => false,
  );
  if (!built) {
    try {
      await buildWebPages();
    } catch (err) {
      logger.warn('the browser chat page is not available', { reason: (err as Error).message });
      return [];
    }
  }
  return [{ prefix: '/chat/', dir }];
}
