/**
 * GET /v1/catalog (the model catalog signed by the gateway key) and GET /v1/gateway-key (that
 * key's public half). Both are public, for clients and agents alike, and rate-limited by address.
 */
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { NightjarError, PROTOCOL_VERSION, type GatewayKeyResponse, type SignedGatewayCatalog } from '../../shared/index.js';
import type { GatewayContext, GatewayPluginOptions } from './context.js';

/** Takes one token from the caller's address's rate limit. */
function limit(ctx: GatewayContext, req: FastifyRequest): void {
  const taken = ctx.limiter.take(`ip:${req.ip}`);
  if (!taken.ok) {
    ctx.metrics.rejected.inc({ limit: 'rate' });
    throw new NightjarError('NJ_RATE_LIMITED', 'too many requests from this address', { retryAfterMs: taken.retryAfterMs });
  }
}

/** Registers /v1/catalog and /v1/gateway-key. */
export const catalogRoutes: FastifyPluginAsync<GatewayPluginOptions> = async (app, { ctx }) => {
  app.get('/v1/catalog', async (req, reply): Promise<SignedGatewayCatalog> => {
    limit(ctx, req);
    void reply.header('cache-control', 'no-cache');
    return ctx.catalog.signed();
  });

  app.get('/v1/gateway-key', async (req): Promise<GatewayKeyResponse> => {
    limit(ctx, req);
    return { v: PROTOCOL_VERSION, ...ctx.catalog.gatewayKey };
  });
};
