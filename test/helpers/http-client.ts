/**
 * A fetch with its own connection pool, so a test can close the pool (and its keep-alive
 * sockets) when it is done, and the leak checker sees a clean slate.
 */
import { afterAll, afterEach } from 'vitest';
import { Agent, fetch as undiciFetch } from 'undici';
import { createNodeFetch } from '../../src/client/index.js';

export interface ClosableFetch {
  readonly fetch: typeof fetch;
  close(): Promise<void>;
}

/**
 * `undici`: the global fetch's implementation, with a pool of its own. `node`: the client's
 * fetch over node:http, which the CLI and the proxy use.
 */
export type FetchKind = 'undici' | 'node';

export function closableFetch(kind: FetchKind = 'undici'): ClosableFetch {
  if (kind === 'node') {
    const node = createNodeFetch();
    return { fetch: node.fetch, close: () => node.dispose() };
  }
  const dispatcher = new Agent({ keepAliveTimeout: 1000 });
  const f = ((input: Parameters<typeof fetch>[0], init?: RequestInit) =>
    undiciFetch(input as never, { ...(init as object), dispatcher } as never)) as unknown as typeof fetch;
  return { fetch: f, close: () => dispatcher.close() };
}

/**
 * A fetch whose pool is closed after every test (register at file level): keep-alive sockets
 * otherwise outlive the test and the leak checker rightly flags them.
 */
export function perTestFetch(kind: FetchKind = 'undici'): { readonly fetch: typeof fetch } {
  let current = closableFetch(kind);
  afterEach(async () => {
    await current.close();
    current = closableFetch(kind);
  });
  afterAll(() => current.close());
  return {
    fetch: ((input: Parameters<typeof fetch>[0], init?: RequestInit) => current.fetch(input, init)) as typeof fetch,
  };
}
