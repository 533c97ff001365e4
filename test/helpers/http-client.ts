/**
 * A fetch with its own connection pool, so a test can close the pool (and its keep-alive
 * sockets) when it is done, and the leak checker sees a clean slate.
 */
import { afterAll, afterEach } from 'vitest';
import { Agent, fetch as undiciFetch } from 'undici';

export interface ClosableFetch {
  readonly fetch: typeof fetch;
  close(): Promise<void>;
}

export function closableFetch(): ClosableFetch {
  const dispatcher = new Agent({ keepAliveTimeout: 1000 });
  const f = ((input: Parameters<typeof fetch>[0], init?: RequestInit) =>
    undiciFetch(input as never, { ...(init as object), dispatcher } as never)) as unknown as typeof fetch;
  return { fetch: f, close: () => dispatcher.close() };
}

/**
 * A fetch whose pool is closed after every test (register at file level): keep-alive sockets
 * otherwise outlive the test and the leak checker rightly flags them.
 */
export function perTestFetch(): { readonly fetch: typeof fetch } {
  let current = closableFetch();
  afterEach(async () => {
    await current.close();
    current = closableFetch();
  });
  afterAll(() => current.close());
  return {
    fetch: ((input: Parameters<typeof fetch>[0], init?: RequestInit) => current.fetch(input, init)) as typeof fetch,
  };
}
