/**
 * An agent driven frame by frame, for tests that need an agent to misbehave: forge or alter a
 * receipt, answer for a job it never got, skip a challenge, send an oversized frame. It speaks
 * the real protocol with real keys (shared crypto), so everything it does right is right.
 */
import WebSocket from 'ws';
import {
  PROTOCOL_VERSION,
  ReplySealer,
  createBundle,
  decodeMessage,
  deriveReplyKeys,
  gatewayFrameSchema,
  generateBoxKey,
  generateIdentity,
  openRequest,
  randomBytes,
  signChallenge,
  signEnclaveAnswer,
  signReceipt,
  toBase64Url,
  type AgentFrame,
  type EnclaveSigner,
  type Posture,
  type BoxKeyPair,
  type GatewayFrame,
  type IdentityKeyPair,
  type Receipt,
  type SignedReceipt,
} from '../../../src/shared/index.js';
import type { ServedModel } from '../../../src/main/agent/index.js';

type FrameOf<T extends GatewayFrame['type']> = Extract<GatewayFrame, { type: T }>;

export interface RawAgentOptions {
  url: string;
  model: ServedModel;
  /** More files its bundle lists (it serves and signs for `model`). Defaults to none. */
  extraModels?: ServedModel[];
  identity?: IdentityKeyPair;
  slots?: number;
  enrollToken?: string;
  /** Answer periodic challenges. Defaults to true. */
  answerChallenges?: boolean;
  /** Send a serving status after the welcome. Defaults to true. */
  serving?: boolean;
  /** A (software) enclave key that co-signs the bundle and answers challenges. Defaults to none. */
  enclave?: EnclaveSigner;
  /** The bundle's posture. Defaults to an unattested one (every field null). */
  posture?: Posture;
  /** Who signs the enclave answers at first (see RawAgent.enclaveAnswers). Defaults to 'enclave'. */
  enclaveAnswers?: 'enclave' | EnclaveSigner | 'none';
  /** The bundle's platform.chip. Defaults to 'test' (no chip the ceiling table knows). */
  chip?: string;
  /** The decode speed its heartbeats claim, tokens/s. Defaults to 50. */
  claimedTokensPerSecond?: number;
}

/** Hooks into {@link RawAgent.serve}'s pacing, for a test on a fake clock. */
export interface ServePacing {
  /** Runs before the first chunk is sent (advance the gateway's clock: time to first chunk). */
  beforeFirst?: () => Promise<void> | void;
  /** Runs after the first chunk is sent, before the rest (advance the gateway's clock: decode time). */
  afterFirst?: () => Promise<void> | void;
}

/** What a served job produced, so a test can check or forge what follows. */
export interface ServedJob {
  receipt: Receipt;
  signed: SignedReceipt;
}

