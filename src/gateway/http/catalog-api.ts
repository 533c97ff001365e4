/**
 * GET /v1/catalog (the model catalog signed by the gateway key), GET /v1/releases (the
 * released-versions list, signed by it) and GET /v1/gateway-key (that key's public half, with the
 * rotation statements still in their grace period). All are public, for clients and agents alike,
 * and rate-limited by address.
 */
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import {
  NightjarError,
  PROTOCOL_VERSION,
  type GatewayKeyResponse,
  type SignedGatewayCatalog,
  type SignedReleasesList,
} from '../../shared/index.js';
import type { GatewayContext, GatewayPluginOptions } from './context.js';

/** Takes one token from the caller's address's rate limit. */
async function limit(ctx: GatewayContext, req: FastifyRequest): Promise<void> {
  const taken = await ctx.limiter.take(`ip:${req.ip}`);
  if (!taken.ok) {
    ctx.metrics.rejected.inc({ limit: 'rate' });
    throw new NightjarError('NJ_RATE_LIMITED', 'too many requests from this address', { retryAfterMs: taken.retryAfterMs });
  }
}

/** Registers /v1/catalog, /v1/releases and /v1/gateway-key. */
export const catalogRoutes: FastifyPluginAsync<GatewayPluginOptions> = async (app, { ctx }) => {
  app.get('/v1/catalog', async (req, reply): Promise<SignedGatewayCatalog> => {
    await limit(ctx, req);
    void reply.header('cache-control', 'no-cache');
    return ctx.catalog.signed();
  });

  app.get('/v1/releases', async (req, reply): Promise<SignedReleasesList> => {
    await limit(ctx, req);
    void reply.header('cache-control', 'no-cache');
    return ctx.catalog.signedReleases();
  });

  app.get('/v1/gateway-key', async (req, reply): Promise<GatewayKeyResponse> => {
    await limit(ctx, req);
    void reply.header('cache-control', 'no-cache');
    await ctx.catalog.refresh();
    const rotations = ctx.catalog.rotations;
    return { v: PROTOCOL_VERSION, ...ctx.catalog.gatewayKey, ...(rotations.length > 0 ? { rotations: [...rotations] } : {}) };
  });
};
