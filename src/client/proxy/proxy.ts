/**
 * `nightjar proxy`'s server: a loopback HTTP server (fastify) that speaks the OpenAI Chat
 * Completions API, the Anthropic Messages API and Ollama's REST API to unmodified clients, and
 * serves every request through the SDK — sealed end to end for agents the client verified, the
 * reply opened and its receipt checked here, on the caller's machine. Nothing leaves it in the
 * clear.
 *
 * Plugins by concern, in the order they see a request: security headers, CORS for the allowed
 * origins only, the gate (gate.ts), the shutdown refusal, unknown paths and JSON depth refused
 * before a body is parsed (cheapRefusals), errors in each API's shape (error-replies.ts), then
 * the routes (models-routes.ts, openai-routes.ts, responses-routes.ts, anthropic-routes.ts,
 * ollama-routes.ts).
 */
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import cors from '@fastify/cors';
import Fastify, { type FastifyInstance } from 'fastify';
import { cheapRefusals, securityHeaders } from '../../node/index.js';
import { NightjarError, Resource, raceClock, type Event } from '../../shared/index.js';
import { ActiveRequests, type ProxyRequestFinished } from './active-requests.js';
import { anthropicRoutes } from './anthropic-routes.js';
import { embeddingsRoutes } from './embeddings-routes.js';
import { apiErrorReplies, sendNotFound } from './error-replies.js';
import { proxyGate } from './gate.js';
import { modelsRoutes } from './models-routes.js';
import { ollamaRoutes } from './ollama-routes.js';
import { openAiRoutes } from './openai-routes.js';
import { responsesRoutes } from './responses-routes.js';
import {
  isLoopbackHost,
  resolveProxyOptions,
  type CompatProxyOptions,
  type ProxyContext,
  type ResolvedProxyOptions,
} from './proxy-options.js';

/** Request headers a page of an allowed origin may send (the official SDKs' and Nightjar's). */
const CORS_HEADERS = [
  'authorization',
  'x-api-key',
  'content-type',
  'anthropic-version',
  'anthropic-beta',
  'openai-organization',
  'openai-project',
  'x-stainless-retry-count',
  'x-stainless-timeout',
];

async function buildApp(ctx: ProxyContext): Promise<FastifyInstance> {
  const o = ctx.options;
  const allowOrigins = new Set(o.allowOrigins);
  const app = Fastify({
    logger: false,
    bodyLimit: o.maxBodyBytes,
    genReqId: () => `req_${randomBytes(12).toString('hex')}`,
    keepAliveTimeout: 5000,
    // dispose() answers requests that arrive while it waits with NJ_SHUTTING_DOWN itself.
    return503OnClosing: false,
    exposeHeadRoutes: false,
  });
  app.server.headersTimeout = 30_000;
  // JSON bodies only (the gate refuses the rest before they are read).
  app.removeContentTypeParser('text/plain');
  await app.register(securityHeaders);
  // CORS first: an allowed origin's preflight is answered here (it carries no token), and its
  // page can read every later answer, refusals included. Any other origin gets no CORS headers.
  await app.register(cors, {
    origin: (origin, cb) => cb(null, origin !== undefined && allowOrigins.has(origin)),
    methods: ['GET', 'POST', 'OPTIONS'],
    allowedHeaders: CORS_HEADERS,
    maxAge: 600,
    strictPreflight: false,
  });
  await app.register(proxyGate, { loopbackOnly: isLoopbackHost(o.host), token: o.token, allowOrigins });
  app.addHook('onRequest', async () => {
    if (ctx.closing()) throw new NightjarError('NJ_SHUTTING_DOWN', 'the proxy is shutting down', { retryAfterMs: 1000 });
  });
  // After the gate: an unknown path answered before its body is read; JSON depth-scanned before it is parsed.
  await app.register(cheapRefusals, { maxJsonDepth: o.maxJsonDepth, notFound: sendNotFound });
  await app.register(apiErrorReplies, { maxBodyBytes: o.maxBodyBytes, logger: o.logger });
  await app.register(modelsRoutes, { ctx });
  await app.register(openAiRoutes, { ctx });
  await app.register(responsesRoutes, { ctx });
  await app.register(anthropicRoutes, { ctx });
  await app.register(ollamaRoutes, { ctx });
  await app.register(embeddingsRoutes, { ctx });
  return app;
}

async function listen(app: FastifyInstance, o: ResolvedProxyOptions): Promise<AddressInfo> {
  try {
    await app.listen({ host: o.host, port: o.port });
  } catch (err) {
    await app.close();
    const code = (err as NodeJS.ErrnoException).code;
    throw new NightjarError(
      'NJ_CONFIG_INVALID',
      `cannot listen on ${o.host}:${o.port} (${code ?? 'error'}); choose another address or port`,
      {
        cause: err,
      },
    );
  }
  return app.server.address() as AddressInfo;
}

/** A running compatible proxy. Start one with {@link CompatProxy.start}; dispose() stops it. */
export class CompatProxy extends Resource {
  /** Base URL, e.g. http://127.0.0.1:8788 (OpenAI clients add /v1). */
  readonly url: string;
  /** The TCP port it listens on. */
  readonly port: number;
  /** Fires after each chat request ended and gave up its slot. */
  readonly onRequestFinished: Event<ProxyRequestFinished>;
  readonly #o: ResolvedProxyOptions;
  readonly #app: FastifyInstance;
  readonly #requests: ActiveRequests;
  readonly #state: { closing: boolean };

  private constructor(
    o: ResolvedProxyOptions,
    app: FastifyInstance,
    requests: ActiveRequests,
    state: { closing: boolean },
    address: AddressInfo,
  ) {
    super();
    this.#o = o;
    this.#app = app;
    this.#requests = this.disposables.add(requests);
    this.#state = state;
    this.onRequestFinished = requests.onFinished;
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    this.url = `http://${host}:${address.port}`;
    this.port = address.port;
  }

  /** Starts a proxy and resolves once it listens. Throws NJ_CONFIG_INVALID for an unsafe or unusable address. */
  static async start(options: CompatProxyOptions): Promise<CompatProxy> {
    const o = resolveProxyOptions(options);
    const log = o.logger;
    const requests = new ActiveRequests(o.maxConcurrent, (err) =>
      log.error('a proxy event listener failed', { err: err instanceof Error ? err.message : String(err) }),
    );
    const state = { closing: false };
    const app = await buildApp({ options: o, requests, closing: () => state.closing });
    const proxy = new CompatProxy(o, app, requests, state, await listen(app, o));
    log.info('proxy listening', { url: proxy.url });
    return proxy;
  }

  /** Chat requests being served now. */
  get activeRequests(): number {
    return this.#requests.size;
  }

  /**
   * Stops taking requests (those that still arrive are answered NJ_SHUTTING_DOWN), lets running
   * replies finish within the grace on the injected clock, then cancels the rest — a stream
   * cut short ends with an error event — and closes every socket.
   */
  protected override async onDispose(): Promise<void> {
    this.#state.closing = true;
    const closed = this.#app.close();
    const finished = await raceClock(this.#o.clock, this.#o.shutdownGraceMs, this.#requests.idle());
    if (!finished.done) {
      this.#requests.abortAll(new NightjarError('NJ_SHUTTING_DOWN', 'the proxy is shutting down', { retryAfterMs: 1000 }));
      await this.#requests.idle();
    }
    this.#app.server.closeAllConnections();
    await closed;
    this.#o.logger.info('proxy stopped');
  }
}
