/**
 * The agent's gateway side: an identity, a box key published in a signed bundle, a link to the
 * gateway and the jobs served over it on whatever engine is attached.
 *
 * Used two ways. Directly, as a server that is always on (`nightjar up`, tests): create it with a
 * loaded engine, start(), stop(). Or driven by the {@link AgentRuntime}, which decides when to
 * connect, attaches and detaches engines, sets the state heartbeats report, drains and
 * disconnects.
 *
 * Box keys rotate every `boxKeyRotationMs` (24 h by default) while started: a fresh X25519 key, a
 * new signed bundle sent as a `bundle` frame. The previous key keeps opening envelopes for
 * `previousBoxKeyGraceMs`, so a request sealed just before a rotation is still served; then it is
 * zeroed and forgotten.
 */
import {
  LIMITS,
  MAX_BUNDLE_VALIDITY_MS,
  PROTOCOL_VERSION,
  createBundle,
  generateBoxKey,
  silentLogger,
  systemClock,
  type AgentState,
  type BoxKeyPair,
  type Clock,
  type IdentityKeyPair,
  type Logger,
  type MemoryPressure,
  type Platform,
  type Posture,
  type SignedBundle,
  type SignedReceipt,
  type ThermalState,
  type TimerHandle,
  type Trust,
} from '../../shared/index.js';
import type { InferenceEngine } from './engine/types.js';
import { GatewayLink, type BackoffOptions, type LinkState } from './gateway-link.js';
import { JobRunner, type ServedModel } from './job-runner.js';
import { detectPlatform, unattestedPosture } from './platform.js';

/** The app version agents report. */
export const AGENT_VERSION = '0.1.0';

/** Why the link is closed, as the goodbye frame says it. */
export type GoodbyeReason = 'paused' | 'schedule' | 'owner-active' | 'quit' | 'error';

/** Options of {@link Agent}. */
export interface AgentOptions {
  /** The gateway's agent WebSocket URL (ws://host:port/v1/agent). Required. */
  gatewayUrl: string;
  /** The agent's identity key pair. Required. */
  identity: IdentityKeyPair;
  /** The model the bundle names. Required. */
  model: ServedModel;
  /** A loaded engine to serve from the start. Defaults to none (attach one with setEngine). */
  engine?: InferenceEngine;
  /** Dispose the engine when the agent stops. Defaults to false. */
  ownsEngine?: boolean;
  /** Defaults to the system clock. */
  clock?: Clock;
  /** Defaults to a silent logger. */
  logger?: Logger;
  /** Defaults to what the OS reports. */
  platform?: Platform;
  /** Defaults to an unattested posture. */
  posture?: Posture;
  /** Gateway reconnect timing. Defaults as BackoffOptions says. */
  backoff?: BackoffOptions;
  /** Random source in [0, 1) for reconnect jitter. Defaults to Math.random. */
  random?: () => number;
  /** One-time enrollment token binding this agent to an operator. Defaults to none. */
  enrollToken?: string;
  /** Receives every receipt signed, before it is sent (awaited). Defaults to none. */
  onReceipt?: (receipt: SignedReceipt) => void | Promise<void>;
  /** Called when a job starts generating or ends. Defaults to none. */
  onJobsChange?: () => void;
  /** Called when the link's state changes. Defaults to none. */
  onLinkState?: (state: LinkState) => void;
  /** Called with the operator and trust of every welcome from the gateway. Defaults to none. */
  onWelcome?: (welcome: { operator: string | null; trust: Trust }) => void;
  /** Called when the gateway refuses this agent (a bad enrollment token). Defaults to none. */
  onReject?: (rejected: { code: string; message: string }) => void;
  /** The thermal state heartbeats report. Defaults to 'nominal'. */
  thermal?: () => ThermalState;
  /** The memory pressure heartbeats report. Defaults to 'normal'. */
  memoryPressure?: () => MemoryPressure;
  /** Time between box key rotations. Defaults to 24 hours. */
  boxKeyRotationMs?: number;
  /**
   * How long a rotated-out box key still opens envelopes. Defaults to the oldest request an agent
   * accepts plus the clock skew allowed (6 minutes).
   */
  previousBoxKeyGraceMs?: number;
}

