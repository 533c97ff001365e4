/**
 * A `fetch` for the SDK's own requests in Node, over node:http and node:https with keep-alive.
 * Node's global fetch (undici) builds a Request, guarded Headers and body streams per call, and
 * a chat's time to first token pays for them going and coming back; this one is quicker both ways
 * (bench/RESULTS.md, whole path). The SDK sends a URL string, a method, a record of headers, a
 * string body and an AbortSignal; anything else is handed to globalThis.fetch unchanged. Unlike
 * fetch it does not follow redirects (a 3xx comes back as it is: the SDK reports the status).
 */
import http from 'node:http';
import https from 'node:https';
import { Readable } from 'node:stream';
import { withDefaults, type AsyncResource } from '../shared/index.js';

/** Statuses whose response has no body (the Response constructor refuses one). */
const NULL_BODY = new Set([101, 103, 204, 205, 304]);
const HANDLED_INIT = new Set(['method', 'headers', 'body', 'signal']);

function plainHeaders(headers: RequestInit['headers']): Record<string, string> | null {
  if (headers === undefined) return {};
  if (headers instanceof Headers || Array.isArray(headers)) return null;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) {
    if (typeof v !== 'string') return null;
    out[k] = v;
  }
  return out;
}

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('This operation was aborted', 'AbortError');
}

/** A fetch with its own connection pools; disposing it closes them. */
export interface NodeFetch extends AsyncResource {
  readonly fetch: typeof fetch;
  /** Closes every pooled connection, idle or in use. Later requests get fresh connections. */
  dispose(): Promise<void>;
}

/** Options of {@link createNodeFetch}. */
export interface NodeFetchOptions {
  /**
   * Certificate authorities (PEM) to trust for HTTPS instead of Node's bundled ones, for a
   * gateway with a private CA. Defaults to Node's. Certificates are always verified.
   */
  ca?: string | readonly string[];
  /**
   * How long the connection may stay silent while a request waits for its answer or reads its
   * body before the request fails (as undici's headers and body timeouts do). Defaults to
   * 300 000 ms, undici's.
   */
  idleTimeoutMs?: number;
}

/** The defaults of {@link NodeFetchOptions}. */
export const NODE_FETCH_DEFAULTS: Readonly<Required<Omit<NodeFetchOptions, 'ca'>>> & Pick<NodeFetchOptions, 'ca'> = {
  ca: undefined,
  idleTimeoutMs: 300_000,
};

/** Builds a fetch with its own connection pools (one per scheme; idle connections do not keep the process alive). */
export function createNodeFetch(options: NodeFetchOptions = {}): NodeFetch {
  const { ca, idleTimeoutMs } = withDefaults(NODE_FETCH_DEFAULTS, options);
  const agents = {
    'http:': new http.Agent({ keepAlive: true }),
    // No ca: Node's bundled authorities.
    'https:': new https.Agent({ keepAlive: true, ca: typeof ca === 'string' || ca === undefined ? ca : [...ca] }),
  } as const;

  const nodeFetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const url = typeof input === 'string' ? new URL(input) : input instanceof URL ? input : null;
    const headers = plainHeaders(init?.headers);
    const body = init?.body;
    if (
      !url ||
      (url.protocol !== 'http:' && url.protocol !== 'https:') ||
      !headers ||
      (body !== undefined && body !== null && typeof body !== 'string') ||
      Object.keys(init ?? {}).some((k) => !HANDLED_INIT.has(k))
    ) {
      return globalThis.fetch(input, init);
    }
    const signal = init?.signal ?? undefined;
    if (signal?.aborted) throw abortReason(signal);
    if (typeof body === 'string' && !Object.keys(headers).some((k) => k.toLowerCase() === 'content-length')) {
      headers['content-length'] = String(Buffer.byteLength(body));
    }
    const transport = url.protocol === 'https:' ? https : http;
    const agent = agents[url.protocol as 'http:' | 'https:'];
    const send = (retried: boolean): Promise<Response> =>
      new Promise<Response>((resolve, reject) => {
        let response: http.IncomingMessage | undefined;
        const req = transport.request(url, { method: init?.method ?? 'GET', headers, agent }, (res) => {
          response = res;
          const status = res.statusCode ?? 0;
          const responseHeaders = new Headers();
          for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) responseHeaders.append(res.rawHeaders[i]!, res.rawHeaders[i + 1]!);
          let responseBody: ReadableStream<Uint8Array> | null = null;
          if (NULL_BODY.has(status) || req.method === 'HEAD') res.resume();
          else responseBody = Readable.toWeb(res) as ReadableStream<Uint8Array>;
          try {
            resolve(new Response(responseBody, { status, statusText: res.statusMessage ?? '', headers: responseHeaders }));
          } catch (err) {
            // A status the Response constructor refuses (outside 200–599): fail, as fetch would.
            res.destroy();
            reject(new TypeError('fetch failed', { cause: err }));
          }
        });
        // Aborting also ends a reply that is streaming: its body stream errors with the reason.
        const onAbort = (): void => {
          const reason = abortReason(signal!) as Error;
          response?.destroy(reason);
          req.destroy(reason);
        };
        signal?.addEventListener('abort', onAbort, { once: true });
        req.on('close', () => signal?.removeEventListener('abort', onAbort));
        req.setTimeout(idleTimeoutMs, () => {
          const silent = Object.assign(new Error(`the server sent nothing for ${idleTimeoutMs} ms`), { code: 'ETIMEDOUT' });
          response?.destroy(silent);
          req.destroy(silent);
        });
        req.on('error', (err: NodeJS.ErrnoException) => {
          if (signal?.aborted) reject(abortReason(signal));
          // A pooled connection the server closed as this request went out on it: nothing was
          // answered, so send once more on a new one (as browsers do; Node's http docs advise it).
          else if (!retried && !response && req.reusedSocket && err.code === 'ECONNRESET') send(true).then(resolve, reject);
          else reject(new TypeError('fetch failed', { cause: err }));
        });
        req.end(body ?? undefined);
      });
    return send(false);
  };
  const dispose = async (): Promise<void> => {
    agents['http:'].destroy();
    agents['https:'].destroy();
  };
  return { fetch: nodeFetch, dispose, [Symbol.asyncDispose]: dispose };
}

/** The process's shared instance. */
export const nodeFetch: typeof fetch = createNodeFetch().fetch;
