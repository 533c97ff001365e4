/**
 * The models the proxy offers, in the shape of the API that asks (OpenAI's `list` of `model`
 * objects, or Anthropic's page), and the health check.
 */
import type { FastifyPluginCallback, FastifyReply, FastifyRequest } from 'fastify';
import { NightjarError } from '../../shared/index.js';
import { flavorOf } from './error-replies.js';
import type { ProxyContext } from './proxy-options.js';

async function listModels(ctx: ProxyContext, request: FastifyRequest, reply: FastifyReply, one: string | null): Promise<FastifyReply> {
  const { client, listSynthetic } = ctx.options;
  const api = flavorOf(request);
  const models = (await client.models()).filter((m) => listSynthetic || !m.synthetic);
  const shown = one === null ? models : models.filter((m) => m.id === one);
  if (one !== null && shown.length === 0) throw new NightjarError('NJ_MODEL_UNKNOWN', `no connected agent serves ${one}`);
  const rows =
    api === 'openai'
      ? shown.map((m) => ({ id: m.id, object: 'model', created: 0, owned_by: 'nightjar' }))
      : shown.map((m) => ({ type: 'model', id: m.id, display_name: m.id, created_at: '1970-01-01T00:00:00Z' }));
  const body =
    one !== null
      ? rows[0]
      : api === 'openai'
        ? { object: 'list', data: rows }
        : { data: rows, has_more: false, first_id: shown[0]?.id ?? null, last_id: shown.at(-1)?.id ?? null };
  return reply.header('request-id', request.id).header('cache-control', 'no-store').send(body);
}

/** Registers GET /v1/models, GET /v1/models/{id} and GET /healthz. */
export const modelsRoutes: FastifyPluginCallback<{ ctx: ProxyContext }> = (app, { ctx }, done) => {
  app.get('/healthz', async (_request, reply) => reply.header('cache-control', 'no-store').send({ ok: true }));
  app.get('/v1/models', async (request, reply) => listModels(ctx, request, reply, null));
  app.get<{ Params: { '*': string } }>('/v1/models/*', async (request, reply) => listModels(ctx, request, reply, request.params['*']));
  done();
};