export class RawAgent {
  readonly frames: GatewayFrame[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  answerChallenges: boolean;
  /** Who signs the enclave answers: the bundle's enclave key, another key, or nobody (no enclaveSignature). */
  enclaveAnswers: 'enclave' | EnclaveSigner | 'none';
  #waiters: { type: string; resolve: (f: GatewayFrame) => void }[] = [];

  private constructor(
    readonly socket: WebSocket,
    readonly identity: IdentityKeyPair,
    readonly boxKey: BoxKeyPair,
    readonly options: RawAgentOptions,
  ) {
    this.answerChallenges = options.answerChallenges ?? true;
    this.enclaveAnswers = options.enclaveAnswers ?? 'enclave';
    this.closed = new Promise((resolve) => socket.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  }

  get agentId(): string {
    return this.identity.agentId;
  }

  /** Connects and completes the handshake; rejects with the reject frame if refused. */
  static async connect(options: RawAgentOptions): Promise<RawAgent> {
    const identity = options.identity ?? (await generateIdentity());
    const boxKey = await generateBoxKey();
    const bundle = await createBundle({
      identity,
      boxKey,
      models: [options.model, ...(options.extraModels ?? [])],
      slots: options.slots ?? 2,
      platform: { os: 'test', osVersion: '1', arch: 'x64', chip: options.chip ?? 'test', memoryBytes: 1 },
      posture: options.posture ?? {
        sip: null,
        hardenedRuntime: null,
        debuggerDenied: null,
        secureEnclave: false,
        appVersion: 'raw',
        appHash: null,
      },
      now: Date.now(),
      ...(options.enclave ? { enclave: options.enclave } : {}),
    });
    const socket = new WebSocket(options.url, { perMessageDeflate: false });
    const agent = new RawAgent(socket, identity, boxKey, options);
    let authenticated = false;
    const welcome = new Promise<RawAgent>((resolve, reject) => {
      socket.on('unexpected-response', (_req, res) =>
        reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { status: res.statusCode })),
      );
      socket.on('error', reject);
      socket.on('message', (data) => {
        const frame = decodeMessage(gatewayFrameSchema, data as Buffer, 8 * 1024 * 1024, 'gateway frame');
        agent.frames.push(frame);
        if (frame.type === 'challenge' && (!authenticated || agent.answerChallenges)) {
          const periodic = authenticated;
          void (async () => {
            const signature = await signChallenge({ ...frame, agentId: identity.agentId }, identity);
            const signer =
              agent.enclaveAnswers === 'enclave' ? options.enclave : agent.enclaveAnswers === 'none' ? undefined : agent.enclaveAnswers;
            const fields = {
              gatewayId: frame.gatewayId,
              nonce: frame.nonce,
              time: frame.time,
              agentId: identity.agentId,
              boxKeyId: boxKey.keyId,
            };
            const enclave = signer ? { enclaveSignature: await signEnclaveAnswer(fields, signer) } : {};
            agent.send(
              periodic
                ? { v: PROTOCOL_VERSION, type: 'attest', nonce: frame.nonce, signature, ...enclave }
                : { v: PROTOCOL_VERSION, type: 'auth', signature, ...enclave },
            );
          })();
        } else if (frame.type === 'welcome') {
          authenticated = true;
          if (options.serving ?? true) agent.status();
          resolve(agent);
        } else if (frame.type === 'reject') {
          reject(Object.assign(new Error(`${frame.code}: ${frame.message}`), { code: frame.code, closed: agent.closed }));
        }
        for (const w of [...agent.#waiters]) {
          if (w.type === frame.type) {
            agent.#waiters.splice(agent.#waiters.indexOf(w), 1);
            w.resolve(frame);
          }
        }
      });
      socket.on('open', () =>
        agent.send({ v: PROTOCOL_VERSION, type: 'hello', bundle, ...(options.enrollToken ? { enrollToken: options.enrollToken } : {}) }),
      );
    });
    return welcome;
  }

  /** Sends a frame (or raw text). */
  send(frame: AgentFrame | string): void {
    if (this.socket.readyState === WebSocket.OPEN) this.socket.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  /** Sends a status heartbeat. */
  status(freeSlots = this.options.slots ?? 2, state: 'serving' | 'draining' = 'serving'): void {
    this.send({
      v: PROTOCOL_VERSION,
      type: 'status',
      state,
      model: this.options.model.id,
      freeSlots,
      totalSlots: this.options.slots ?? 2,
      tokensPerSecond: this.options.claimedTokensPerSecond ?? 50,
      ttftMs: 10,
      memoryPressure: 'normal',
      thermal: 'nominal',
    });
  }

  /** The next frame of `type` (one already received and not yet taken counts); `signal` stops the wait (rejecting). */
  next<T extends GatewayFrame['type']>(type: T, timeoutMs = 5000, signal?: AbortSignal): Promise<FrameOf<T>> {
    return new Promise((resolve, reject) => {
      const waiter = {
        type,
        resolve: (f: GatewayFrame) => {
          clearTimeout(t);
          resolve(f as FrameOf<T>);
        },
      };
      const t = setTimeout(() => reject(new Error(`no ${type} frame within ${timeoutMs} ms`)), timeoutMs);
      signal?.addEventListener('abort', () => {
        clearTimeout(t);
        const i = this.#waiters.indexOf(waiter);
        if (i >= 0) this.#waiters.splice(i, 1);
        reject(new Error('stopped waiting'));
      });
      this.#waiters.push(waiter);
    });
  }

  /**
   * Serves a job honestly up to the receipt: accepted, one chunk per word, the final chunk.
   * Returns the receipt it would sign; `finish` sends the done frame (a test may alter it first).
   */
  async serve(
    job: FrameOf<'job'>,
    words: string[],
    usage = { promptTokens: 12, completionTokens: words.length },
    pacing: ServePacing = {},
  ): Promise<ServedJob & { finish(signed?: SignedReceipt): void }> {
    const opened = await openRequest(job.envelope, { agentId: this.agentId, boxKeys: [this.boxKey], now: Date.now() });
    const replySalt = randomBytes(16);
    const sealer = new ReplySealer(deriveReplyKeys(opened.contentKey, replySalt, this.agentId));
    const startedAt = Date.now();
    this.send({ v: PROTOCOL_VERSION, type: 'accepted', jobId: job.jobId, attempt: job.attempt, replySalt: toBase64Url(replySalt) });
    let first = true;
    for (const w of words) {
      if (first) await pacing.beforeFirst?.();
      const { seq, data } = sealer.seal(w);
      this.send({ v: PROTOCOL_VERSION, type: 'chunk', jobId: job.jobId, attempt: job.attempt, seq, data: toBase64Url(data) });
      if (first) await pacing.afterFirst?.();
      first = false;
    }
    const { seq, data } = sealer.seal('', { finishReason: 'stop', usage });
    this.send({ v: PROTOCOL_VERSION, type: 'chunk', jobId: job.jobId, attempt: job.attempt, seq, data: toBase64Url(data) });
    const receipt: Receipt = {
      v: PROTOCOL_VERSION,
      jobId: job.jobId,
      attempt: job.attempt,
      agentId: this.agentId,
      model: this.options.model.id,
      modelSha256: this.options.model.sha256,
      promptTokens: usage.promptTokens,
      completionTokens: usage.completionTokens,
      requestDigest: toBase64Url(opened.requestDigest),
      replyDigest: toBase64Url(sealer.digest()),
      startedAt,
      endedAt: Date.now(),
      finishReason: 'stop',
    };
    const signed = await signReceipt(receipt, this.identity);
    return {
      receipt,
      signed,
      finish: (s = signed) => this.send({ v: PROTOCOL_VERSION, type: 'done', jobId: job.jobId, attempt: job.attempt, receipt: s }),
    };
  }

  /** Signs `receipt` with this agent's key. */
  sign(receipt: Receipt): Promise<SignedReceipt> {
    return signReceipt(receipt, this.identity);
  }

  close(): Promise<{ code: number; reason: string }> {
    if (this.socket.readyState === WebSocket.OPEN || this.socket.readyState === WebSocket.CONNECTING) this.socket.close(1000);
    return this.closed;
  }
}
