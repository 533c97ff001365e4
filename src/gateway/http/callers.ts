/**
 * Who is calling the client API, and what a model costs: an API key (or, on an open gateway,
 * nobody in particular, counted by address), with the per-caller rate limit applied.
 *
 * Authentication runs in each route's `onRequest` hook ({@link clientAuth}), before fastify reads
 * or parses a body: a request without a valid key costs the gateway a hash and an indexed lookup,
 * never a parse. Such requests are also counted per address ({@link refuseUnauthenticated}): past
 * options.unauthenticatedRateLimit they get 429 instead of 401.
 */
import type { FastifyRequest, onRequestHookHandler } from 'fastify';
import { NightjarError, bytesEqual, sha256, utf8 } from '../../shared/index.js';
import type { ApiKeyInfo, Price } from '../accounts/account.store.js';
import type { GatewayContext } from './context.js';

/** The caller of a client API request. */
export interface Caller {
  /** The API key, or null for an anonymous caller on an open gateway. */
  readonly key: ApiKeyInfo | null;
  /** What its limits are counted by: `key:<id>` or `ip:<address>`. */
  readonly id: string;
}

/** The price of free models. */
export const FREE: Price = { promptPerMTok: 0n, completionPerMTok: 0n };

/**
 * The bearer credential of an Authorization header, taken exactly: one space after `Bearer`,
 * then printable ASCII without spaces, nothing trimmed or repaired. Null if it is not so shaped.
 */
export function bearerOf(header: string | undefined): string | null {
  if (header === undefined) return null;
  const m = /^Bearer ([!-~]{1,256})$/.exec(header);
  return m ? m[1]! : null;
}

/** True if `given` is exactly `expected`, compared in constant time (of their digests). */
export function secretEquals(given: string | null, expected: string): boolean {
  return given !== null && bytesEqual(sha256(utf8(given)), sha256(utf8(expected)));
}

/**
 * Throws `error` (a 401) for a request that carries no valid key or token, after counting it
 * against its address: once the address has no tokens left it throws NJ_RATE_LIMITED (429)
 * instead, with Retry-After. Rejects, never resolves: call it as `return await refuseUnauthenticated(…)`.
 */
export async function refuseUnauthenticated(ctx: GatewayContext, req: FastifyRequest, error: NightjarError): Promise<never> {
  const taken = await ctx.unauthenticated.take(`ip:${req.ip}`);
  if (!taken.ok) {
    ctx.metrics.rejected.inc({ limit: 'unauthenticated' });
    throw new NightjarError('NJ_RATE_LIMITED', 'too many requests without a valid key from this address', {
      retryAfterMs: taken.retryAfterMs,
    });
  }
  throw error;
}

/**
 * Authenticates the request's caller and takes one token from its rate limit (unless `limited` is
 * false: the route takes its own). Without an API key the caller is anonymous, which only an open
 * gateway allows and never where `required`.
 */
export async function authenticateClient(ctx: GatewayContext, req: FastifyRequest, required = false, limited = true): Promise<Caller> {
  const header = req.headers.authorization;
  let key: ApiKeyInfo | null = null;
  if (header === undefined) {
    if (!ctx.options.allowAnonymous || required)
      return await refuseUnauthenticated(ctx, req, new NightjarError('NJ_UNAUTHORIZED', 'send an API key as Authorization: Bearer njk_…'));
  } else {
    const given = bearerOf(header);
    if (given === null)
      return await refuseUnauthenticated(
        ctx,
        req,
        new NightjarError('NJ_UNAUTHORIZED', 'the Authorization header must be "Bearer <API key>"'),
      );
    key = await ctx.store.accounts.authenticateApiKey(given);
    if (!key) return await refuseUnauthenticated(ctx, req, new NightjarError('NJ_UNAUTHORIZED', 'the API key is unknown or revoked'));
  }
  const id = key ? `key:${key.id}` : `ip:${req.ip}`;
  if (limited) await takeRequestToken(ctx, id);
  return { key, id };
}

/** Takes one token from `id`'s rate limit; rejects with NJ_RATE_LIMITED (429, with Retry-After) when it has none. */
export async function takeRequestToken(ctx: GatewayContext, id: string): Promise<void> {
  const taken = await ctx.limiter.take(id);
  if (!taken.ok) {
    ctx.metrics.rejected.inc({ limit: 'rate' });
    throw new NightjarError('NJ_RATE_LIMITED', 'too many requests for this key', { retryAfterMs: taken.retryAfterMs });
  }
}

const callers = new WeakMap<FastifyRequest, Caller>();

/**
 * A route's `onRequest` hook that authenticates the caller (see {@link authenticateClient})
 * before any body is read; the handler gets it with {@link callerOf}. `limited` false leaves the
 * rate limit to the route. Defaults: not required, limited.
 */
export function clientAuth(ctx: GatewayContext, required = false, limited = true): onRequestHookHandler {
  return async (req) => {
    callers.set(req, await authenticateClient(ctx, req, required, limited));
  };
}

/** The caller {@link clientAuth} authenticated for `req`. */
export function callerOf(req: FastifyRequest): Caller {
  const caller = callers.get(req);
  if (!caller) throw new NightjarError('NJ_INTERNAL', 'the route has no authentication hook');
  return caller;
}

/** What a job for `model` costs, and whether that price comes from the catalog. */
export interface ModelPricing {
  price: Price;
  /** Nothing to pay (an uncatalogued model, or a price of 0): any agent offering it may serve it. */
  free: boolean;
  /** The catalog lists the model: only its catalogued files may serve the job (and bill it). */
  catalogued: boolean;
}

/**
 * What `model` costs: a model the catalog lists costs its price (0 is a price; none is
 * NJ_MODEL_UNPRICED) and is served only from catalogued files; one it does not list is free
 * (offered only where the gateway serves uncatalogued files). A file's `synthetic` flag plays no part.
 */
export async function priceOf(ctx: GatewayContext, model: string): Promise<ModelPricing> {
  await ctx.catalog.refresh();
  if (!ctx.catalog.lists(model)) return { price: FREE, free: true, catalogued: false };
  const price = await ctx.store.accounts.getPrice(model);
  if (!price) throw new NightjarError('NJ_MODEL_UNPRICED', `the gateway has no price for ${model}`);
  return { price, free: price.promptPerMTok === 0n && price.completionPerMTok === 0n, catalogued: true };
}
