/**
 * POST /v1/jobs: admit a sealed job (caller, limits, price, hold), then stream its events to the
 * client as NDJSON while a {@link ClientJob} relays it. A job that fails before anything streamed
 * is answered as a plain HTTP error with its status and Retry-After — unless the client asked for
 * the stream to begin at admission (EARLY_STREAM_HEADER, as the SDK does): then the 200 and a first
 * keepalive go out once the job is held, so the client can tell a gateway that died or went silent
 * from an agent still thinking, and a failure before the first chunk is an `error` event. A client that does not read
 * its reply is cut off (its job cancelled) once it leaves more than maxBufferedBytesPerClient
 * unread; a client that goes away cancels its job.
 */
import type { ServerResponse } from 'node:http';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import {
  EARLY_STREAM_HEADER,
  NightjarError,
  describeIssues,
  fromBase64Url,
  jobRequestSchema,
  sha256,
  toBase64Url,
  type Clock,
  type Envelope,
  type JobEvent,
  type TimerHandle,
} from '../../shared/index.js';
import { ClientJob, type JobOutcome, type JobSink } from '../job.js';
import { tooManyStreams } from '../ledger/ledger.store.js';
import { callerOf, clientAuth, priceOf, type Caller } from './callers.js';
import type { GatewayContext, GatewayPluginOptions } from './context.js';

/** A job admitted and held, ready to stream. */
interface Admitted {
  readonly caller: Caller;
  readonly envelope: Envelope;
  readonly body: Uint8Array;
  /** sha256 of the body ciphertext. */
  readonly requestDigest: Uint8Array;
  readonly free: boolean;
  /** Priced from the catalog: only catalogued files may serve and bill it. */
  readonly catalogued: boolean;
  readonly admittedAt: number;
}

/**
 * The body limit of POST /v1/jobs: the base64url of the largest request ciphertext, plus the
 * header and JSON punctuation. Every other route has options.maxApiBodyBytes.
 */
export function jobBodyLimit(maxRequestBodyBytes: number): number {
  return Math.ceil((maxRequestBodyBytes * 4) / 3) + 64 * 1024;
}

/** Registers POST /v1/jobs: shutdown, caller and rate limit are refused in `onRequest`, before the body is read. */
export const jobRoutes: FastifyPluginAsync<GatewayPluginOptions> = async (app, { ctx }) => {
  const refuseWhileClosing = async (): Promise<void> => {
    if (ctx.closing()) throw new NightjarError('NJ_SHUTTING_DOWN', 'the gateway is shutting down; retry shortly', { retryAfterMs: 2000 });
  };
  app.post(
    '/v1/jobs',
    { bodyLimit: jobBodyLimit(ctx.options.maxRequestBodyBytes), onRequest: [refuseWhileClosing, clientAuth(ctx)] },
    async (req, reply) => {
      const admitted = await admit(ctx, req);
      await stream(ctx, admitted, reply, req.headers[EARLY_STREAM_HEADER.name] === EARLY_STREAM_HEADER.value);
    },
  );
};

