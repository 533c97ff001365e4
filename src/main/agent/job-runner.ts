/**
 * Serves jobs: open the envelope (or decline with a code), generate on a free sequence, seal
 * each piece of text as a reply chunk as it comes, seal the final chunk, sign the receipt.
 *
 * A job cannot outlive the link it came on: nobody would receive its chunks. When the link drops
 * ({@link JobRunner.linkLost}) every running job is stopped within a token, as a preemption stops
 * it, and still ends with a receipt for the tokens it produced; a receipt whose `done` could not
 * be sent goes to the `undelivered` hook (the agent's outbox delivers it on the next connection).
 */
import {
  LIMITS,
  NightjarError,
  PROTOCOL_VERSION,
  ReplayGuard,
  ReplySealer,
  deriveReplyKeys,
  encodeEmbedding,
  openRequest,
  randomBytes,
  signReceipt,
  toBase64Url,
  type AgentFrame,
  type BoxKeyPair,
  type Clock,
  type FinishReason,
  type ReplyFinal,
  type GatewayFrame,
  type IdentityKeyPair,
  type Logger,
  type SignedReceipt,
  type RequestPayload,
  type ToolCall,
  type Usage,
  type Disposable,
  type Emitter,
  type Event,
  silentLogger,
  systemClock,
  withDefaults,
  errorMessage,
  loggedEmitter,
} from '../../shared/index.js';
import type { Embedder, InferenceEngine, ReplyConstraints } from './engine/types.js';

/** The model this agent serves, as its bundle names it. */
export interface ServedModel {
  id: string;
  /** sha256 of the GGUF file, lower-case hex. */
  sha256: string;
  synthetic: boolean;
  contextLength: number;
}

/** Options of {@link JobRunner}. */
export interface JobRunnerOptions {
  /** The agent's identity: opens envelopes addressed to it and signs receipts. Required. */
  identity: IdentityKeyPair;
  /** Box keys held now, current first. Required. */
  boxKeys: () => readonly BoxKeyPair[];
  /** The model served now, as the bundle names it. Required. */
  model: () => ServedModel;
  /** The loaded engine, or null while none is loaded (jobs are then declined). Required. */
  engine: () => InferenceEngine | null;
  /** Sends a frame to the gateway; false if the link is down. Required. */
  send: (frame: AgentFrame) => boolean;
  /** Whether new jobs may start (false while waiting, draining or paused). Defaults to always. */
  accepting?: () => boolean;
  /**
   * Records every receipt this agent signs before the gateway hears of it. A hook, not an event:
   * the runner awaits it, because the owner's receipt log fsyncs the receipt first — a receipt the
   * gateway pays for is never missing from the agent's own record. A failure is logged and the
   * receipt still goes out. Defaults to recording nothing.
   */
  recordReceipt?: (receipt: SignedReceipt) => void | Promise<void>;
  /**
   * Takes every receipt whose `done` frame could not be sent (the link was down, or the job was
   * stopped because it dropped), after it was recorded. Defaults to dropping it (the `job done`
   * log line says `delivered: false`).
   */
  undelivered?: (receipt: SignedReceipt) => void | Promise<void>;
  /**
   * Takes every receipt that went out in a `done` frame: it is delivered only once the gateway
   * acknowledges it (the agent's outbox keeps it until then). Defaults to nothing.
   */
  sent?: (receipt: SignedReceipt) => void;
  /** Remembers served jobIds. Defaults to a new ReplayGuard. */
  replay?: ReplayGuard;
  /** Defaults to the system clock. */
  clock?: Clock;
  /** Defaults to a silent logger. */
  logger?: Logger;
}

/** The defaults of {@link JobRunnerOptions}. */
const JOB_RUNNER_DEFAULTS: Required<Pick<JobRunnerOptions, 'accepting' | 'recordReceipt' | 'undelivered' | 'sent' | 'clock' | 'logger'>> = {
  accepting: () => true,
  recordReceipt: () => undefined,
  undelivered: () => undefined,
  sent: () => undefined,
  clock: systemClock,
  logger: silentLogger,
};

/** The figures of the jobs this runner served: what heartbeats and the status report. */
export interface JobStats {
  /** Jobs generating now (and jobs still opening, which count against the slots too). */
  readonly activeJobs: number;
  /** Jobs that ended with a receipt. */
  readonly jobsServed: number;
  /** Smoothed completion tokens per second of recent jobs. */
  readonly tokensPerSecond: number;
  /** Smoothed time to first token of recent jobs, ms. */
  readonly ttftMs: number;
}

interface Running {
  readonly abort: AbortController;
  readonly done: Promise<void>;
  /** Stopped because the link it came on dropped: its receipt cannot be delivered on it. */
  cut: boolean;
}

