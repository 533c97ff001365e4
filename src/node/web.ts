/**
 * Fastify plugins every Nightjar HTTP server shares: the agent's control server, the gateway and
 * the compatible proxy.
 *
 * - {@link securityHeaders}: helmet, with the one page policy of src/shared (PAGE_CSP), no framing,
 *   no referrer, same-origin isolation. Plain-HTTP loopback servers send no HSTS.
 * - {@link staticPages}: folders of built pages under URL prefixes (@fastify/static), each with
 *   `/prefix` redirected to `/prefix/`, index.html at the prefix, dotfiles and paths outside the
 *   folder refused, and the cache policy given.
 * - {@link nightjarErrors}: every failure answered as `{ error: { code, message } }` with the
 *   code's HTTP status and Retry-After; a body too large is NJ_PAYLOAD_TOO_LARGE, an unreadable
 *   one NJ_BAD_REQUEST, an unknown path NJ_NOT_FOUND, and anything unexpected NJ_INTERNAL (logged,
 *   never shown).
 * - {@link cheapRefusals}: an unknown path answered before its body is read, and JSON bodies
 *   depth-scanned before they are parsed.
 */
import { realpathSync } from 'node:fs';
import path from 'node:path';
import helmet from '@fastify/helmet';
import fastifyStatic from '@fastify/static';
import type { FastifyError, FastifyPluginCallback, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { LIMITS, NightjarError, PAGE_CSP_DIRECTIVES, jsonTooDeep, silentLogger, type Logger } from '../shared/index.js';

/** Answers `error` as Nightjar's JSON error shape, with its status and Retry-After. */
export function sendNightjarError(reply: FastifyReply, error: NightjarError): FastifyReply {
  if (error.retryAfterMs !== undefined) reply.header('retry-after', Math.max(1, Math.ceil(error.retryAfterMs / 1000)));
  return reply.code(error.status).header('cache-control', 'no-store').send({ error: error.toJSON() });
}

/** Options of {@link securityHeaders}. */
export interface SecurityHeadersOptions {
  /** Send Strict-Transport-Security (only behind TLS). Defaults to false. */
  hsts?: boolean;
}

/** helmet with Nightjar's page policy, on every answer of the server it is registered on. */
export const securityHeaders: FastifyPluginCallback<SecurityHeadersOptions> = fp<SecurityHeadersOptions>(
  async (app, options) => {
    await app.register(helmet, {
      global: true,
      contentSecurityPolicy: {
        useDefaults: false,
        directives: Object.fromEntries(Object.entries(PAGE_CSP_DIRECTIVES).map(([k, v]) => [k, [...v]])),
      },
      crossOriginEmbedderPolicy: false,
      crossOriginOpenerPolicy: { policy: 'same-origin' },
      crossOriginResourcePolicy: { policy: 'same-origin' },
      referrerPolicy: { policy: 'no-referrer' },
      frameguard: { action: 'deny' },
      strictTransportSecurity: options.hsts ?? false,
      // Nothing here is served to old browsers that sniff or prefetch on their own.
      xDnsPrefetchControl: { allow: false },
    });
  },
  { name: 'nightjar-security-headers' },
);

/** A folder served under a URL prefix. */
export interface StaticSite {
  /** URL prefix with leading and trailing slash, e.g. '/chat/', or '/' for the whole server. */
  prefix: string;
  /** Folder holding index.html and its assets. */
  dir: string;
}

/** Options of {@link staticPages}. */
export interface StaticPagesOptions {
  /** The folders. Required. */
  sites: readonly StaticSite[];
  /** Cache-Control of every file. Defaults to 'no-cache' (revalidate: pages change with releases). */
  cacheControl?: string;
}

const PREFIX = /^\/(?:[a-z0-9-]+\/)?$/;

/** Serves each site's files. Throws NJ_CONFIG_INVALID for a malformed prefix or a missing folder. */
export const staticPages: FastifyPluginCallback<StaticPagesOptions> = fp<StaticPagesOptions>(
  async (app, options) => {
    const cacheControl = options.cacheControl ?? 'no-cache';
    let first = true;
    for (const site of options.sites) {
      if (!PREFIX.test(site.prefix)) {
        throw new NightjarError('NJ_CONFIG_INVALID', `static site prefix "${site.prefix}" must be / or look like /name/`);
      }
      let root: string;
      try {
        root = realpathSync(path.resolve(site.dir));
      } catch (err) {
        throw new NightjarError('NJ_CONFIG_INVALID', `the page folder ${site.dir} does not exist; build it with npm run build`, {
          cause: err,
        });
      }
      await app.register(fastifyStatic, {
        root,
        prefix: site.prefix,
        decorateReply: first,
        index: 'index.html',
        redirect: true,
        wildcard: true,
        dotfiles: 'deny',
        cacheControl: false,
        etag: true,
        lastModified: true,
        setHeaders: (res) => res.header('cache-control', cacheControl),
      });
      first = false;
      if (site.prefix !== '/') app.get(site.prefix.slice(0, -1), async (_request, reply) => reply.redirect(site.prefix, 301));
    }
  },
  { name: 'nightjar-static-pages' },
);

/** Options of {@link nightjarErrors}. */
export interface NightjarErrorsOptions {
  /** Where unexpected failures are logged (never the request body). Defaults to a silent logger. */
  logger?: Logger;
  /** The error for an unknown path. Defaults to NJ_NOT_FOUND "no such endpoint". */
  notFound?: () => NightjarError;
  /** The message of an unreadable body. Defaults to 'the request body could not be read as JSON'. */
  badBodyMessage?: string;
  /** The message of an unexpected failure. Defaults to 'internal error'. */
  internalMessage?: string;
}

/** Maps every failure of the server it is registered on to Nightjar's error shape. */
export const nightjarErrors: FastifyPluginCallback<NightjarErrorsOptions> = fp<NightjarErrorsOptions>(
  async (app, options) => {
    const log = options.logger ?? silentLogger;
    app.setErrorHandler((err: FastifyError | NightjarError, _request, reply) => {
      if (err instanceof NightjarError) return sendNightjarError(reply, err);
      if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE' || err.statusCode === 413) {
        return sendNightjarError(reply, new NightjarError('NJ_PAYLOAD_TOO_LARGE', 'the request body exceeds the limit'));
      }
      if (err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500) {
        return sendNightjarError(
          reply,
          new NightjarError('NJ_BAD_REQUEST', options.badBodyMessage ?? 'the request body could not be read as JSON'),
        );
      }
      log.error('request handler failed', { err: err.message });
      return sendNightjarError(reply, new NightjarError('NJ_INTERNAL', options.internalMessage ?? 'internal error'));
    });
    app.setNotFoundHandler((_request, reply) =>
      sendNightjarError(reply, options.notFound?.() ?? new NightjarError('NJ_NOT_FOUND', 'no such endpoint')),
    );
  },
  { name: 'nightjar-errors' },
);

