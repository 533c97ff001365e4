/**
 * The checks that keep the control server to this machine's own processes, as fastify hooks:
 *
 * - {@link loopbackOnly} (every request): the Host header must name the loopback address and this
 *   port (127.0.0.1, localhost or [::1]) — a web page that rebinds its own host name to 127.0.0.1
 *   (DNS rebinding) sends its own name; an Origin header, when present, must be this server's own
 *   origin — pages of other sites are refused even if they somehow hold the token.
 * - {@link BearerToken} (the API's context): `Authorization: Bearer <token>`, compared in constant
 *   time (both sides hashed first, so the comparison does not even leak the length).
 * - {@link jsonOnly}: methods take `content-type: application/json`, which a browser cannot send
 *   cross-origin without a preflight this server never approves.
 * - {@link pagesGate} (outside the API): only the dashboard's own files are answered without the
 *   token; anything else there needs it, as the API does.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyPluginCallback, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { NightjarError } from '../../../shared/index.js';

/** The loopback origins of a server whose port is known once it listens. */
export class LoopbackOrigin {
  #port = 0;

  /** The port, once listening (0 before). */
  get port(): number {
    return this.#port;
  }

  /** Sets the port the server listens on. */
  listening(port: number): void {
    this.#port = port;
  }

  /** Host headers that name this server. */
  get hosts(): string[] {
    return [`127.0.0.1:${this.#port}`, `localhost:${this.#port}`, `[::1]:${this.#port}`];
  }

  /** True if `origin` is one of this server's own origins. */
  isOwnOrigin(origin: string): boolean {
    return this.hosts.some((h) => `http://${h}` === origin.toLowerCase());
  }
}

/** Refuses, on every request, a Host that is not this loopback server and an Origin of another site. */
export const loopbackOnly: FastifyPluginCallback<{ origin: LoopbackOrigin }> = fp<{ origin: LoopbackOrigin }>(
  async (app, { origin }) => {
    app.addHook('onRequest', async (request: FastifyRequest) => {
      const host = (request.headers.host ?? '').toLowerCase();
      if (!origin.hosts.includes(host)) {
        throw new NightjarError('NJ_CONTROL_FORBIDDEN', 'The control API answers requests for the loopback address only.');
      }
      const given = request.headers.origin;
      if (given !== undefined && !origin.isOwnOrigin(given)) {
        throw new NightjarError('NJ_CONTROL_FORBIDDEN', 'The control API does not answer web pages of other origins.');
      }
    });
  },
  { name: 'nightjar-control-loopback' },
);

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

/** The bearer token, held only as a digest. */
export class BearerToken {
  readonly #digest: Buffer;

  constructor(token: string) {
    this.#digest = digest(`Bearer ${token}`);
  }

  /** True if `authorization` is `Bearer <the token>` (constant time). */
  matches(authorization: string | undefined): boolean {
    return timingSafeEqual(digest(authorization ?? ''), this.#digest);
  }

  /** Throws NJ_CONTROL_UNAUTHORIZED unless the request carries the token. */
  require(request: FastifyRequest): void {
    if (!this.matches(request.headers.authorization)) {
      throw new NightjarError('NJ_CONTROL_UNAUTHORIZED', 'A valid bearer token is required.');
    }
  }
}

/** A preHandler: POSTs must say `content-type: application/json`. */
export async function jsonOnly(request: FastifyRequest): Promise<void> {
  if (request.method !== 'POST') return;
  if (!(request.headers['content-type'] ?? '').startsWith('application/json')) {
    throw new NightjarError('NJ_BAD_REQUEST', 'Control methods take application/json.');
  }
}

/** The file names the dashboard is made of: flat names of page types. */
const PAGE_FILE = /^\/(?:[A-Za-z0-9][A-Za-z0-9._-]*\.(?:html|js|css|svg|png|ico|woff2))?$/;

/** Options of {@link pagesGate}. */
export interface PagesGateOptions {
  /** The API's prefix: its routes are guarded by their own contexts (the token, or the ticket's Origin). */
  apiPrefix: string;
  /** The token check. */
  token: BearerToken;
  /** Whether a dashboard is served (without one, nothing outside the API is public). */
  dashboard: boolean;
}

/**
 * Outside the API's routes, only GETs of the dashboard's own files (`/` and flat file names of page
 * types) pass without the token; everything else — other files, paths that climb or are encoded,
 * paths no route knows — needs it, as the API does. Decided by the route a request matched, not by
 * its raw path, so `/v1/../x` is no way round it.
 */
export const pagesGate: FastifyPluginCallback<PagesGateOptions> = fp<PagesGateOptions>(
  async (app, o) => {
    app.addHook('onRequest', async (request: FastifyRequest, _reply: FastifyReply) => {
      const route = request.routeOptions.url;
      if (route !== undefined && route.startsWith(`${o.apiPrefix}/`)) return;
      const pathname = request.url.split('?')[0] ?? '';
      const page = o.dashboard && (request.method === 'GET' || request.method === 'HEAD') && PAGE_FILE.test(pathname);
      if (page) return;
      o.token.require(request);
    });
  },
  { name: 'nightjar-control-pages-gate' },
);
