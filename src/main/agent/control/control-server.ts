/**
 * The control API of a headless agent: the typed methods of src/shared/control on loopback HTTP,
 * and an event stream (server-sent events), behind a random bearer token.
 *
 * Who may call: a process on this machine that can read the control file (mode 0600, in the
 * config directory), which holds the address and the token. Each request is checked, in order:
 * - the Host header must name the loopback address and this port (127.0.0.1, localhost or [::1]):
 *   a web page that rebinds its own host name to 127.0.0.1 (DNS rebinding) sends its own name;
 * - an Origin header, when present, must be this server's own origin: pages of other sites are
 *   refused even if they somehow hold the token;
 * - `Authorization: Bearer <token>` must match, compared in constant time.
 * Methods take JSON only (`content-type: application/json`), which a browser cannot send
 * cross-origin without a preflight this server never approves.
 *
 * The dashboard (optional, `dashboardDir`): the built renderer's files are served at `/` without
 * the token (they hold no secret) under a strict Content Security Policy; the page gets the token
 * by redeeming a one-time ticket that the agent puts in the URL fragment it opens
 * (`http://127.0.0.1:PORT/#ticket=…`, see docs/app.md). A fragment is never sent to a server,
 * a ticket works once and for a minute, and redeeming needs this server's own Origin, so the URL
 * left in the browser's history or a process list is worthless.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readdir, readFile, rm } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import path from 'node:path';
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import type { z } from 'zod';
import {
  CONTROL_EVENTS_PATH,
  CONTROL_METHODS,
  NightjarError,
  controlPath,
  describeIssues,
  silentLogger,
  toBase64Url,
  type ControlEvent,
  type ControlMethod,
  type ControlOutput,
  type Logger,
} from '../../../shared/index.js';
import { writeFileAtomic } from '../fs-util.js';

/** What each method does: one function per method, taking its validated input. */
export type ControlHandlers = {
  [M in ControlMethod]: (input: z.output<(typeof CONTROL_METHODS)[M]['input']>) => Promise<ControlOutput<M>> | ControlOutput<M>;
};

/** Options of {@link startControlServer}. */
export interface ControlServerOptions {
  /** The methods. Required. */
  handlers: ControlHandlers;
  /** Subscribes a sender to the agent's events; returns the unsubscribe. Required. */
  subscribe: (send: (event: ControlEvent) => void) => () => void;
  /** Events every new stream starts with (the current state). Defaults to none. */
  initialEvents?: () => ControlEvent[];
  /** The bearer token. Defaults to 32 random bytes, base64url. */
  token?: string;
  /** Port on 127.0.0.1; 0 picks a free one. Defaults to 0. */
  port?: number;
  /** Where to write `{v, url, token, pid}` (mode 0600) for the CLI; removed on close. Defaults to none. */
  controlFile?: string;
  /** Interval of the keep-alive comment on event streams. Defaults to 15 000 ms. */
  keepAliveMs?: number;
  /** Defaults to a silent logger. */
  logger?: Logger;
  /** Serve the dashboard from this folder (the built renderer: index.html and its files). Defaults to none. */
  dashboardDir?: string;
  /** How long a dashboard ticket can be redeemed. Defaults to 60 000 ms. */
  dashboardTicketMs?: number;
  /** Clock for ticket expiry. Defaults to Date.now. */
  now?: () => number;
}

/** The Content-Security-Policy the dashboard is served with: nothing but this origin's own files. */
export const DASHBOARD_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** Where the dashboard page trades a ticket for the token (POST, JSON `{ticket}` → `{token}`). */
export const DASHBOARD_SESSION_PATH = '/v1/dashboard/session';
/** Where a holder of the token asks for a fresh dashboard URL (POST, bearer) → `{url}`. */
export const DASHBOARD_TICKET_PATH = '/v1/dashboard/ticket';

const STATIC_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
};

/** A running control server. */
export interface ControlServer extends AsyncDisposable {
  /** http://127.0.0.1:<port> */
  readonly url: string;
  readonly port: number;
  readonly token: string;
  /**
   * A fresh one-time URL that opens the dashboard signed in: `http://127.0.0.1:PORT/#ticket=…`.
   * Throws NJ_NOT_FOUND if this server has no dashboard.
   */
  dashboardUrl(): string;
  close(): Promise<void>;
}

