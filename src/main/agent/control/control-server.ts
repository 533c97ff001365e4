/**
 * The control API of a headless agent: the typed methods of src/shared/control on loopback HTTP,
 * and an event stream (server-sent events), behind a random bearer token. A fastify server put
 * together from plugins, each one concern:
 *
 * - `loopbackOnly` and `pagesGate` (guards.ts) on every request: Host and Origin must be this
 *   loopback server's own (DNS rebinding, other sites), and nothing outside the API's routes but
 *   the dashboard's own files is answered without the token;
 * - securityHeaders (src/node): the one page policy (PAGE_CSP) and its headers on every answer;
 * - nightjarErrors (src/node): every failure as `{ error: { code, message } }`;
 * - the API, in its own context under /v1: the token (constant time), JSON only, one route per
 *   method, the event stream and dashboard tickets, and its own "no such control method";
 * - the dashboard (optional, `dashboardDir`): the built renderer through staticPages (src/node)
 *   at `/`, and the ticket exchange in a context of its own (no token; this origin only).
 *
 * Who may call: a process on this machine that can read the control file (mode 0600, in the
 * config directory), which holds the address and the token. A browser cannot send JSON
 * cross-origin without a preflight this server never approves.
 *
 * The dashboard's page gets the token by redeeming a one-time ticket that the agent puts in the
 * URL fragment it opens (`http://127.0.0.1:PORT/#ticket=…`, see docs/app.md and tickets.ts).
 */