/** Options of {@link cheapRefusals}. */
export interface CheapRefusalsOptions {
  /** Deepest nesting a JSON body may have. Defaults to LIMITS.maxJsonDepth (64). */
  maxJsonDepth?: number;
  /**
   * Answers a request for a path no route serves. Defaults to NJ_NOT_FOUND "no such endpoint" in
   * Nightjar's error shape (as {@link nightjarErrors} answers it).
   */
  notFound?: (request: FastifyRequest, reply: FastifyReply) => FastifyReply;
}

/**
 * What a server refuses before it reads or parses a body: a request for an unknown path is
 * answered at once from an `onRequest` hook (fastify would otherwise read and parse its body for
 * the not-found handler), and a JSON body is scanned for its depth before JSON.parse runs (a
 * body nested deeper than `maxJsonDepth` is NJ_BAD_REQUEST). The JSON parser is otherwise
 * fastify's own, with its prototype-poisoning checks. Register it on the root of the server.
 */
export const cheapRefusals: FastifyPluginCallback<CheapRefusalsOptions> = fp<CheapRefusalsOptions>(
  async (app, options) => {
    const maxDepth = options.maxJsonDepth ?? LIMITS.maxJsonDepth;
    const notFound =
      options.notFound ??
      ((_request: FastifyRequest, reply: FastifyReply) => sendNightjarError(reply, new NightjarError('NJ_NOT_FOUND', 'no such endpoint')));
    const parseJson = app.getDefaultJsonParser('error', 'error');
    app.removeContentTypeParser('application/json');
    app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
      if (jsonTooDeep(body as string, maxDepth)) {
        done(new NightjarError('NJ_BAD_REQUEST', `the request body nests deeper than ${maxDepth} levels`), undefined);
        return;
      }
      parseJson(request, body as string, done);
    });
    app.addHook('onRequest', async (request, reply) => {
      if (request.is404) return notFound(request, reply);
    });
  },
  { name: 'nightjar-cheap-refusals' },
);