/** What the control file holds. */
export interface ControlFile {
  v: 1;
  url: string;
  token: string;
  pid: number;
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

function sendError(reply: FastifyReply, error: NightjarError): FastifyReply {
  return reply.code(error.status).send({ error: error.toJSON() });
}

/** Starts the control server on 127.0.0.1. */
export async function startControlServer(options: ControlServerOptions): Promise<ControlServer> {
  const log = options.logger ?? silentLogger;
  const token = options.token ?? toBase64Url(randomBytes(32));
  const tokenDigest = digest(`Bearer ${token}`);
  const app = Fastify({ logger: false, bodyLimit: 64 * 1024, forceCloseConnections: true });
  let port = 0;
  const streams = new Set<ServerResponse>();
  const now = options.now ?? Date.now;
  const ticketMs = options.dashboardTicketMs ?? 60_000;
  /** Ticket digests (hex) and when they lapse. */
  const tickets = new Map<string, number>();
  /** URL path → file, for the dashboard's files. */
  const pages = new Map<string, string>();
  if (options.dashboardDir) {
    const dir = path.resolve(options.dashboardDir);
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      if (entry.isFile() && STATIC_TYPES[path.extname(entry.name)]) pages.set(`/${entry.name}`, path.join(dir, entry.name));
    }
    const index = pages.get('/index.html');
    if (!index)
      throw new NightjarError('NJ_CONFIG_INVALID', `the dashboard folder ${dir} has no index.html; rebuild it (npm run build:renderer)`);
    pages.set('/', index);
  }