const EMA = 0.2;

/** Runs jobs on the engine and keeps the figures heartbeats report. */
export class JobRunner implements Disposable {
  readonly #o: typeof JOB_RUNNER_DEFAULTS & JobRunnerOptions;
  readonly #replay: ReplayGuard;
  readonly #running = new Map<string, Running>();
  readonly #stats = { activeJobs: 0, jobsServed: 0, tokensPerSecond: 0, ttftMs: 0 };
  readonly #jobs: Emitter<void>;
  readonly #receipts: Emitter<SignedReceipt>;

  constructor(options: JobRunnerOptions) {
    this.#o = withDefaults(JOB_RUNNER_DEFAULTS, options);
    this.#replay = options.replay ?? new ReplayGuard();
    this.#jobs = loggedEmitter(this.#o.logger, 'job change');
    this.#receipts = loggedEmitter(this.#o.logger, 'receipt');
    this.onJobs = this.#jobs.event;
    this.onReceipt = this.#receipts.event;
  }

  /**
   * Fires when a job starts generating (not before: telling anyone sooner would only delay its
   * first token) and when a job ends, declined or not.
   */
  readonly onJobs: Event<void>;

  /** Fires with every receipt once it is recorded, just before it is sent. */
  readonly onReceipt: Event<SignedReceipt>;

  /** The live figures (the one source heartbeats and the status read). */
  get stats(): JobStats {
    return this.#stats;
  }

