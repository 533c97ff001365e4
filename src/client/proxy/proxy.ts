/**
 * `nightjar proxy`'s server: a loopback HTTP server that speaks the OpenAI Chat Completions API
 * and the Anthropic Messages API to unmodified clients, and serves every request through the
 * SDK — sealed end to end for agents the client verified, the reply opened and its receipt
 * checked here, on the caller's machine. Nothing leaves it in the clear.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { LIMITS, NightjarError, silentLogger, systemClock, type Clock, type Logger } from '../../shared/index.js';
import type { ChatRequest, ChatResult, ChatStream, NightjarClient } from '../sdk/index.js';
import { anthropicEvents, anthropicStopReason, messageBody, parseAnthropicRequest, type AnthropicEvent } from './anthropic.js';
import { asNightjarError, errorAnswer, errorObject, type ApiFlavor } from './api-errors.js';
import { OpenAiChunks, completionBody, openAiFinishReason, parseOpenAiRequest } from './openai.js';

/** Options of {@link startProxy}. */
export interface CompatProxyOptions {
  /** The SDK client every request goes through (gateway, API key, trust policy, retries). Required. */
  client: NightjarClient;
  /** Interface to listen on. Anything but a loopback address needs `token`. Defaults to '127.0.0.1'. */
  host?: string;
  /** TCP port; 0 picks a free one. Defaults to 8788. */
  port?: number;
  /**
   * Local token callers must send, as `Authorization: Bearer <token>` (OpenAI clients) or
   * `x-api-key: <token>` (Anthropic clients). Defaults to none: any local program may call.
   */
  token?: string;
  /** Web origins allowed to call the proxy from a page (CORS). Defaults to none. */
  allowOrigins?: readonly string[];
  /** List synthetic development models under /v1/models. Defaults to false. */
  listSynthetic?: boolean;
  /** max tokens of an OpenAI request that names none. Defaults to 1024. */
  defaultMaxTokens?: number;
  /** Largest request body. Defaults to 8 MiB. */
  maxBodyBytes?: number;
  /** Concurrent chat requests; more are answered "no capacity" at once. Defaults to 64. */
  maxConcurrent?: number;
  /** How long close() lets running replies finish before cancelling them. Defaults to 5 000 ms. */
  shutdownGraceMs?: number;
  /** Clock for the `created` times of responses. Defaults to the system clock. */
  clock?: Clock;
  /** Where request lines go (never prompt or reply text). Defaults to a silent logger. */
  logger?: Logger;
}

/** A running proxy. */
export interface CompatProxy extends AsyncDisposable {
  /** Base URL, e.g. http://127.0.0.1:8788 (OpenAI clients add /v1). */
  readonly url: string;
  readonly port: number;
  /** Chat requests being served now. */
  readonly activeRequests: number;
  /** Stops taking requests, lets running replies finish within the grace, closes every socket. */
  close(): Promise<void>;
}

const LOOPBACK_NAMES = new Set(['localhost', '127.0.0.1', '::1', '[::1]']);

/** True if `host` names the loopback interface. */
export function isLoopbackHost(host: string): boolean {
  return LOOPBACK_NAMES.has(host) || /^127\.\d+\.\d+\.\d+$/.test(host);
}