  const allowedHosts = (): string[] => [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`];
  const allowedOrigins = (): string[] => allowedHosts().map((h) => `http://${h}`);

  app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    const host = request.headers.host ?? '';
    if (!allowedHosts().includes(host.toLowerCase())) {
      return sendError(reply, new NightjarError('NJ_CONTROL_FORBIDDEN', 'The control API answers requests for the loopback address only.'));
    }
    const origin = request.headers.origin;
    if (origin !== undefined && !allowedOrigins().includes(origin.toLowerCase())) {
      return sendError(reply, new NightjarError('NJ_CONTROL_FORBIDDEN', 'The control API does not answer web pages of other origins.'));
    }
    const pathname = request.url.split('?')[0] ?? '';
    // The dashboard's files and the ticket exchange are the only answers without the token.
    if ((request.method === 'GET' || request.method === 'HEAD') && pages.has(pathname)) return;
    if (request.method === 'POST' && pathname === DASHBOARD_SESSION_PATH && pages.size > 0) return;
    const given = digest(request.headers.authorization ?? '');
    if (!timingSafeEqual(given, tokenDigest)) {
      return sendError(reply, new NightjarError('NJ_CONTROL_UNAUTHORIZED', 'A valid bearer token is required.'));
    }
    reply.header('cache-control', 'no-store').header('x-content-type-options', 'nosniff');
  });

  app.setNotFoundHandler((_request, reply) => sendError(reply, new NightjarError('NJ_BAD_REQUEST', 'No such control method.')));
  app.setErrorHandler((error: unknown, _request, reply) => {
    if (error instanceof NightjarError) return sendError(reply, error);
    const status = (error as { statusCode?: number }).statusCode;
    if (status !== undefined && status >= 400 && status < 500) {
      return sendError(
        reply,
        new NightjarError(status === 413 ? 'NJ_PAYLOAD_TOO_LARGE' : 'NJ_BAD_REQUEST', 'The request body must be a JSON object.'),
      );
    }
    log.error('control method failed', { err: error instanceof Error ? error.message : String(error) });
    return sendError(reply, new NightjarError('NJ_INTERNAL', 'The control method failed; see the agent log.'));
  });

  for (const method of Object.keys(CONTROL_METHODS) as ControlMethod[]) {
    const schema = CONTROL_METHODS[method].input;
    app.post(controlPath(method), async (request, reply) => {
      if (!(request.headers['content-type'] ?? '').startsWith('application/json')) {
        return sendError(reply, new NightjarError('NJ_BAD_REQUEST', 'Control methods take application/json.'));
      }
      const parsed = schema.safeParse(request.body ?? {});
      if (!parsed.success) return sendError(reply, new NightjarError('NJ_BAD_REQUEST', `${method}: ${describeIssues(parsed.error)}`));
      const handler = options.handlers[method] as (input: unknown) => unknown;
      return reply.send(await handler(parsed.data));
    });
  }

  const issueTicket = (): string => {
    if (pages.size === 0) throw new NightjarError('NJ_NOT_FOUND', 'This agent serves no dashboard.');
    const t = now();
    for (const [k, lapse] of tickets) if (lapse <= t) tickets.delete(k);
    const ticket = toBase64Url(randomBytes(32));
    tickets.set(digest(ticket).toString('hex'), t + ticketMs);
    return `http://127.0.0.1:${port}/#ticket=${ticket}`;
  };

  for (const [urlPath, file] of pages) {
    app.get(urlPath, async (_request, reply) =>
      reply
        .header('content-type', STATIC_TYPES[path.extname(file)] ?? 'application/octet-stream')
        .header('content-security-policy', DASHBOARD_CSP)
        .header('x-content-type-options', 'nosniff')
        .header('x-frame-options', 'DENY')
        .header('referrer-policy', 'no-referrer')
        .header('cross-origin-opener-policy', 'same-origin')
        .header('cross-origin-resource-policy', 'same-origin')
        .header('cache-control', 'no-store')
        .send(await readFile(file)),
    );
  }

  if (pages.size > 0) {
    app.post(DASHBOARD_SESSION_PATH, async (request, reply) => {
      // Only the dashboard page itself (this origin) may redeem: a fetch from a page always names its origin.
      const origin = request.headers.origin;
      if (origin === undefined || !allowedOrigins().includes(origin.toLowerCase())) {
        return sendError(reply, new NightjarError('NJ_CONTROL_FORBIDDEN', 'Dashboard tickets are redeemed by the dashboard page only.'));
      }
      if (!(request.headers['content-type'] ?? '').startsWith('application/json')) {
        return sendError(reply, new NightjarError('NJ_BAD_REQUEST', 'Control methods take application/json.'));
      }
      const ticket = (request.body as { ticket?: unknown } | null)?.ticket;
      const key = typeof ticket === 'string' && ticket.length <= 128 ? digest(ticket).toString('hex') : null;
      const lapse = key === null ? undefined : tickets.get(key);
      if (key !== null) tickets.delete(key);
      if (lapse === undefined || lapse <= now()) {
        return sendError(reply, new NightjarError('NJ_DASHBOARD_TICKET', 'This dashboard link was already used or has expired.'));
      }
      return reply.header('cache-control', 'no-store').send({ token });
    });
  }
  app.post(DASHBOARD_TICKET_PATH, async (request, reply) => {
    if (!(request.headers['content-type'] ?? '').startsWith('application/json')) {
      return sendError(reply, new NightjarError('NJ_BAD_REQUEST', 'Control methods take application/json.'));
    }
    return reply.send({ url: issueTicket() });
  });

  app.get(CONTROL_EVENTS_PATH, (request, reply) => {
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      connection: 'keep-alive',
    });
    const send = (event: ControlEvent): void => {
      if (!res.writableEnded) res.write(`event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`);
    };
    for (const e of options.initialEvents?.() ?? []) send(e);
    const unsubscribe = options.subscribe(send);
    const keepAlive = setInterval(() => {
      if (!res.writableEnded) res.write(': keep-alive\n\n');
    }, options.keepAliveMs ?? 15_000);
    keepAlive.unref();
    streams.add(res);
    request.raw.on('close', () => {
      clearInterval(keepAlive);
      unsubscribe();
      streams.delete(res);
    });
  });

  await app.listen({ host: '127.0.0.1', port: options.port ?? 0 });
  port = (app.server.address() as { port: number }).port;
  const url = `http://127.0.0.1:${port}`;
  if (options.controlFile) {
    const file: ControlFile = { v: 1, url, token, pid: process.pid };
    await writeFileAtomic(options.controlFile, JSON.stringify(file) + '\n', 0o600);
  }
  log.info('control API listening', { url });

  let closing: Promise<void> | null = null;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      for (const res of streams) res.end();
      await app.close();
      if (options.controlFile) {
        // Remove the file only if it is still ours (another agent may have started since).
        const current = await readFile(options.controlFile, 'utf8').catch(() => '');
        if (current.includes(token)) await rm(options.controlFile, { force: true });
      }
    })());
  return { url, port, token, dashboardUrl: issueTicket, close, [Symbol.asyncDispose]: close };
}