import { randomBytes } from 'node:crypto';
import { access, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import Fastify, { type FastifyInstance, type FastifyPluginAsync } from 'fastify';
import type { z } from 'zod';
import { nightjarErrors, securityHeaders, staticPages } from '../../../node/index.js';
import {
  CONTROL_EVENTS_PATH,
  CONTROL_METHODS,
  NightjarError,
  Resource,
  controlPath,
  describeIssues,
  silentLogger,
  systemClock,
  toBase64Url,
  withDefaults,
  type Clock,
  type ControlEvent,
  type ControlMethod,
  type ControlOutput,
  type Event,
  type Logger,
} from '../../../shared/index.js';
import { writeFileAtomic } from '../fs-util.js';
import { EventStreams } from './event-stream.js';
import { BearerToken, LoopbackOrigin, jsonOnly, loopbackOnly, pagesGate } from './guards.js';
import { DashboardTickets } from './tickets.js';

/** What each method does: one function per method, taking its validated input. */
export type ControlHandlers = {
  [M in ControlMethod]: (input: z.output<(typeof CONTROL_METHODS)[M]['input']>) => Promise<ControlOutput<M>> | ControlOutput<M>;
};

/** Options of {@link startControlServer}. */
export interface ControlServerOptions {
  /** The methods. Required. */
  handlers: ControlHandlers;
  /** The agent's events, streamed to every open event stream. Required. */
  events: Event<ControlEvent>;
  /** Events every new stream starts with (the current state). Defaults to none. */
  initialEvents?: () => ControlEvent[];
  /** The bearer token. Defaults to 32 random bytes, base64url. */
  token?: string | null;
  /** Port on 127.0.0.1; 0 picks a free one. Defaults to 0. */
  port?: number;
  /** Where to write `{v, url, token, pid}` (mode 0600) for the CLI; removed on dispose. Defaults to none. */
  controlFile?: string | null;
  /** Interval of the keep-alive comment on event streams. Defaults to 15 000 ms. */
  keepAliveMs?: number;
  /** Serve the dashboard from this folder (the built renderer: index.html and its files). Defaults to none. */
  dashboardDir?: string | null;
  /** How long a dashboard ticket can be redeemed. Defaults to 60 000 ms. */
  dashboardTicketMs?: number;
  /** Largest request body. Defaults to 64 KiB. */
  bodyLimit?: number;
  /** Clock of ticket expiry and keep-alives. Defaults to the system clock. */
  clock?: Clock;
  /** Defaults to a silent logger. */
  logger?: Logger;
}

type Defaulted =
  | 'initialEvents'
  | 'token'
  | 'port'
  | 'controlFile'
  | 'keepAliveMs'
  | 'dashboardDir'
  | 'dashboardTicketMs'
  | 'bodyLimit'
  | 'clock'
  | 'logger';

const CONTROL_SERVER_DEFAULTS: Required<Pick<ControlServerOptions, Defaulted>> = {
  initialEvents: () => [],
  token: null,
  port: 0,
  controlFile: null,
  keepAliveMs: 15_000,
  dashboardDir: null,
  dashboardTicketMs: 60_000,
  bodyLimit: 64 * 1024,
  clock: systemClock,
  logger: silentLogger,
};

/** Where the dashboard page trades a ticket for the token (POST, JSON `{ticket}` → `{token}`). */
export const DASHBOARD_SESSION_PATH = '/v1/dashboard/session';
/** Where a holder of the token asks for a fresh dashboard URL (POST, bearer) → `{url}`. */
export const DASHBOARD_TICKET_PATH = '/v1/dashboard/ticket';

/** The prefix of every API route (methods, events, tickets). */
const API_PREFIX = '/v1';

/** What the control file holds. */
export interface ControlFile {
  v: 1;
  url: string;
  token: string;
  pid: number;
}

/** Everything the API's plugins need. */
interface ApiParts {
  readonly handlers: ControlHandlers;
  readonly token: BearerToken;
  readonly streams: EventStreams;
  readonly origin: LoopbackOrigin;
  readonly tickets: DashboardTickets | null;
}

/** The path of `full` inside the API's prefix. */
function inApi(full: string): string {
  return full.slice(API_PREFIX.length);
}

/** A dashboard URL that signs in with a fresh ticket; NJ_NOT_FOUND without a dashboard. */
function dashboardUrl(parts: Pick<ApiParts, 'tickets' | 'origin'>): string {
  if (!parts.tickets) throw new NightjarError('NJ_NOT_FOUND', 'This agent serves no dashboard.');
  return `http://127.0.0.1:${parts.origin.port}/#ticket=${parts.tickets.issue()}`;
}

/** The API: the token, JSON only, the methods, the event stream, fresh dashboard URLs. */
function controlApi(parts: ApiParts): FastifyPluginAsync {
  return async (api) => {
    api.addHook('onRequest', async (request, reply) => {
      parts.token.require(request);
      reply.header('cache-control', 'no-store');
    });
    api.addHook('preHandler', jsonOnly);
    for (const method of Object.keys(CONTROL_METHODS) as ControlMethod[]) {
      const schema = CONTROL_METHODS[method].input;
      const handler = parts.handlers[method] as (input: unknown) => unknown;
      api.post(inApi(controlPath(method)), async (request) => {
        const parsed = schema.safeParse(request.body ?? {});
        if (!parsed.success) throw new NightjarError('NJ_BAD_REQUEST', `${method}: ${describeIssues(parsed.error)}`);
        return handler(parsed.data);
      });
    }
    api.post(inApi(DASHBOARD_TICKET_PATH), async () => ({ url: dashboardUrl(parts) }));
    api.get(inApi(CONTROL_EVENTS_PATH), (request, reply) => parts.streams.serve(request, reply));
    api.setNotFoundHandler(async () => {
      throw new NightjarError('NJ_BAD_REQUEST', 'No such control method.');
    });
  };
}

/** The ticket exchange: no token, but only the dashboard page itself (this origin) may redeem. */
function ticketExchange(parts: ApiParts & { readonly secret: string }): FastifyPluginAsync {
  return async (app) => {
    app.post(inApi(DASHBOARD_SESSION_PATH), async (request, reply) => {
      // A fetch from a page always names its origin; a request without one is not the page.
      const origin = request.headers.origin;
      if (origin === undefined || !parts.origin.isOwnOrigin(origin)) {
        throw new NightjarError('NJ_CONTROL_FORBIDDEN', 'Dashboard tickets are redeemed by the dashboard page only.');
      }
      await jsonOnly(request);
      if (!parts.tickets?.redeem((request.body as { ticket?: unknown } | null)?.ticket)) {
        throw new NightjarError('NJ_DASHBOARD_TICKET', 'This dashboard link was already used or has expired.');
      }
      return reply.header('cache-control', 'no-store').send({ token: parts.secret });
    });
  };
}

/** A running control server; dispose() ends its streams, closes it and removes the control file. */
export class ControlServer extends Resource {
  /** http://127.0.0.1:<port> */
  readonly url: string;
  readonly port: number;
  readonly token: string;
  readonly #parts: ApiParts;

  /** @internal Built by {@link startControlServer}. */
  constructor(app: FastifyInstance, parts: ApiParts, token: string, controlFile: string | null) {
    super();
    this.#parts = parts;
    this.port = parts.origin.port;
    this.url = `http://127.0.0.1:${this.port}`;
    this.token = token;
    // Last added, first disposed: the streams end, the server closes, then the file goes.
    if (controlFile) {
      this.disposables.add(async () => {
        // Remove the file only if it is still ours (another agent may have started since).
        const current = await readFile(controlFile, 'utf8').catch(() => '');
        if (current.includes(token)) await rm(controlFile, { force: true });
      });
    }
    this.disposables.add(() => app.close());
    this.disposables.add(parts.streams);
  }

  /**
   * A fresh one-time URL that opens the dashboard signed in: `http://127.0.0.1:PORT/#ticket=…`.
   * Throws NJ_NOT_FOUND if this server has no dashboard.
   */
  dashboardUrl(): string {
    return dashboardUrl(this.#parts);
  }
}

/** Starts the control server on 127.0.0.1. */
export async function startControlServer(options: ControlServerOptions): Promise<ControlServer> {
  const o = withDefaults(CONTROL_SERVER_DEFAULTS, options);
  const secret = o.token ?? toBase64Url(randomBytes(32));
  const dir = o.dashboardDir === null ? null : path.resolve(o.dashboardDir);
  if (dir !== null) {
    await access(path.join(dir, 'index.html')).catch((cause: unknown) => {
      throw new NightjarError('NJ_CONFIG_INVALID', `the dashboard folder ${dir} has no index.html; rebuild it (npm run build)`, { cause });
    });
  }
  const parts: ApiParts = {
    handlers: o.handlers,
    token: new BearerToken(secret),
    streams: new EventStreams({ events: o.events, initialEvents: o.initialEvents, keepAliveMs: o.keepAliveMs, clock: o.clock }),
    origin: new LoopbackOrigin(),
    tickets: dir === null ? null : new DashboardTickets(o.clock, o.dashboardTicketMs),
  };
  const app = Fastify({ logger: false, bodyLimit: o.bodyLimit, forceCloseConnections: true });
  try {
    await app.register(nightjarErrors, {
      logger: o.logger,
      notFound: () => new NightjarError('NJ_BAD_REQUEST', 'No such control method.'),
      badBodyMessage: 'The request body must be a JSON object.',
      internalMessage: 'The control method failed; see the agent log.',
    });
    await app.register(loopbackOnly, { origin: parts.origin });
    await app.register(pagesGate, { apiPrefix: API_PREFIX, token: parts.token, dashboard: dir !== null });
    await app.register(securityHeaders);
    await app.register(controlApi(parts), { prefix: API_PREFIX });
    if (dir !== null) {
      await app.register(ticketExchange({ ...parts, secret }), { prefix: API_PREFIX });
      await app.register(staticPages, { sites: [{ prefix: '/', dir }], cacheControl: 'no-store' });
    }
    await app.listen({ host: '127.0.0.1', port: o.port });
  } catch (err) {
    await app.close();
    throw err;
  }
  parts.origin.listening((app.server.address() as { port: number }).port);
  const server = new ControlServer(app, parts, secret, o.controlFile);
  if (o.controlFile) {
    const file: ControlFile = { v: 1, url: server.url, token: secret, pid: process.pid };
    try {
      await writeFileAtomic(o.controlFile, JSON.stringify(file) + '\n', 0o600);
    } catch (err) {
      await server.dispose();
      throw err;
    }
  }
  o.logger.info('control API listening', { url: server.url });
  return server;
}
