/**
 * Health and metrics: /healthz (the process answers), /readyz (not shutting down, and the
 * database answers) and /metrics (Prometheus text format, behind the metrics token if one is set,
 * compared exactly in its `onRequest` hook and counted against the address when wrong).
 */
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { NightjarError } from '../../shared/index.js';
import { bearerOf, refuseUnauthenticated, secretEquals } from './callers.js';
import type { GatewayPluginOptions } from './context.js';

/** Registers /healthz, /readyz and /metrics. */
export const healthRoutes: FastifyPluginAsync<GatewayPluginOptions> = async (app, { ctx }) => {
  app.get('/healthz', async () => ({ ok: true }));

  app.get('/readyz', async () => {
    if (ctx.closing()) throw new NightjarError('NJ_SHUTTING_DOWN', 'the gateway is shutting down', { retryAfterMs: 2000 });
    try {
      await ctx.store.ping();
    } catch {
      throw new NightjarError('NJ_INTERNAL', 'the database does not answer');
    }
    return { ok: true, agents: ctx.directory.size };
  });

  const metricsAuth = async (req: FastifyRequest): Promise<void> => {
    const token = ctx.options.metricsToken;
    if (token !== null && !secretEquals(bearerOf(req.headers.authorization), token)) {
      await refuseUnauthenticated(ctx, req, new NightjarError('NJ_UNAUTHORIZED', 'metrics need the metrics token'));
    }
  };
  app.get('/metrics', { onRequest: metricsAuth }, async (_req, reply) => {
    return reply
      .header('content-type', ctx.metrics.contentType)
      .header('cache-control', 'no-store')
      .send(await ctx.metrics.render());
  });
};