/** Checks the request against every limit and places the job's hold; throws the error to answer. */
async function admit(ctx: GatewayContext, req: FastifyRequest): Promise<Admitted> {
  const { options, jobs, metrics } = ctx;
  if (ctx.closing()) throw new NightjarError('NJ_SHUTTING_DOWN', 'the gateway is shutting down; retry shortly', { retryAfterMs: 2000 });
  const caller = callerOf(req);
  const parsed = jobRequestSchema.safeParse(req.body);
  if (!parsed.success) throw new NightjarError('NJ_BAD_REQUEST', `job request: ${describeIssues(parsed.error)}`);
  const { envelope } = parsed.data;
  const { header } = envelope;
  const body = fromBase64Url(envelope.body);
  const maxBody = options.maxRequestBodyBytes;
  if (body.length !== header.bodyLength) throw new NightjarError('NJ_BAD_REQUEST', 'the body length differs from the header');
  if (body.length > maxBody) throw new NightjarError('NJ_PAYLOAD_TOO_LARGE', `the body exceeds ${maxBody} bytes`);
  if (jobs.has(header.jobId)) throw new NightjarError('NJ_DUPLICATE_JOB', 'a job with this jobId is running');
  const maxStreams = options.maxStreamsPerKey;
  // This node's streams first (no database work); in a cluster the hold then counts the key's
  // held jobs on every node, atomically with placing this one.
  if (jobs.streamsOf(caller.id) >= maxStreams) {
    metrics.rejected.inc({ limit: 'streams' });
    throw tooManyStreams(maxStreams);
  }
  await Promise.all([ctx.catalog.refresh(), ctx.honesty.refresh()]);
  if (!ctx.network.knows(header.model)) throw ctx.modelUnknown(header.model);
  const { price, free, catalogued } = await priceOf(ctx, header.model);
  if (!free && !caller.key) throw new NightjarError('NJ_UNAUTHORIZED', `${header.model} is not free: send an API key`);
  const admittedAt = ctx.clock.now();
  const requestDigest = sha256(body);
  try {
    await ctx.billing.hold({
      jobId: header.jobId,
      keyId: caller.key?.id ?? null,
      model: header.model,
      price,
      bodyLength: header.bodyLength,
      maxTokens: header.maxTokens,
      requestDigest: toBase64Url(requestDigest),
      maxHeldPerKey: options.cluster ? maxStreams : null,
    });
  } catch (err) {
    if (err instanceof NightjarError && err.code === 'NJ_RATE_LIMITED') metrics.rejected.inc({ limit: 'streams' });
    throw err;
  }
  return { caller, envelope, body, requestDigest, free, catalogued, admittedAt };
}

/** Runs the admitted job and streams its events to the client; resolves when the job is over. */
async function stream(ctx: GatewayContext, admitted: Admitted, reply: FastifyReply, early: boolean): Promise<void> {
  const { envelope, caller } = admitted;
  const jobId = envelope.header.jobId;
  reply.hijack();
  const res = reply.raw;
  let finished = false;
  const sink = new NdjsonSink(res, ctx.options.maxBufferedBytesPerClient, ctx.options.streamKeepaliveMs, ctx.clock, () => {
    ctx.log.warn('client too slow; cancelling its job', { jobId });
    ctx.metrics.rejected.inc({ limit: 'slow-client' });
    job.cancel('the client is not reading its reply');
  });
  const job: ClientJob = new ClientJob({
    envelope,
    requestDigest: admitted.requestDigest,
    transport: ctx.transport,
    router: ctx.router,
    clock: ctx.clock,
    logger: ctx.log,
    paid: !admitted.free,
    pricedFiles: admitted.catalogued ? (model, sha256) => ctx.catalog.catalogued(model, sha256) : null,
    timeouts: ctx.options.jobTimeouts,
    sink,
    billing: ctx.billing.forJob(jobId),
    timed: (channel, timing) => {
      const live = ctx.directory.get(channel.agentId);
      ctx.honesty.observe(
        {
          agentId: channel.agentId,
          chip: channel.bundle.bundle.platform.chip,
          claimedTokensPerSecond: live === channel && live.status?.tokensPerSecond ? live.status.tokensPerSecond : null,
        },
        timing,
      );
    },
    observer: {
      firstChunk: (_agentId, ms) => ctx.metrics.ttft.observe(ms / 1000),
      relayed: (ms) => ctx.metrics.relay.observe(ms / 1000),
      attemptFailed: (_agentId, code) => ctx.metrics.attemptsFailed.inc({ code }),
      claimCapped: (_agentId, field) => ctx.metrics.claimsCapped.inc({ field }),
    },
  });
  ctx.jobs.add(job, caller.id);
  ctx.billing.track(jobId, job.billed);
  if (early) sink.begin();
  res.on('close', () => {
    if (!finished) job.cancel('the client disconnected');
  });
  job.start();
  const outcome = await job.finished;
  finished = true;
  sink.end();
  ctx.metrics.jobs.inc({ code: outcome.status === 'failed' ? outcome.code : '', outcome: outcome.status });
  logOutcome(ctx, jobId, outcome, ctx.clock.now() - admitted.admittedAt);
  ctx.jobs.finish(job, caller.id, outcome);
}

