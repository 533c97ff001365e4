/**
 * The client API besides jobs: the models on offer with their prices and whether the catalog lists
 * them (/v1/models), the caller's
 * balance (/v1/account), and candidate bundles for a model (/v1/candidates, an answer signed by the
 * gateway key), which the client verifies and seals its request for; and the client's
 * countersignature of a reply (POST /v1/jobs/:jobId/countersign, docs/protocol.md "Countersignature").
 */
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import {
  LIMITS,
  NightjarError,
  PROTOCOL_VERSION,
  TRUST_LEVELS,
  countersignKey,
  createDirectoryAnswer,
  describeIssues,
  jobIdSchema,
  sha256,
  utf8,
  verifyCountersignature,
  directoryNonceSchema,
  modelIdSchema,
  type AccountResponse,
  type CandidatesResponse,
  type ModelsResponse,
  type Trust,
} from '../../shared/index.js';
import { FREE, bearerOf, callerOf, clientAuth, priceOf, takeRequestToken } from './callers.js';
import type { GatewayContext, GatewayPluginOptions } from './context.js';

type Query = FastifyRequest<{ Querystring: Record<string, string | undefined> }>;

/** The answer to a countersignature the gateway took. */
export interface CountersignResponse {
  v: typeof PROTOCOL_VERSION;
  jobId: string;
  /** `stored`: kept with the job; `late`: kept, but the job's pending window had closed, so nothing moved. */
  status: 'stored' | 'late';
  /** The countersignature disputed the job's receipt now (its charge was cut to the client's count). */
  disputed: boolean;
}

/** Registers /v1/models, /v1/account, /v1/candidates and POST /v1/jobs/:jobId/countersign. */
export const clientApiRoutes: FastifyPluginAsync<GatewayPluginOptions> = async (app, { ctx }) => {
  app.get('/v1/models', { onRequest: clientAuth(ctx) }, async (): Promise<ModelsResponse> => {
    await ctx.catalog.refresh();
    const prices = new Map((await ctx.store.accounts.listPrices()).map((p) => [p.model, p]));
    const models: ModelsResponse['models'] = [];
    for (const m of ctx.network.models(ctx.clock.now())) {
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

  app.post<{ Params: { jobId: string } }>(
    '/v1/jobs/:jobId/countersign',
    // An honest countersignature costs the key nothing of its request rate (there is one per job,
    // and each job was admitted under the limit); a refused one takes a token, so a flood of
    // forgeries or replays is rate-limited like any other request.
    { onRequest: clientAuth(ctx, true, false) },
    async (req): Promise<CountersignResponse> => {
      try {
        return await takeCountersign(req);
      } catch (err) {
        await takeRequestToken(ctx, callerOf(req).id);
        throw err;
      }
    },
  );

  async function takeCountersign(req: FastifyRequest<{ Params: { jobId: string } }>): Promise<CountersignResponse> {
    const { key } = callerOf(req);
    const jobId = jobIdSchema.safeParse(req.params.jobId);
    if (!jobId.success) throw new NightjarError('NJ_BAD_REQUEST', `jobId: ${describeIssues(jobId.error)}`);
    // The key is derived from the API key's SHA-256, which is what the gateway stores; the bearer
    // authenticated this request, so hashing it here gives the same digest.
    const bearer = bearerOf(req.headers.authorization)!;
    const statement = verifyCountersignature(req.body, countersignKey(sha256(utf8(bearer))), jobId.data);
    const result = await ctx.store.ledger.countersign({
      jobId: jobId.data,
      keyId: key!.id,
      replyDigest: statement.replyDigest,
      completionTokens: statement.completionTokens,
      chunks: statement.chunks,
      received: statement.received,
      mac: (req.body as { mac: string }).mac,
      now: ctx.clock.now(),
    });
    switch (result.status) {
      case 'unknown':
        // Another key's job is answered like no job at all: nothing about it is told.
        throw new NightjarError('NJ_NOT_FOUND', 'this API key has no job with that id');
      case 'duplicate':
        ctx.metrics.countersigns.inc({ result: 'duplicate' });
        throw new NightjarError('NJ_COUNTERSIGN_DUPLICATE', 'this job already has a countersignature');
      case 'late':
        ctx.metrics.countersigns.inc({ result: 'late' });
        ctx.log.info('countersignature after the pending window', { jobId: jobId.data, keyId: key!.id });
        return { v: PROTOCOL_VERSION, jobId: jobId.data, status: 'late', disputed: false };
      case 'stored':
        ctx.metrics.countersigns.inc({ result: result.disputed ? 'disputed' : 'stored' });
        if (result.disputed) {
          ctx.log.warn('job disputed by its countersignature', {
            jobId: jobId.data,
            keyId: key!.id,
            refunded: result.refunded.toString(),
          });
          const job = await ctx.store.ledger.job(jobId.data);
          if (job?.agentId && job.dispute) ctx.honesty.countDisputed(job.agentId, jobId.data, job.dispute);
        }
        return { v: PROTOCOL_VERSION, jobId: jobId.data, status: 'stored', disputed: result.disputed };
    }
  }

  app.get<{ Querystring: Record<string, string | undefined> }>('/v1/candidates', { onRequest: clientAuth(ctx) }, async (req: Query) =>
    candidates(ctx, req),
  );
};

/**
 * The candidates answer, signed by the gateway key with the time and the request it answers (the
 * client's nonce, model, k and minTrust), or the error that says why there are none.
 */
async function candidates(ctx: GatewayContext, req: Query): Promise<CandidatesResponse> {
  // The whole network's agents in a cluster with NATS, this node's otherwise.
  const { network: directory, router } = ctx;
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
