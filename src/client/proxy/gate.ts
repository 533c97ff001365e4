/**
 * The proxy's gate: what a local API must refuse before anything else runs. A web page the user
 * visits must not be able to spend their credits through it, so the gate refuses
 * - a Host header that names anything but loopback (a DNS-rebinding page), when the proxy
 *   listens on loopback;
 * - an Origin that is not allowed, and an OPTIONS request CORS did not answer (a preflight of an
 *   allowed origin is answered before the gate, since it carries no token);
 * - a body that is not application/json (a form post needs no CORS preflight);
 * - a missing or wrong local token, when one is set: `Authorization: Bearer <token>` or
 *   `x-api-key: <token>`, compared in constant time.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyPluginCallback, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { NightjarError } from '../../shared/index.js';
import { isLoopbackHost } from './proxy-options.js';

/** Options of {@link proxyGate}. */
export interface ProxyGateOptions {
  /** Refuse Host headers that do not name loopback. Required. */
  loopbackOnly: boolean;
  /** The local token callers must send. Required; undefined for none. */
  token: string | undefined;
  /** Origins allowed to call. Required. */
  allowOrigins: ReadonlySet<string>;
}

const OTHER_ORIGINS = 'requests from web pages of other origins are refused';

function forbidden(message: string): NightjarError {
  return new NightjarError('NJ_PROXY_FORBIDDEN', message);
}

function hostnameOf(hostHeader: string): string {
  if (hostHeader.startsWith('[')) return hostHeader.slice(0, hostHeader.indexOf(']') + 1);
  return hostHeader.split(':')[0] ?? '';
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

/** True for `application/json`, with or without parameters. */
function isJson(contentType: string | undefined): boolean {
  return (contentType ?? '').split(';')[0]!.trim().toLowerCase() === 'application/json';
}

/** The token as sent, exactly: nothing trimmed (a token with a space added is another token). */
function givenToken(request: FastifyRequest): string | undefined {
  const auth = request.headers.authorization;
  if (auth?.toLowerCase().startsWith('bearer ')) return auth.slice(7);
  const key = request.headers['x-api-key'];
  return typeof key === 'string' ? key : undefined;
}

/** Why `request` is refused, or null. */
function refusal(request: FastifyRequest, o: ProxyGateOptions, tokenDigest: Buffer | null): NightjarError | null {
  if (o.loopbackOnly && !isLoopbackHost(hostnameOf(request.headers.host ?? ''))) {
    return forbidden('the Host header does not name a loopback address');
  }
  const origin = request.headers.origin;
  if (origin !== undefined && !o.allowOrigins.has(origin)) return forbidden(OTHER_ORIGINS);
  // CORS answered the preflights of allowed origins before the gate: what OPTIONS is left has none.
  if (request.method === 'OPTIONS') return forbidden(OTHER_ORIGINS);
  if (request.method === 'POST' && !isJson(request.headers['content-type'])) return forbidden('the body must be sent as application/json');
  if (tokenDigest) {
    const given = givenToken(request);
    // Digests of equal length, so the comparison takes the same time whatever was sent.
    if (given === undefined || !timingSafeEqual(digest(given), tokenDigest)) {
      return new NightjarError('NJ_PROXY_UNAUTHORIZED', 'a missing or wrong proxy token');
    }
  }
  return null;
}

/** Refuses, first of all, what the proxy must not serve (see the module comment). */
export const proxyGate: FastifyPluginCallback<ProxyGateOptions> = fp<ProxyGateOptions>(
  async (app, o) => {
    const tokenDigest = o.token === undefined ? null : digest(o.token);
    app.addHook('onRequest', async (request) => {
      const refused = refusal(request, o, tokenDigest);
      if (refused) throw refused;
    });
  },
  { name: 'nightjar-proxy-gate' },
);
