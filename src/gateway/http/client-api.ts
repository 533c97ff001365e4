/**
 * The client API besides jobs: the models on offer with their prices and whether the catalog lists
 * them (/v1/models), the caller's
 * balance (/v1/account), and candidate bundles for a model (/v1/candidates, an answer signed by the
 * gateway key), which the client verifies and seals its request for.
 */
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import {
  LIMITS,
  NightjarError,
  PROTOCOL_VERSION,
  TRUST_LEVELS,
  createDirectoryAnswer,
  describeIssues,
  directoryNonceSchema,
  modelIdSchema,
  type AccountResponse,
  type CandidatesResponse,
  type ModelsResponse,
  type Trust,
} from '../../shared/index.js';
import { FREE, callerOf, clientAuth, priceOf } from './callers.js';
import type { GatewayContext, GatewayPluginOptions } from './context.js';

type Query = FastifyRequest<{ Querystring: Record<string, string | undefined> }>;

/** Registers /v1/models, /v1/account and /v1/candidates. */
export const clientApiRoutes: FastifyPluginAsync<GatewayPluginOptions> = async (app, { ctx }) => {
  app.get('/v1/models', { onRequest: clientAuth(ctx) }, async (): Promise<ModelsResponse> => {
    await ctx.catalog.refresh();
    const prices = new Map((await ctx.store.accounts.listPrices()).map((p) => [p.model, p]));
    const models: ModelsResponse['models'] = [];
    for (const m of ctx.directory.models(ctx.clock.now())) {
      // Prices attach to catalogued models only; an uncatalogued one (offered at all) is free.
      const p = m.catalogued ? prices.get(m.id) : FREE;
      if (!p) continue; // unpriced catalogued models are not on offer
      models.push({ ...m, price: { promptPerMTok: p.promptPerMTok.toString(), completionPerMTok: p.completionPerMTok.toString() } });
    }
    return { v: PROTOCOL_VERSION, models };
  });

  app.get('/v1/account', { onRequest: clientAuth(ctx, true) }, async (req): Promise<AccountResponse> => {
    const { key } = callerOf(req);
    const { balance, held } = await ctx.store.ledger.clientBalance(key!.id);
    return { v: PROTOCOL_VERSION, keyId: key!.id, name: key!.name, balance: balance.toString(), held: held.toString() };
  });

  app.get<{ Querystring: Record<string, string | undefined> }>('/v1/candidates', { onRequest: clientAuth(ctx) }, async (req: Query) =>
    candidates(ctx, req),
  );
};

/**
 * The candidates answer, signed by the gateway key with the time and the request it answers (the
 * client's nonce, model, k and minTrust), or the error that says why there are none.
 */
async function candidates(ctx: GatewayContext, req: Query): Promise<CandidatesResponse> {
  const { directory, router } = ctx;
  const { key } = callerOf(req);
  const q = req.query;
  const model = modelIdSchema.safeParse(q.model);
  if (!model.success) throw new NightjarError('NJ_BAD_REQUEST', `model: ${describeIssues(model.error)}`);
  const k = q.k === undefined ? ctx.options.defaultCandidates : Number(q.k);
  if (!Number.isInteger(k) || k < 1 || k > LIMITS.maxCandidates) {
    throw new NightjarError('NJ_BAD_REQUEST', `k must be an integer from 1 to ${LIMITS.maxCandidates}`);
  }
  const minTrust = (q.minTrust ?? 'signed') as Trust;
  if (!TRUST_LEVELS.includes(minTrust)) throw new NightjarError('NJ_BAD_REQUEST', `minTrust must be one of ${TRUST_LEVELS.join(', ')}`);
  const nonce = q.nonce === undefined ? null : directoryNonceSchema.safeParse(q.nonce);
  if (nonce && !nonce.success) throw new NightjarError('NJ_BAD_REQUEST', 'nonce must be 16 random bytes in base64url');
  await Promise.all([ctx.catalog.refresh(), ctx.honesty.refresh()]);
  if (!directory.knows(model.data)) throw ctx.modelUnknown(model.data);
  const { free, catalogued } = await priceOf(ctx, model.data);
  if (!free && !key) throw new NightjarError('NJ_UNAUTHORIZED', `${model.data} is not free: send an API key`);
  const needs = { model: model.data, minTrust, paid: !free, catalogued, now: ctx.clock.now() };
  const chosen = directory.candidates(needs, k);
  if (chosen.length === 0 && minTrust !== 'signed' && directory.candidates({ ...needs, minTrust: 'signed' }, 1).length > 0) {
    throw new NightjarError(
      'NJ_TRUST_POLICY',
      `no agent serving ${model.data} is ${minTrust} now; the agents serving it are signed only ` +
        '(on an agent, `nightjar doctor` says why it is not attested)',
    );
  }
  const anyFree = chosen.some((e) => directory.freeSlots(e) > 0);
  if (chosen.length === 0 || (!anyFree && !router.hasRoom(model.data))) {
    const why =
      chosen.length === 0
        ? `no agent serving ${model.data} at trust ${minTrust} can take jobs now`
        : `every agent serving ${model.data} is busy and the queue is full`;
    throw new NightjarError('NJ_NO_CAPACITY', why, { retryAfterMs: router.retryAfterMs(model.data) });
  }
  return createDirectoryAnswer({
    key: ctx.catalog.signingKey,
    request: { nonce: nonce ? nonce.data : null, model: model.data, k, minTrust },
    candidates: chosen.map((e) => ({ bundle: e.bundle.signed, trust: e.trust })),
    now: ctx.clock.now(),
  });
}
