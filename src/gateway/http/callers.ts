/**
 * Who is calling the client API, and what a model costs: an API key (or, on an open gateway,
 * nobody in particular, counted by address), with the per-caller rate limit applied.
 */
import type { FastifyRequest } from 'fastify';
import { NightjarError } from '../../shared/index.js';
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
 * Authenticates the request's caller and takes one token from its rate limit. Without an API key
 * the caller is anonymous, which only an open gateway allows and never where `required`.
 */
export async function authenticateClient(ctx: GatewayContext, req: FastifyRequest, required = false): Promise<Caller> {
  const header = req.headers.authorization;
  let key: ApiKeyInfo | null = null;
  if (header === undefined) {
    if (!ctx.options.allowAnonymous || required)
      throw new NightjarError('NJ_UNAUTHORIZED', 'send an API key as Authorization: Bearer njk_…');
  } else {
    const m = /^Bearer ([!-~]{1,256})$/.exec(header);
    if (!m) throw new NightjarError('NJ_UNAUTHORIZED', 'the Authorization header must be "Bearer <API key>"');
    key = await ctx.store.accounts.authenticateApiKey(m[1]!);
    if (!key) throw new NightjarError('NJ_UNAUTHORIZED', 'the API key is unknown or revoked');
  }
  const id = key ? `key:${key.id}` : `ip:${req.ip}`;
  const taken = ctx.limiter.take(id);
  if (!taken.ok) {
    ctx.metrics.rejected.inc({ limit: 'rate' });
    throw new NightjarError('NJ_RATE_LIMITED', 'too many requests for this key', { retryAfterMs: taken.retryAfterMs });
  }
  return { key, id };
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