/** What {@link Agent.drain} did. */
export interface DrainOutcome {
  /** Jobs running when the drain began. */
  jobsAtStart: number;
  /** Jobs aborted when the grace period ended. */
  aborted: number;
  /** 'settled': every job ended in time; 'grace': the rest were aborted; 'resumed': the drain was called off. */
  outcome: 'settled' | 'grace' | 'resumed';
}

/** A provider agent's gateway side. */
export class Agent implements AsyncDisposable {
  readonly #o: AgentOptions;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #runner: JobRunner;
  readonly #link: GatewayLink;
  readonly #platform: Platform;
  readonly #posture: Posture;
  #engine: InferenceEngine | null;
  #model: ServedModel;
  #boxKey: BoxKeyPair;
  #previous: { key: BoxKeyPair; timer: TimerHandle } | null = null;
  #rotationTimer: TimerHandle | null = null;
  #bundle: SignedBundle;
  #state: AgentState = 'stopped';
  #stopped: Promise<void> | null = null;
  /** Between connect() and disconnect(): box keys rotate. */
  #connected = false;

  private constructor(options: AgentOptions, boxKey: BoxKeyPair, bundle: SignedBundle, platform: Platform, posture: Posture) {
    this.#o = options;
    this.#clock = options.clock ?? systemClock;
    this.#log = options.logger ?? silentLogger;
    this.#engine = options.engine ?? null;
    this.#model = options.model;
    this.#boxKey = boxKey;
    this.#bundle = bundle;
    this.#platform = platform;
    this.#posture = posture;
    this.#runner = new JobRunner({
      identity: options.identity,
      boxKeys: () => (this.#previous ? [this.#boxKey, this.#previous.key] : [this.#boxKey]),
      model: () => this.#model,
      engine: () => this.#engine,
      clock: this.#clock,
      logger: this.#log,
      send: (frame) => this.#link.send(frame),
      accepting: () => this.#state === 'serving',
      ...(options.onReceipt ? { onReceipt: options.onReceipt } : {}),
      // The gateway routes on the free slots the last heartbeat reported: tell it at once when
      // a job starts generating or ends, not at the next beat (up to 15 s later). It counts the
      // jobs it dispatched since that beat itself, so the start can wait for the engine.
      onChange: () => {
        this.#link.beat();
        options.onJobsChange?.();
      },
    });
    this.#link = new GatewayLink({
      url: options.gatewayUrl,
      identity: options.identity,
      bundle: () => this.#bundle,
      ...(options.enrollToken ? { enrollToken: options.enrollToken } : {}),
      status: () => ({
        state: this.#state,
        model: this.#model.id,
        freeSlots: this.freeSlots,
        totalSlots: this.#engine?.totalSlots ?? 0,
        tokensPerSecond: this.#runner.tokensPerSecond,
        ttftMs: this.#runner.ttftMs,
        memoryPressure: options.memoryPressure?.() ?? 'normal',
        thermal: options.thermal?.() ?? 'nominal',
      }),
      clock: this.#clock,
      logger: this.#log,
      ...(options.backoff ? { backoff: options.backoff } : {}),
      ...(options.random ? { random: options.random } : {}),
      onJob: (frame) => this.#runner.handle(frame),
      onCancel: (frame) => this.#runner.cancel(frame.jobId, frame.attempt),
      ...(options.onLinkState ? { onStateChange: options.onLinkState } : {}),
      ...(options.onWelcome ? { onConnected: (frame) => options.onWelcome?.({ operator: frame.operator, trust: frame.trust }) } : {}),
      ...(options.onReject ? { onReject: (frame) => options.onReject?.({ code: frame.code, message: frame.message }) } : {}),
    });
  }

  /** Builds an agent: draws a box key and signs its first bundle. */
  static async create(options: AgentOptions): Promise<Agent> {
    const clock = options.clock ?? systemClock;
    const platform = options.platform ?? detectPlatform();
    const posture = options.posture ?? unattestedPosture(AGENT_VERSION);
    const boxKey = await generateBoxKey();
    const bundle = await signedBundle(options, boxKey, options.model, options.engine?.totalSlots ?? 1, platform, posture, clock.now());
    return new Agent(options, boxKey, bundle, platform, posture);
  }

  /** The agent's id (from its identity key). */
  get agentId(): string {
    return this.#o.identity.agentId;
  }

  /** The state heartbeats report. */
  get state(): AgentState {
    return this.#state;
  }

  /** The state of the gateway link. */
  get linkState(): LinkState {
    return this.#link.state;
  }

  /** The gateway link (its state and pending retry). */
  get link(): GatewayLink {
    return this.#link;
  }

  /** The bundle currently published. */
  get bundle(): SignedBundle {
    return this.#bundle;
  }

  /** The model the bundle names. */
  get model(): ServedModel {
    return this.#model;
  }

  /** The attached engine, if any. */
  get engine(): InferenceEngine | null {
    return this.#engine;
  }

  /** Jobs generating now. */
  get activeJobs(): number {
    return this.#runner.active;
  }

  /** Jobs that ended with a receipt. */
  get jobsServed(): number {
    return this.#runner.served;
  }

  /** Slots that could take a job now (0 unless serving). */
  get freeSlots(): number {
    if (this.#state !== 'serving' || !this.#engine) return 0;
    return Math.max(0, this.#engine.totalSlots - this.#runner.active);
  }

  /** Smoothed completion tokens per second. */
  get tokensPerSecond(): number {
    return this.#runner.tokensPerSecond;
  }

  /** Smoothed time to first token, ms. */
  get ttftMs(): number {
    return this.#runner.ttftMs;
  }

  /** Connects to the gateway and starts serving (the always-on use). */
  start(): void {
    this.#state = this.#engine ? 'serving' : 'waiting';
    this.connect();
  }

  /** Opens the link (reconnecting until disconnect) and starts rotating box keys. */
  connect(): void {
    this.#stopped = null;
    this.#connected = true;
    this.#scheduleRotation();
    this.#link.start();
  }

  /** Sets the state heartbeats report, and sends one now. Only 'serving' takes jobs. */
  setState(state: AgentState): void {
    if (this.#state === state) return;
    this.#state = state;
    this.#link.beat();
  }

  /**
   * Attaches a loaded engine (or detaches with null; the caller disposes it). The bundle is
   * re-signed if what it says changes (the model, its context length or the slots).
   */
  async setEngine(engine: InferenceEngine | null, model: ServedModel = this.#model): Promise<void> {
    this.#engine = engine;
    const served = engine ? { ...model, contextLength: engine.model.contextLength } : model;
    const slots = engine?.totalSlots ?? this.#bundle.bundle.capacity.slots;
    const b = this.#bundle.bundle;
    const same = b.capacity.slots === slots && b.models.length === 1 && JSON.stringify(b.models[0]) === JSON.stringify(bundleModel(served));
    this.#model = served;
    if (!same) await this.#resign();
    this.#link.beat();
  }

  /** Draws a new box key, signs and sends a new bundle, and keeps the old key for the grace period. */
  async rotateBoxKey(): Promise<void> {
    const next = await generateBoxKey();
    if (this.#previous) this.#forgetPrevious();
    const old = this.#boxKey;
    const grace = this.#o.previousBoxKeyGraceMs ?? LIMITS.maxRequestAgeMs + LIMITS.maxClockSkewMs;
    this.#previous = { key: old, timer: this.#clock.setTimeout(() => this.#forgetPrevious(), grace) };
    this.#boxKey = next;
    await this.#resign();
    this.#log.info('box key rotated', { boxKeyId: next.keyId });
  }

  #forgetPrevious(): void {
    if (!this.#previous) return;
    this.#clock.clearTimeout(this.#previous.timer);
    (this.#previous.key.secretKey as Uint8Array).fill(0);
    this.#previous = null;
  }

  /** Box key ids this agent opens envelopes for now, current first. */
  get boxKeyIds(): string[] {
    return this.#previous ? [this.#boxKey.keyId, this.#previous.key.keyId] : [this.#boxKey.keyId];
  }

  async #resign(): Promise<void> {
    this.#bundle = await signedBundle(
      this.#o,
      this.#boxKey,
      this.#model,
      this.#engine?.totalSlots ?? this.#bundle.bundle.capacity.slots,
      this.#platform,
      this.#posture,
      this.#clock.now(),
    );
    this.#link.send({ v: PROTOCOL_VERSION, type: 'bundle', bundle: this.#bundle });
  }

  #rotationMs(): number {
    return this.#o.boxKeyRotationMs ?? 24 * 3600_000;
  }

  #scheduleRotation(): void {
    if (this.#rotationTimer) return;
    this.#rotationTimer = this.#clock.setTimeout(() => {
      this.#rotationTimer = null;
      this.rotateBoxKey()
        .catch((err: unknown) => this.#log.error('box key rotation failed', { err: err instanceof Error ? err.message : String(err) }))
        .finally(() => {
          if (this.#connected) this.#scheduleRotation();
        });
    }, this.#rotationMs());
  }

  #clearTimers(): void {
    if (this.#rotationTimer) this.#clock.clearTimeout(this.#rotationTimer);
    this.#rotationTimer = null;
    this.#forgetPrevious();
  }

  /**
   * Lets running jobs finish for up to `graceMs`, then aborts the rest; each still ends with a
   * final chunk and a receipt, and the engine has stopped generating when this resolves. Set the
   * state away from 'serving' first so no new job starts. Aborting `resume` calls the drain off
   * (the jobs carry on).
   */
  async drain(graceMs: number, resume?: AbortSignal): Promise<DrainOutcome> {
    const jobsAtStart = this.#runner.active;
    if (jobsAtStart === 0) return { jobsAtStart, aborted: 0, outcome: 'settled' };
    const outcome = await new Promise<DrainOutcome['outcome']>((resolve) => {
      if (resume?.aborted) return resolve('resumed');
      if (graceMs <= 0) return resolve('grace');
      const timer = this.#clock.setTimeout(() => finish('grace'), graceMs);
      const onResume = (): void => finish('resumed');
      function finish(o: DrainOutcome['outcome']): void {
        resume?.removeEventListener('abort', onResume);
        resolve(o);
      }
      resume?.addEventListener('abort', onResume, { once: true });
      void this.#runner.drain().then(() => {
        this.#clock.clearTimeout(timer);
        finish('settled');
      });
    });
    if (outcome !== 'grace') return { jobsAtStart, aborted: 0, outcome };
    const aborted = this.#runner.active;
    await this.#runner.abortAll();
    return { jobsAtStart, aborted, outcome };
  }

  /** Says goodbye with `reason`, closes the link and stops reconnecting (until connect()). */
  async disconnect(reason: GoodbyeReason): Promise<void> {
    this.#connected = false;
    this.#clearTimers();
    await this.#link.stop(reason);
  }

  /**
   * Stops taking jobs, lets running ones finish for up to `graceMs` (then aborts them), says
   * goodbye and disconnects; disposes the engine if it owns it.
   */
  stop(graceMs = 5000): Promise<void> {
    this.#stopped ??= (async () => {
      this.setState('draining');
      await this.drain(graceMs);
      await this.disconnect('quit');
      this.#state = 'stopped';
      if (this.#o.ownsEngine) await this.#engine?.dispose();
      this.#log.info('agent stopped', { agentId: this.agentId });
    })();
    return this.#stopped;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}

function bundleModel(model: ServedModel): ServedModel {
  return { id: model.id, sha256: model.sha256, synthetic: model.synthetic, contextLength: model.contextLength };
}

async function signedBundle(
  options: AgentOptions,
  boxKey: BoxKeyPair,
  model: ServedModel,
  slots: number,
  platform: Platform,
  posture: Posture,
  now: number,
): Promise<SignedBundle> {
  // Valid a little longer than one rotation, so a bundle never lapses before the next one.
  const rotation = options.boxKeyRotationMs ?? 24 * 3600_000;
  return createBundle({
    identity: options.identity,
    boxKey,
    models: [bundleModel(model)],
    slots,
    platform,
    posture,
    now,
    validityMs: Math.min(MAX_BUNDLE_VALIDITY_MS, rotation + 3600_000),
  });
}
