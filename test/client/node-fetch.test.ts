/**
 * The SDK's fetch for Node (node:http with keep-alive) against a local HTTP server: what it
 * sends, streaming the reply as it comes, connection reuse, aborting before and during a reply,
 * errors, bodiless statuses, and handing requests it does not handle to the global fetch.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createNodeFetch as create, type NodeFetch, type NodeFetchOptions } from '../../src/client/index.js';

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  port: number;
}

let server: http.Server | undefined;
const made: NodeFetch[] = [];
/** A new fetch, its pools closed after the test. */
function createNodeFetch(options?: NodeFetchOptions): typeof fetch {
  const f = create(options);
  made.push(f);
  return f.fetch;
}
afterEach(async () => {
  vi.restoreAllMocks();
  for (const f of made.splice(0)) await f.dispose();
  server?.closeAllConnections();
  await new Promise((r) => server?.close(r) ?? r(undefined));
  server = undefined;
});

const TLS = new URL('./support/tls/', import.meta.url);
const CERT = readFileSync(new URL('cert.pem', TLS), 'utf8');

/** A server (HTTPS with the test certificate if asked) that records each request and answers with `handler`. */
async function serve(handler: (seen: Seen, res: http.ServerResponse) => void, secure = false): Promise<{ url: string; seen: Seen[] }> {
  const seen: Seen[] = [];
  const listener = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      const s = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body, port: req.socket.remotePort ?? 0 };
      seen.push(s);
      handler(s, res);
    });
  };
  server = secure ? https.createServer({ cert: CERT, key: readFileSync(new URL('key.pem', TLS)) }, listener) : http.createServer(listener);
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
  return { url: `${secure ? 'https' : 'http'}://127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}

describe('createNodeFetch', () => {
  it('sends the method, headers and a string body with its length, and reuses the connection', async () => {
    const { url, seen } = await serve((_, res) =>
      res.writeHead(201, { 'content-type': 'application/json', 'x-two': 'b' }).end('{"ok":true}'),
    );
    const f = createNodeFetch();
    const body = JSON.stringify({ text: 'héllo' });
    const res = await f(`${url}/v1/jobs?x=1`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer k' },
      body,
    });
    expect(res.status).toBe(201);
    expect(res.ok).toBe(true);
    expect(res.headers.get('x-two')).toBe('b');
    expect(await res.json()).toEqual({ ok: true });
    expect(seen[0]).toMatchObject({ method: 'POST', url: '/v1/jobs?x=1', body });
    expect(seen[0]!.headers).toMatchObject({ authorization: 'Bearer k', 'content-length': String(Buffer.byteLength(body)) });
    expect(seen[0]!.headers['transfer-encoding']).toBeUndefined();
    await (await f(new URL(`${url}/again`))).text();
    expect(seen[1]).toMatchObject({ method: 'GET', url: '/again', port: seen[0]!.port });
  });

  it('hands each piece of a reply over as it arrives, not when the reply ends', async () => {
    let finish!: () => void;
    const { url } = await serve((_, res) => {
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      res.write('{"n":1}\n');
      finish = () => res.end('{"n":2}\n');
    });
    const res = await createNodeFetch()(url);
    const reader = res.body!.getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toBe('{"n":1}\n');
    finish();
    let rest = '';
    for (let r = await reader.read(); !r.done; r = await reader.read()) rest += new TextDecoder().decode(r.value);
    expect(rest).toBe('{"n":2}\n');
  });

  it('aborting during a reply errors its body and closes the connection; aborting before sends nothing', async () => {
    let closed!: Promise<void>;
    const { url, seen } = await serve((_, res) => {
      closed = new Promise((resolve) => res.on('close', () => resolve()));
      res.writeHead(200).write('started\n');
    });
    const f = createNodeFetch();
    const controller = new AbortController();
    const res = await f(url, { signal: controller.signal });
    const reader = res.body!.getReader();
    await reader.read();
    controller.abort();
    await expect(reader.read()).rejects.toMatchObject({ name: 'AbortError' });
    // The server sees the connection close (the test times out otherwise).
    await closed;

    await expect(f(url, { signal: controller.signal })).rejects.toMatchObject({ name: 'AbortError' });
    expect(seen).toHaveLength(1);
  });

  it('dispose() (and Symbol.asyncDispose) closes its pooled connections', async () => {
    const { url } = await serve((_, res) => res.end('ok'));
    const closed: Promise<void>[] = [];
    server!.on('connection', (socket: Socket) => closed.push(new Promise((r) => socket.on('close', () => r()))));
    const pool = create();
    expect(await (await pool.fetch(url)).text()).toBe('ok');
    expect(await (await pool.fetch(url)).text()).toBe('ok');
    // One kept-alive connection served both, and it is still open.
    expect(closed).toHaveLength(1);
    await pool[Symbol.asyncDispose]();
    await closed[0];
    await pool.dispose();
  });

  it('fails as fetch does when nothing listens, and gives bodiless statuses no body', async () => {
    const { url } = await serve((s, res) =>
      res
        .writeHead(s.url === '/empty' ? 204 : 503, { 'content-type': 'application/json' })
        .end(s.url === '/empty' ? undefined : '{"error":{}}'),
    );
    const f = createNodeFetch();
    const empty = await f(`${url}/empty`);
    expect(empty.status).toBe(204);
    expect(empty.body).toBeNull();
    const failing = await f(`${url}/x`);
    expect(failing.ok).toBe(false);
    expect(await failing.json()).toEqual({ error: {} });

    const port = (server!.address() as AddressInfo).port;
    server!.closeAllConnections();
    await new Promise((r) => server!.close(r));
    server = undefined;
    // Its pooled connection is gone too (sent again on a new one if the close was not yet seen).
    const error = await f(`http://127.0.0.1:${port}/`).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TypeError);
    expect((error as TypeError).cause).toMatchObject({ code: 'ECONNREFUSED' });
  });

  it('fails a request whose server goes silent, before its answer or in the middle of its body', async () => {
    const { url } = await serve((seen, res) => {
      if (seen.url === '/partly') res.writeHead(200).write('some');
      // Otherwise: never answers.
    });
    const f = createNodeFetch({ idleTimeoutMs: 200 });
    const error = await f(`${url}/never`).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TypeError);
    expect((error as TypeError).cause).toMatchObject({ code: 'ETIMEDOUT' });
    const res = await f(`${url}/partly`);
    const reader = res.body!.getReader();
    await reader.read();
    await expect(reader.read()).rejects.toMatchObject({ code: 'ETIMEDOUT' });
  });

  it('speaks HTTPS, verifying the certificate: refused unless its authority is trusted', async () => {
    const { url, seen } = await serve((_, res) => res.end('secret'), true);
    const error = await createNodeFetch()(url).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TypeError);
    expect((error as TypeError).cause).toMatchObject({ code: 'DEPTH_ZERO_SELF_SIGNED_CERT' });
    expect(seen).toHaveLength(0);
    const res = await createNodeFetch({ ca: CERT })(url, { method: 'POST', body: 'x' });
    expect(await res.text()).toBe('secret');
    expect(seen[0]).toMatchObject({ method: 'POST', body: 'x' });
  });

  it('hands what it does not handle (a Headers object, another scheme, a stream body) to the global fetch', async () => {
    const { url, seen } = await serve((_, res) => res.end('ok'));
    const global = vi.spyOn(globalThis, 'fetch');
    const f = createNodeFetch();
    await (await f(url, { headers: { a: 'b' } })).text();
    expect(global).not.toHaveBeenCalled();
    await (await f(url, { headers: new Headers({ a: 'b' }) })).text();
    expect(global).toHaveBeenCalledTimes(1);
    await f('data:text/plain,hi');
    expect(global).toHaveBeenCalledTimes(2);
    expect(seen).toHaveLength(2);
  });
});