function hostnameOf(hostHeader: string): string {
  if (hostHeader.startsWith('[')) return hostHeader.slice(0, hostHeader.indexOf(']') + 1);
  return hostHeader.split(':')[0] ?? '';
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

interface Active {
  readonly controller: AbortController;
  readonly done: Promise<void>;
}

/** Starts the compatible proxy and resolves once it listens. */
export async function startProxy(options: CompatProxyOptions): Promise<CompatProxy> {
  const { client } = options;
  const host = options.host ?? '127.0.0.1';
  const loopback = isLoopbackHost(host);
  if (!loopback && !options.token) {
    throw new NightjarError('NJ_CONFIG_INVALID', `listening on ${host} (not loopback) needs a token; pass one with --token`);
  }
  const tokenDigest = options.token ? digest(options.token) : null;
  const allowOrigins = new Set(options.allowOrigins ?? []);
  const maxBody = options.maxBodyBytes ?? 8 * 1024 * 1024;
  const maxConcurrent = options.maxConcurrent ?? 64;
  const defaultMaxTokens = Math.min(options.defaultMaxTokens ?? 1024, LIMITS.maxTokens);
  const clock = options.clock ?? systemClock;
  const log = options.logger ?? silentLogger;
  const active = new Set<Active>();
  let closing = false;

  function flavorOf(req: IncomingMessage, path: string): ApiFlavor {
    if (path.startsWith('/v1/messages')) return 'anthropic';
    if (path.startsWith('/v1/chat/')) return 'openai';
    return req.headers['anthropic-version'] !== undefined ? 'anthropic' : 'openai';
  }

  function corsHeaders(req: IncomingMessage): Record<string, string> {
    const origin = req.headers.origin;
    return origin && allowOrigins.has(origin) ? { 'access-control-allow-origin': origin, vary: 'origin' } : {};
  }

  function send(req: IncomingMessage, res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    if (res.headersSent || res.destroyed) return;
    const text = JSON.stringify(body);
    res.writeHead(status, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(text),
      'cache-control': 'no-store',
      ...corsHeaders(req),
      ...headers,
    });
    res.end(text);
  }

  function sendError(req: IncomingMessage, res: ServerResponse, error: NightjarError, flavor: ApiFlavor, requestId: string): void {
    const answer = errorAnswer(error, flavor, requestId);
    send(req, res, answer.status, answer.body, answer.headers);
  }

  /** Refuses what a local API must not take: other origins, rebinding hosts, wrong tokens. */
  function gate(req: IncomingMessage): NightjarError | null {
    if (loopback) {
      const name = hostnameOf(req.headers.host ?? '');
      if (!isLoopbackHost(name)) return new NightjarError('NJ_PROXY_FORBIDDEN', 'the Host header does not name a loopback address');
    }
    const origin = req.headers.origin;
    if (origin !== undefined && !allowOrigins.has(origin)) {
      return new NightjarError('NJ_PROXY_FORBIDDEN', 'requests from web pages of other origins are refused');
    }
    if (req.method === 'POST' && !/^application\/json\b/i.test(req.headers['content-type'] ?? '')) {
      return new NightjarError('NJ_PROXY_FORBIDDEN', 'the body must be sent as application/json');
    }
    if (tokenDigest) {
      const auth = req.headers.authorization;
      const given = auth?.toLowerCase().startsWith('bearer ') ? auth.slice(7).trim() : (req.headers['x-api-key'] as string | undefined);
      if (given === undefined || !timingSafeEqual(digest(given), tokenDigest)) {
        return new NightjarError('NJ_PROXY_UNAUTHORIZED', 'a missing or wrong proxy token');
      }
    }
    return null;
  }

  async function readJson(req: IncomingMessage): Promise<unknown> {
    const declared = Number(req.headers['content-length'] ?? NaN);
    if (declared > maxBody) throw new NightjarError('NJ_PAYLOAD_TOO_LARGE', `the request body exceeds ${maxBody} bytes`);
    const parts: Buffer[] = [];
    let size = 0;
    for await (const part of req as AsyncIterable<Buffer>) {
      size += part.length;
      if (size > maxBody) throw new NightjarError('NJ_PAYLOAD_TOO_LARGE', `the request body exceeds ${maxBody} bytes`);
      parts.push(part);
    }
    try {
      return JSON.parse(Buffer.concat(parts).toString('utf8'));
    } catch {
      throw new NightjarError('NJ_BAD_REQUEST', 'the request body is not JSON');
    }
  }

  async function listModels(
    req: IncomingMessage,
    res: ServerResponse,
    flavor: ApiFlavor,
    one: string | null,
    requestId: string,
  ): Promise<void> {
    const models = (await client.models()).filter((m) => options.listSynthetic || !m.synthetic);
    const shown = one === null ? models : models.filter((m) => m.id === one);
    if (one !== null && shown.length === 0) throw new NightjarError('NJ_MODEL_UNKNOWN', `no connected agent serves ${one}`);
    const rows =
      flavor === 'openai'
        ? shown.map((m) => ({ id: m.id, object: 'model', created: 0, owned_by: 'nightjar' }))
        : shown.map((m) => ({ type: 'model', id: m.id, display_name: m.id, created_at: '1970-01-01T00:00:00Z' }));
    if (one !== null) return send(req, res, 200, rows[0], { 'request-id': requestId });
    const body =
      flavor === 'openai'
        ? { object: 'list', data: rows }
        : { data: rows, has_more: false, first_id: shown[0]?.id ?? null, last_id: shown.at(-1)?.id ?? null };
    send(req, res, 200, body, { 'request-id': requestId });
  }

  function agentStopped(): NightjarError {
    return new NightjarError('NJ_AGENT_FAILED', 'the agent stopped the reply before it finished (it may be shutting down); retry');
  }

  async function writeSse(res: ServerResponse, text: string): Promise<void> {
    if (res.destroyed) return;
    if (!res.write(text)) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          res.off('drain', done);
          res.off('close', done);
          resolve();
        };
        res.on('drain', done);
        res.on('close', done);
      });
    }
  }

  async function serveChat(
    req: IncomingMessage,
    res: ServerResponse,
    flavor: ApiFlavor,
    requestId: string,
    controller: AbortController,
  ): Promise<void> {
    const body = await readJson(req);
    const parsed = flavor === 'openai' ? parseOpenAiRequest(body) : parseAnthropicRequest(body);
    const request: ChatRequest = {
      model: parsed.model,
      messages: parsed.messages,
      maxTokens: parsed.maxTokens ?? defaultMaxTokens,
      ...(parsed.temperature === undefined ? {} : { temperature: parsed.temperature }),
      ...(parsed.topP === undefined ? {} : { topP: parsed.topP }),
      ...('topK' in parsed && parsed.topK !== undefined ? { topK: parsed.topK } : {}),
      ...('seed' in parsed && parsed.seed !== undefined ? { seed: parsed.seed } : {}),
      ...(parsed.stop === undefined ? {} : { stop: parsed.stop }),
      signal: controller.signal,
    };
    const started = clock.now();
    const stream: ChatStream = client.chat(request);
    const logEnd = (result: ChatResult | null, error: NightjarError | null): void =>
      log.info('proxy request', {
        api: flavor,
        stream: parsed.stream,
        model: parsed.model,
        agentId: result?.agentId ?? null,
        promptTokens: result?.usage.promptTokens ?? null,
        completionTokens: result?.usage.completionTokens ?? null,
        code: error?.code ?? null,
        ms: clock.now() - started,
      });

    if (!parsed.stream) {
      let result: ChatResult;
      try {
        result = await stream.result;
        if (result.finishReason === 'cancelled') throw agentStopped();
      } catch (err) {
        logEnd(null, asNightjarError(err));
        throw err;
      }
      logEnd(result, null);
      const headers = { 'request-id': requestId, 'x-request-id': requestId, ...servedHeaders(result) };
      send(req, res, 200, flavor === 'openai' ? completionBody(result, Math.floor(started / 1000)) : messageBody(result), headers);
      return;
    }

    // Headers wait for the first chunk, so a failure before it is a proper HTTP error the
    // caller's SDK can classify and retry.
    let served;
    try {
      served = await stream.served;
    } catch (err) {
      logEnd(null, asNightjarError(err));
      throw err;
    }
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      'x-accel-buffering': 'no',
      'request-id': requestId,
      'x-request-id': requestId,
      ...corsHeaders(req),
      ...servedHeaders(served),
    });
    const created = Math.floor(started / 1000);
    const chunks = new OpenAiChunks(served.jobId, parsed.model, created, 'includeUsage' in parsed && parsed.includeUsage);
    const event = (e: AnthropicEvent): string => `event: ${e.event}\ndata: ${JSON.stringify(e.data)}\n\n`;
    const data = (o: unknown): string => `data: ${JSON.stringify(o)}\n\n`;
    if (flavor === 'openai') await writeSse(res, data(chunks.role()));
    else for (const e of anthropicEvents.start(served, parsed.model)) await writeSse(res, event(e));
    try {
      for await (const delta of stream) {
        await writeSse(res, flavor === 'openai' ? data(chunks.content(delta)) : event(anthropicEvents.delta(delta)));
      }
      const result = await stream.result;
      if (flavor === 'openai') {
        const reason = openAiFinishReason(result.finishReason);
        if (reason === null) throw agentStopped();
        await writeSse(res, data(chunks.finish(reason)));
        if ('includeUsage' in parsed && parsed.includeUsage) await writeSse(res, data(chunks.usage(result)));
        await writeSse(res, 'data: [DONE]\n\n');
      } else {
        const reason = anthropicStopReason(result.finishReason, result.stopSequence);
        if (reason === null) throw agentStopped();
        for (const e of anthropicEvents.end(result, reason)) await writeSse(res, event(e));
      }
      logEnd(result, null);
    } catch (err) {
      const error = asNightjarError(err);
      logEnd(null, error);
      // The caller is gone: nobody to tell.
      if (controller.signal.aborted) return;
      // The stream ends with an error event and no finish: the text so far is not a complete answer.
      const object = errorObject(error, flavor);
      await writeSse(
        res,
        flavor === 'openai' ? data({ error: object }) : event({ event: 'error', data: { type: 'error', error: object } }),
      );
    }
    res.end();
  }

  function servedHeaders(s: { agentId: string; trust: string; jobId: string }): Record<string, string> {
    return { 'x-nightjar-agent': s.agentId, 'x-nightjar-trust': s.trust, 'x-nightjar-job': s.jobId };
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const requestId = `req_${randomBytes(12).toString('hex')}`;
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const flavor = flavorOf(req, path);
    const refused = gate(req);
    if (req.method === 'OPTIONS') {
      const origin = req.headers.origin;
      if (origin && allowOrigins.has(origin)) {
        res.writeHead(204, {
          ...corsHeaders(req),
          'access-control-allow-methods': 'GET, POST, OPTIONS',
          'access-control-allow-headers':
            'authorization, x-api-key, content-type, anthropic-version, anthropic-beta, openai-organization, openai-project, x-stainless-retry-count, x-stainless-timeout',
          'access-control-max-age': '600',
        });
        res.end();
        return;
      }
      return sendError(
        req,
        res,
        new NightjarError('NJ_PROXY_FORBIDDEN', 'requests from web pages of other origins are refused'),
        flavor,
        requestId,
      );
    }
    if (refused) return sendError(req, res, refused, flavor, requestId);
    if (closing)
      return sendError(
        req,
        res,
        new NightjarError('NJ_SHUTTING_DOWN', 'the proxy is shutting down', { retryAfterMs: 1000 }),
        flavor,
        requestId,
      );

    if (req.method === 'GET' && path === '/healthz') return send(req, res, 200, { ok: true });
    if (req.method === 'GET' && (path === '/v1/models' || path.startsWith('/v1/models/'))) {
      const one = path === '/v1/models' ? null : decodeURIComponent(path.slice('/v1/models/'.length));
      return listModels(req, res, flavor, one, requestId);
    }
    if (req.method === 'POST' && (path === '/v1/chat/completions' || path === '/v1/messages')) {
      if (active.size >= maxConcurrent) {
        throw new NightjarError('NJ_NO_CAPACITY', `the proxy is serving ${maxConcurrent} requests already`, { retryAfterMs: 1000 });
      }
      const controller = new AbortController();
      // The caller closing its connection (or its SDK aborting) cancels the job at the agent.
      res.on('close', () => {
        if (!res.writableFinished) controller.abort();
      });
      let finish!: () => void;
      const entry: Active = { controller, done: new Promise<void>((r) => (finish = r)) };
      active.add(entry);
      try {
        await serveChat(req, res, flavor, requestId, controller);
      } finally {
        active.delete(entry);
        finish();
      }
      return;
    }
    const unknown = new NightjarError('NJ_BAD_REQUEST', `no such endpoint: ${req.method ?? ''} ${path.slice(0, 100)}`);
    const answer = errorAnswer(unknown, flavor, requestId);
    send(req, res, 404, answer.body, answer.headers);
  }

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      const error = asNightjarError(err);
      if (error.code === 'NJ_INTERNAL') log.error('proxy request failed', { err: (err as Error)?.message ?? String(err) });
      const path = (req.url ?? '/').split('?')[0] ?? '/';
      if (!res.headersSent) sendError(req, res, error, flavorOf(req, path), `req_${randomBytes(12).toString('hex')}`);
      else res.end();
    });
  });
  server.headersTimeout = 30_000;
  server.requestTimeout = 0;

  const port = options.port ?? 8788;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new NightjarError('NJ_CONFIG_INVALID', `cannot listen on ${host}:${port} (${code ?? 'error'}); choose another address or port`, {
      cause: err,
    });
  }
  const address = server.address() as AddressInfo;
  const urlHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${urlHost}:${address.port}`;
  log.info('proxy listening', { url });

  let closed: Promise<void> | null = null;
  const proxy: CompatProxy = {
    url,
    port: address.port,
    get activeRequests() {
      return active.size;
    },
    close() {
      closed ??= (async () => {
        closing = true;
        const stopped = new Promise<void>((r) => server.close(() => r()));
        server.closeIdleConnections();
        let timer: ReturnType<typeof setTimeout> | undefined;
        const grace = new Promise<void>((r) => (timer = setTimeout(r, options.shutdownGraceMs ?? 5000)));
        await Promise.race([Promise.all([...active].map((a) => a.done)), grace]);
        clearTimeout(timer);
        for (const a of active) a.controller.abort();
        await Promise.all([...active].map((a) => a.done));
        server.closeAllConnections();
        await stopped;
        log.info('proxy stopped');
      })();
      return closed;
    },
    [Symbol.asyncDispose]() {
      return proxy.close();
    },
  };
  return proxy;
}