/** One line per job outcome: ids, counts and timings only. */
function logOutcome(ctx: GatewayContext, jobId: string, outcome: JobOutcome, ms: number): void {
  if (outcome.status === 'done') {
    ctx.log.info('job done', {
      jobId,
      agentId: outcome.agentId,
      attempt: outcome.attempt,
      model: outcome.receipt.model,
      promptTokens: outcome.receipt.promptTokens,
      completionTokens: outcome.receipt.completionTokens,
      ms,
    });
  } else if (outcome.status === 'failed') {
    ctx.log.info('job failed', { jobId, agentId: outcome.agentId, code: outcome.code, delivered: outcome.delivered, ms });
  } else {
    ctx.log.info('job cancelled', { jobId, agentId: outcome.agentId, reason: outcome.reason, ms });
  }
}

/**
 * The client's side of a job on the raw response: NDJSON lines after a 200, or — when the first
 * event is an error and the stream has not begun — a plain HTTP error with its status and
 * Retry-After. The stream begins at the first event, or at admission when the client asked
 * ({@link NdjsonSink.begin}). Once the 200 is out, an
 * empty line goes out whenever nothing else was written for `keepaliveMs` (and one before the first
 * event, which tells the SDK this gateway keeps its streams alive): the SDK times a silent stream out only when
 * it knows to expect them, so a dead connection is told from a slow agent within a second.
 */
class NdjsonSink implements JobSink {
  #headSent = false;
  #keepalive: TimerHandle | null = null;

  constructor(
    readonly res: ServerResponse,
    readonly maxBuffered: number,
    readonly keepaliveMs: number,
    readonly clock: Clock,
    readonly onTooSlow: () => void,
  ) {}

  #write(text: string): void {
    const res = this.res;
    res.write(text);
    if (res.writableLength > this.maxBuffered) {
      this.#stopKeepalive();
      this.onTooSlow();
      res.destroy();
      return;
    }
    if (this.keepaliveMs > 0) {
      this.#stopKeepalive();
      this.#keepalive = this.clock.setTimeout(() => {
        this.#keepalive = null;
        if (!res.destroyed && !res.writableEnded) this.#write('\n');
      }, this.keepaliveMs);
    }
  }

  #stopKeepalive(): void {
    if (this.#keepalive) this.clock.clearTimeout(this.#keepalive);
    this.#keepalive = null;
  }

  /** Begins the stream now: the 200 and a first keepalive, with keepalives from here on (none when they are off). */
  begin(): void {
    const res = this.res;
    if (this.#headSent || res.destroyed || res.writableEnded) return;
    this.#writeHead();
    if (this.keepaliveMs > 0) this.#write('\n');
    else res.flushHeaders();
  }

  #writeHead(): void {
    this.#headSent = true;
    this.res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
  }

  send(event: JobEvent): void {
    const res = this.res;
    if (res.destroyed || res.writableEnded) return;
    if (!this.#headSent && event.type === 'error') {
      this.#headSent = true;
      const opts = event.retryAfterMs === undefined ? undefined : { retryAfterMs: event.retryAfterMs };
      writeError(res, new NightjarError(event.code, event.message, opts));
      return;
    }
    let first = '';
    if (!this.#headSent) {
      this.#writeHead();
      // The first keepalive goes with the first event: from here on the client expects them.
      if (this.keepaliveMs > 0) first = '\n';
    }
    this.#write(first + JSON.stringify(event) + '\n');
  }

  /** Ends the response (an empty 200 if nothing was sent). */
  end(): void {
    this.#stopKeepalive();
    const res = this.res;
    if (res.destroyed || res.writableEnded) return;
    if (!this.#headSent) res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
    res.end();
  }
}

/** Nightjar's error shape on a raw response (the reply was hijacked to stream). */
function writeError(res: ServerResponse, error: NightjarError): void {
  const headers: Record<string, string | number> = { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' };
  if (error.retryAfterMs !== undefined) headers['retry-after'] = Math.max(1, Math.ceil(error.retryAfterMs / 1000));
  res.writeHead(error.status, headers);
  res.end(JSON.stringify({ error: error.toJSON() }));
}