  /** Handles a job frame from the gateway. */
  handle(frame: Extract<GatewayFrame, { type: 'job' }>): void {
    const key = `${frame.jobId}:${frame.attempt}`;
    if (this.#running.has(key)) return;
    const abort = new AbortController();
    const done = this.#serve(frame, abort.signal, () => this.#running.get(key)?.cut === true)
      .catch((err: unknown) => {
        this.#o.logger.error('job crashed', { jobId: frame.jobId, err: errorMessage(err) });
      })
      .finally(() => {
        this.#running.delete(key);
        this.#stats.activeJobs = this.#running.size;
        this.#jobs.fire();
      });
    this.#running.set(key, { abort, done, cut: false });
    this.#stats.activeJobs = this.#running.size;
  }

  /** Stops a job within a token; it still ends with a final chunk and a receipt. */
  cancel(jobId: string, attempt: number): void {
    this.#running.get(`${jobId}:${attempt}`)?.abort.abort();
  }

  /**
   * The link the jobs came on dropped: stops every running job within a token (each still ends
   * with a receipt, kept as undelivered). Resolves once they have all stopped; returns how many.
   */
  async linkLost(): Promise<number> {
    const cut = [...this.#running.values()];
    for (const r of cut) {
      r.cut = true;
      r.abort.abort();
    }
    if (cut.length > 0) this.#o.logger.info('gateway link dropped; stopping the jobs it carried', { jobs: cut.length });
    await Promise.all(cut.map((r) => r.done));
    return cut.length;
  }

  /** Aborts every running job and waits for them to settle. */
  async abortAll(): Promise<void> {
    for (const r of this.#running.values()) r.abort.abort();
    await this.drain();
  }

  /** Waits for every running job to finish. */
  async drain(): Promise<void> {
    await Promise.all([...this.#running.values()].map((r) => r.done));
  }

  /** Drops the listeners of its events (running jobs are the owner's to drain or abort first). */
  dispose(): void {
    this.#jobs.dispose();
    this.#receipts.dispose();
  }

  #decline(frame: { jobId: string; attempt: number }, error: NightjarError): void {
    this.#o.logger.info('job declined', { jobId: frame.jobId, code: error.code });
    this.#o.send({
      v: PROTOCOL_VERSION,
      type: 'declined',
      jobId: frame.jobId,
      attempt: frame.attempt,
      code: error.code,
      message: error.message,
    });
  }

  async #serve(frame: Extract<GatewayFrame, { type: 'job' }>, signal: AbortSignal, cut: () => boolean): Promise<void> {
    const { clock, identity, logger } = this.#o;
    const { jobId, attempt } = frame;
    const engine = this.#o.engine();
    const model = this.#o.model();
    const accepting = this.#o.accepting;
    if (!accepting() || !engine) {
      this.#decline(frame, new NightjarError('NJ_DECLINED', 'this agent is not taking jobs right now'));
      return;
    }
    // Runs before this job is entered in #running: jobs still opening count against the slots too.
    if (engine.freeSlots <= 0 || this.#running.size >= engine.totalSlots) {
      this.#decline(frame, new NightjarError('NJ_ENGINE_BUSY', 'every sequence on this agent is busy', { retryAfterMs: 500 }));
      return;
    }
    let opened;
    try {
      opened = await openRequest(frame.envelope, { agentId: identity.agentId, boxKeys: this.#o.boxKeys(), now: clock.now() });
      if (opened.payload.model !== model.id) {
        throw new NightjarError('NJ_MODEL_NOT_SERVED', `this agent serves ${model.id}, not ${opened.payload.model}`);
      }
      if (opened.payload.task === 'embed') await checkEmbedJob(engine, opened.payload);
      const promptTokens =
        opened.payload.task === 'embed' ? 0 : await engine.countPromptTokens(opened.payload.messages, constraintsOfPayload(opened.payload));
      if (opened.payload.task === undefined && promptTokens + opened.payload.sampling.maxTokens > engine.model.contextLength) {
        throw new NightjarError(
          'NJ_CONTEXT_OVERFLOW',
          `the prompt takes ${promptTokens} tokens and ${opened.payload.sampling.maxTokens} more were asked for; ` +
            `the context holds ${engine.model.contextLength}`,
        );
      }
      // The owner may have come back while the envelope was opening: no job starts after that.
      if (!accepting() || signal.aborted) throw new NightjarError('NJ_DECLINED', 'this agent is not taking jobs right now');
      this.#replay.check(jobId, opened.payload.created, clock.now());
    } catch (err) {
      this.#decline(frame, err instanceof NightjarError ? err : new NightjarError('NJ_DECRYPT_FAILED', 'the request could not be opened'));
      return;
    }

    const replySalt = randomBytes(16);
    const sealer = new ReplySealer(deriveReplyKeys(opened.contentKey, replySalt, identity.agentId));
    opened.contentKey.fill(0);
    const startedAt = clock.now();
    this.#o.send({ v: PROTOCOL_VERSION, type: 'accepted', jobId, attempt, replySalt: toBase64Url(replySalt) });
    logger.debug('job accepted', { jobId, attempt, messages: opened.payload.messages.length });

    const sendChunk = (delta: string, final?: ReplyFinal, embeddings?: string[]): void => {
      const { seq, data } = sealer.seal(delta, final, embeddings);
      if (cut()) return;
      this.#o.send({ v: PROTOCOL_VERSION, type: 'chunk', jobId, attempt, seq, data: toBase64Url(data) });
    };

    let finishReason: FinishReason;
    let usage: Usage;
    let stopSequence: string | undefined;
    let toolCalls: ToolCall[] | undefined;
    let finalEmbeddings: string[] | undefined;
    try {
      if (opened.payload.task === 'embed') {
        // checkEmbedJob refused the job before it was accepted if the engine cannot embed.
        if (!isEmbedder(engine)) throw new NightjarError('NJ_BAD_REQUEST', 'this agent does not serve embeddings; use a model that does');
        const embedding = engine.embed({ input: opened.payload.input ?? [], signal });
        this.#jobs.fire();
        const result = await embedding;
        // The vectors travel in as few chunks as hold them; the final chunk carries the last ones.
        const encoded = result.vectors.map((v) => encodeEmbedding(v));
        const batches = embeddingBatches(encoded);
        for (const batch of batches.slice(0, -1)) sendChunk('', undefined, batch);
        finalEmbeddings = batches.at(-1);
        finishReason = 'stop';
        usage = { promptTokens: result.promptTokens, completionTokens: 0 };
      } else {
        const generation = engine.generate({
          messages: opened.payload.messages,
          sampling: opened.payload.sampling,
          ...constraintsOfPayload(opened.payload),
          ...(opened.payload.cacheKey === undefined ? {} : { cacheKey: opened.payload.cacheKey }),
          signal,
          onDelta: (text) => {
            if (text.length > 0) sendChunk(text);
          },
        });
        this.#jobs.fire();
        const result = await generation;
        finishReason = result.finishReason;
        usage = result.usage;
        stopSequence = result.stopSequence;
        toolCalls = result.toolCalls;
        if (result.usage.completionTokens > 0) {
          const s = this.#stats;
          s.tokensPerSecond = s.tokensPerSecond ? s.tokensPerSecond * (1 - EMA) + result.tokensPerSecond * EMA : result.tokensPerSecond;
          s.ttftMs = s.ttftMs ? s.ttftMs * (1 - EMA) + result.timeToFirstTokenMs * EMA : result.timeToFirstTokenMs;
        }
      }
    } catch (err) {
      const e = err instanceof NightjarError ? err : new NightjarError('NJ_ENGINE_FAILED', 'generation failed');
      logger.warn('job failed', { jobId, code: e.code });
      this.#o.send({ v: PROTOCOL_VERSION, type: 'failed', jobId, attempt, code: e.code, message: e.message });
      return;
    }

    sendChunk(
      '',
      {
        finishReason,
        usage,
        ...(stopSequence === undefined ? {} : { stopSequence }),
        ...(toolCalls === undefined ? {} : { toolCalls }),
      },
      finalEmbeddings,
    );
    const receipt = await signReceipt(
      {
        v: PROTOCOL_VERSION,
        jobId,
        attempt,
        agentId: identity.agentId,
        model: model.id,
        modelSha256: model.sha256,
        promptTokens: usage.promptTokens,
        completionTokens: usage.completionTokens,
        requestDigest: toBase64Url(opened.requestDigest),
        replyDigest: toBase64Url(sealer.digest()),
        startedAt,
        endedAt: Math.max(startedAt, clock.now()),
        finishReason,
      },
      identity,
    );
    try {
      await this.#o.recordReceipt(receipt);
    } catch (err) {
      logger.error('could not record a receipt', { jobId, err: errorMessage(err) });
    }
    this.#receipts.fire(receipt);
    this.#stats.jobsServed++;
    // A job cut by a dropped link must not send its done on a new connection that never had the job.
    const sent = !cut() && this.#o.send({ v: PROTOCOL_VERSION, type: 'done', jobId, attempt, receipt });
    logger.info('job done', {
      jobId,
      attempt,
      finishReason,
      promptTokens: usage.promptTokens,
      completionTokens: usage.completionTokens,
      delivered: sent,
    });
    if (sent) this.#o.sent(receipt);
    else {
      try {
        await this.#o.undelivered(receipt);
      } catch (err) {
        logger.error('could not keep an undelivered receipt', { jobId, err: errorMessage(err) });
      }
    }
  }
}

/** The tools and format a request sealed, as the engine takes them (only those it set). */
function constraintsOfPayload(p: RequestPayload): ReplyConstraints {
  return {
    ...(p.tools === undefined ? {} : { tools: p.tools }),
    ...(p.toolChoice === undefined ? {} : { toolChoice: p.toolChoice }),
    ...(p.responseFormat === undefined ? {} : { responseFormat: p.responseFormat }),
  };
}

/** Room for vectors in one reply chunk, as base64url characters: the chunk limit less room for the rest of the chunk and its padding. */
const EMBEDDINGS_PER_CHUNK_CHARS = LIMITS.maxChunkBytes - 2048;

/** Splits encoded vectors, in order, into the fewest chunks' worth that each fit one chunk. */
function embeddingBatches(encoded: readonly string[]): string[][] {
  const batches: string[][] = [];
  let current: string[] = [];
  let size = 0;
  for (const e of encoded) {
    if (current.length > 0 && size + e.length + 3 > EMBEDDINGS_PER_CHUNK_CHARS) {
      batches.push(current);
      current = [];
      size = 0;
    }
    current.push(e);
    size += e.length + 3;
  }
  batches.push(current);
  return batches;
}

/**
 * Refuses an embedding job this engine cannot serve, before it is accepted: an engine that cannot
 * embed, a width other than the client asked for, a text that does not fit the context.
 */
async function checkEmbedJob(engine: InferenceEngine, payload: RequestPayload): Promise<void> {
  if (!isEmbedder(engine)) throw new NightjarError('NJ_BAD_REQUEST', 'this agent does not serve embeddings; use a model that does');
  if (payload.dimensions !== undefined && payload.dimensions !== engine.embeddingLength) {
    throw new NightjarError(
      'NJ_BAD_REQUEST',
      `this model's embeddings have ${engine.embeddingLength} dimensions, not ${payload.dimensions}; ` +
        `leave dimensions out or ask for ${engine.embeddingLength}`,
    );
  }
  if (engine.embeddingLength > LIMITS.maxEmbeddingDimensions) {
    throw new NightjarError(
      'NJ_BAD_REQUEST',
      `this model's embeddings are wider than the protocol carries (${LIMITS.maxEmbeddingDimensions})`,
    );
  }
  const counts = await engine.countEmbedTokens(payload.input ?? []);
  const longest = Math.max(...counts);
  if (longest >= engine.model.contextLength) {
    throw new NightjarError(
      'NJ_CONTEXT_OVERFLOW',
      `an input takes ${longest} tokens; the context holds ${engine.model.contextLength - 1}. Split it into shorter texts`,
    );
  }
}

function isEmbedder(engine: InferenceEngine): engine is InferenceEngine & Embedder {
  const e = engine as Partial<Embedder>;
  return typeof e.embed === 'function' && typeof e.countEmbedTokens === 'function' && typeof e.embeddingLength === 'number';
}
