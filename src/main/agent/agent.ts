/**
 * The agent's gateway side: an identity, a box key published in a signed bundle, a link to the
 * gateway and the jobs served over it on whatever engine is attached.
 *
 * Used two ways. Directly, as a server that is always on (`nightjar up`, tests): create it with a
 * loaded engine, start(), dispose(); it keeps a state of its own. Or driven by the
 * {@link AgentRuntime}, which hands in the state it owns (the agent reads it for heartbeats and to
 * take jobs), decides when to connect, attaches and detaches engines, drains and disconnects.
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
  Resource,
  createBundle,
  generateBoxKey,
  silentLogger,
  systemClock,
  withDefaults,
  type AgentState,
  type BackoffOptions,
  type BoxKeyPair,
  type Clock,
  type Event,
  type IdentityKeyPair,
  type LinkState,
  type Logger,
  type MemoryPressure,
  type Platform,
  type Posture,
  type SignedBundle,
  type SignedReceipt,
  type GoodbyeReason,
  type ThermalState,
  type Trust,
  type AttestationReason,
  type EnclaveSigner,
  TimerSlot,
  errorMessage,
  NightjarError,
  loggedEmitter,
} from '../../shared/index.js';
import type { InferenceEngine } from './engine/types.js';
import { GatewayLink, type ReceiptAckFrame } from './gateway-link.js';
import { JobRunner, type JobStats, type ServedModel } from './job-runner.js';
import { ReceiptOutbox, type ReceiptDeliveryLog } from './receipt-outbox.js';
import { detectPlatform, unattestedPosture } from './platform.js';
import { AgentStateStore, type AgentStateSource } from './state.js';

/** The app version agents report. */
export const AGENT_VERSION = '0.1.0';

/** What an agent takes from the machine it runs on, whoever builds it (the runtime, `nightjar up`). */
export interface AgentMachineOptions {
  /** Gateway reconnect timing. Defaults as GatewayLinkOptions.backoff says. */
  backoff?: BackoffOptions;
  /** Random source in [0, 1) for reconnect jitter. Defaults to Math.random. */
  random?: () => number;
  /**
   * Link liveness (GatewayLinkOptions.pingMs and silenceTimeoutMs), each field defaulted on its
   * own. Defaults to a ping after 5 s without a word from the gateway, and the link cut (its jobs
   * stopped) after 15 s of silence.
   */
  liveness?: { pingMs?: number; silenceTimeoutMs?: number };
  /** Defaults to what the OS reports. */
  platform?: Platform;
  /** Defaults to an unattested posture. */
  posture?: Posture;
  /**
   * The Secure Enclave key that co-signs the bundle and answers the gateway's challenges (on a
   * Mac, {@link nativeEnclaveSigner}). It is used only while the posture passes the agent's own
   * check ({@link selfAttestation}): an agent whose posture fails claims no attestation, so no
   * client asking for `attested` seals a job for it. Defaults to none.
   */
  enclave?: EnclaveSigner;
  /**
   * Accept an `enclave` of kind `software` (a key in memory). For tests only: nothing but a test
   * sets it, and without it a software key is refused with NJ_CONFIG_INVALID. Defaults to false.
   */
  allowSoftwareEnclave?: boolean;
  /** Defaults to the system clock. */
  clock?: Clock;
  /** Defaults to a silent logger. */
  logger?: Logger;
}

/** Options of {@link Agent}. */
export interface AgentOptions extends AgentMachineOptions {
  /** The gateway's agent WebSocket URL (ws://host:port/v1/agent). Required. */
  gatewayUrl: string;
  /** The agent's identity key pair. Required. */
  identity: IdentityKeyPair;
  /** The model the bundle names. Required. */
  model: ServedModel;
  /**
   * A loaded engine to serve from the start. Defaults to none (attach one with setEngine). The
   * agent never disposes an engine: whoever loaded it does.
   */
  engine?: InferenceEngine | null;
  /**
   * Where the state heartbeats report comes from, when someone else owns it (the runtime). Defaults
   * to a state of the agent's own, which start() and dispose() write.
   */
  state?: AgentStateSource;
  /** How long dispose() lets running jobs finish before aborting them. Defaults to 5000 ms. */
  stopGraceMs?: number;
  /**
   * Records every receipt before it is sent: awaited, because the receipt log fsyncs first (see
   * JobRunnerOptions.recordReceipt). Defaults to recording nothing.
   */
  recordReceipt?: (receipt: SignedReceipt) => void | Promise<void>;
  /**
   * Where receipts the gateway has not acknowledged are marked (the receipt log, so they survive a
   * restart of the agent); they are delivered after each welcome until acknowledged. Defaults to
   * keeping them in memory only.
   */
  receiptDelivery?: ReceiptDeliveryLog;
  /** How old (from its end) an undelivered receipt may be before it is given up. Defaults to 24 hours. */
  undeliveredReceiptMaxAgeMs?: number;
  /** One-time enrollment token binding this agent to an operator. Defaults to none. */
  enrollToken?: string | null;
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

const AGENT_DEFAULTS: Required<
  Pick<
    AgentOptions,
    | 'engine'
    | 'stopGraceMs'
    | 'recordReceipt'
    | 'undeliveredReceiptMaxAgeMs'
    | 'enrollToken'
    | 'thermal'
    | 'memoryPressure'
    | 'boxKeyRotationMs'
    | 'previousBoxKeyGraceMs'
    | 'clock'
    | 'logger'
  >
> = {
  engine: null,
  stopGraceMs: 5000,
  recordReceipt: () => undefined,
  undeliveredReceiptMaxAgeMs: 24 * 3600_000,
  enrollToken: null,
  thermal: () => 'nominal',
  memoryPressure: () => 'normal',
  boxKeyRotationMs: 24 * 3600_000,
  previousBoxKeyGraceMs: LIMITS.maxRequestAgeMs + LIMITS.maxClockSkewMs,
  clock: systemClock,
  logger: silentLogger,
};

type ResolvedAgentOptions = typeof AGENT_DEFAULTS &
  AgentOptions & {
    platform: Platform;
    posture: Posture;
    /** The enclave key the agent claims attestation with; null when it claims none. */
    claimEnclave: EnclaveSigner | null;
    /** The agent's own judgement of its attestation. */
    selfAttestation: AttestationReason[];
  };

/**
 * The agent's own judgement of whether it can be attested: `['valid']`, or each reason it cannot
 * (no enclave key, SIP off, debugger allowed, hardened runtime off, no app hash). It cannot know
 * whether its app hash is on the gateway's released list, so a non-null hash passes here.
 */
export function selfAttestation(posture: Posture, enclave: EnclaveSigner | null | undefined): AttestationReason[] {
  const reasons: AttestationReason[] = enclave ? [] : ['no-attestation'];
  if (posture.sip !== true) reasons.push('sip-off');
  if (posture.debuggerDenied !== true) reasons.push('debugger-allowed');
  if (posture.hardenedRuntime !== true) reasons.push('hardened-runtime-off');
  if (posture.appHash === null) reasons.push('unreleased-app-hash');
  return reasons.length ? reasons : ['valid'];
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

/** The figures heartbeats and the status report: the job runner's, with the slots. */
export interface JobFigures extends JobStats {
  /** Slots that could take a job now (0 unless serving). */
  readonly freeSlots: number;
  /** Slots of the attached engine (0 without one). */
  readonly totalSlots: number;
}

/** What the gateway said when it welcomed this agent. */
export interface Welcome {
  readonly operator: string | null;
  readonly trust: Trust;
}

/** Why the gateway refused this agent. */
export interface Rejection {
  readonly code: string;
  readonly message: string;
}

/** A provider agent's gateway side. */
export class Agent extends Resource {
  readonly #o: ResolvedAgentOptions;
  readonly #log: Logger;
  readonly #runner: JobRunner;
  readonly #link: GatewayLink;
  readonly #outbox: ReceiptOutbox;
  /** The state the agent writes itself, when no owner handed one in. */
  readonly #own: AgentStateStore | null;
  readonly #state: AgentStateSource;
  readonly #rotation: TimerSlot;
  #engine: InferenceEngine | null;
  #model: ServedModel;
  #boxKey: BoxKeyPair;
  #previous: { key: BoxKeyPair; timer: TimerSlot } | null = null;
  #bundle: SignedBundle;
  /** Between connect() and disconnect(): box keys rotate. */
  #connected = false;

  private constructor(options: ResolvedAgentOptions, boxKey: BoxKeyPair, bundle: SignedBundle) {
    super();
    this.#o = options;
    const log = (this.#log = options.logger);
    const clock = options.clock;
    this.#engine = options.engine;
    this.#model = options.model;
    this.#boxKey = boxKey;
    this.#bundle = bundle;
    const d = this.disposables;
    this.#own = options.state ? null : d.add(new AgentStateStore({ clock, logger: log }));
    this.#state = options.state ?? this.#own!;
    this.#rotation = d.add(new TimerSlot(clock));
    this.#outbox = d.add(
      new ReceiptOutbox({
        send: (frame) => this.#link.send(frame),
        log: options.receiptDelivery,
        maxAgeMs: options.undeliveredReceiptMaxAgeMs,
        clock,
        logger: log,
      }),
    );
    this.#runner = d.add(
      new JobRunner({
        identity: options.identity,
        boxKeys: () => (this.#previous ? [this.#boxKey, this.#previous.key] : [this.#boxKey]),
        model: () => this.#model,
        engine: () => this.#engine,
        clock,
        logger: log,
        send: (frame) => this.#link.send(frame),
        accepting: () => this.#state.state === 'serving',
        recordReceipt: options.recordReceipt,
        undelivered: (receipt) => this.#outbox.add(receipt),
        sent: (receipt) => this.#outbox.sent(receipt),
      }),
    );
    this.#link = d.add(
      new GatewayLink({
        url: options.gatewayUrl,
        identity: options.identity,
        enclave: options.claimEnclave,
        bundle: () => this.#bundle,
        enrollToken: options.enrollToken,
        status: () => {
          const f = this.figures();
          return {
            state: this.#state.state,
            model: this.#model.id,
            freeSlots: f.freeSlots,
            totalSlots: f.totalSlots,
            tokensPerSecond: f.tokensPerSecond,
            ttftMs: f.ttftMs,
            memoryPressure: options.memoryPressure(),
            thermal: options.thermal(),
          };
        },
        clock,
        logger: log,
        backoff: options.backoff,
        random: options.random,
        pingMs: options.liveness?.pingMs,
        silenceTimeoutMs: options.liveness?.silenceTimeoutMs,
      }),
    );
    this.#link.onJob((frame) => this.#runner.handle(frame));
    this.#link.onCancel((frame) => this.#runner.cancel(frame.jobId, frame.attempt));
    // Jobs cannot outlive the link they came on: stop them within a token, keep their receipts,
    // and deliver those after the next welcome (the same gateway's, or a restarted one's).
    this.#link.onDisconnected(() => {
      this.#outbox.disconnected();
      void this.#runner.linkLost();
    });
    this.#link.onWelcome(() => this.#outbox.connected());
    this.#link.onReject((frame) => this.#outbox.rejected(frame.code));
    this.#link.onReceiptAck((frame) => this.#outbox.acknowledged(frame));
    // The gateway routes on the free slots the last heartbeat reported: tell it at once when a job
    // starts generating or ends, not at the next beat (up to 15 s later). It counts the jobs it
    // dispatched since that beat itself, so the start can wait for the engine.
    this.#runner.onJobs(() => this.#link.beat());
    // A state change is heard at once too; only 'serving' takes jobs.
    let beaten = this.#state.state;
    d.add(
      this.#state.onChange(({ state }) => {
        if (state === beaten) return;
        beaten = state;
        this.#link.beat();
      }),
    );
    this.onJobs = this.#runner.onJobs;
    this.onReceipt = this.#runner.onReceipt;
    this.onReceiptAck = this.#link.onReceiptAck;
    this.onLink = this.#link.onState;
    const welcome$ = d.add(loggedEmitter<Welcome>(log, 'welcome'));
    const reject$ = d.add(loggedEmitter<Rejection>(log, 'reject'));
    this.#link.onWelcome((frame) => welcome$.fire({ operator: frame.operator, trust: frame.trust }));
    this.#link.onReject((frame) => reject$.fire({ code: frame.code, message: frame.message }));
    this.onWelcome = welcome$.event;
    this.onReject = reject$.event;
  }

  /** Fires when a job starts generating and when one ends. */
  readonly onJobs: Event<void>;
  /** Fires with every receipt signed, once recorded, just before it is sent. */
  readonly onReceipt: Event<SignedReceipt>;
  /** Fires with the gateway's answer to each receipt delivered late, after the outbox took it in. */
  readonly onReceiptAck: Event<ReceiptAckFrame>;
  /** Fires when the link's state changes. */
  readonly onLink: Event<LinkState>;
  /** Fires with the operator and trust of every welcome from the gateway. */
  readonly onWelcome: Event<Welcome>;
  /** Fires when the gateway refuses this agent (a bad enrollment token…). */
  readonly onReject: Event<Rejection>;

  /** Builds an agent: draws a box key and signs its first bundle. */
  static async create(options: AgentOptions): Promise<Agent> {
    const o = withDefaults(AGENT_DEFAULTS, options);
    if (options.enclave?.kind === 'software' && options.allowSoftwareEnclave !== true) {
      throw new NightjarError(
        'NJ_CONFIG_INVALID',
        'a software enclave key is for tests only; a production agent attests only with the Secure Enclave',
      );
    }
    const posture = options.posture ?? unattestedPosture(AGENT_VERSION);
    const judged = selfAttestation(posture, options.enclave);
    if (options.enclave && judged[0] !== 'valid') {
      o.logger.warn('claiming no attestation: this machine’s posture fails', { reasons: judged.join(',') });
    }
    const resolved: ResolvedAgentOptions = {
      ...o,
      platform: options.platform ?? detectPlatform(),
      posture,
      claimEnclave: judged[0] === 'valid' ? (options.enclave ?? null) : null,
      selfAttestation: judged,
    };
    const boxKey = await generateBoxKey();
    const bundle = await signedBundle(resolved, boxKey, options.model, resolved.engine?.totalSlots ?? 1, o.clock.now());
    return new Agent(resolved, boxKey, bundle);
  }

  /** Why this agent can or cannot be attested, by its own check (`['valid']` when it claims attestation). */
  get attestation(): readonly AttestationReason[] {
    return this.#o.selfAttestation;
  }

  /** The agent's id (from its identity key). */
  get agentId(): string {
    return this.#o.identity.agentId;
  }

  /** The state heartbeats report. */
  get state(): AgentState {
    return this.#state.state;
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

  /** Receipts signed but not acknowledged by the gateway yet (delivered after the next welcome). */
  get undeliveredReceipts(): number {
    return this.#outbox.size;
  }

  /** Receipts sent in `done` frames on this connection that the gateway has not acknowledged yet. */
  get receiptsAwaitingAck(): number {
    return this.#outbox.awaitingAck;
  }

  /** The job runner's live figures (jobs running and served, measured speeds). */
  get stats(): JobStats {
    return this.#runner.stats;
  }

  /** The figures heartbeats report, read now: the runner's, and the slots free and in total. */
  figures(): JobFigures {
    const stats = this.#runner.stats;
    const totalSlots = this.#engine?.totalSlots ?? 0;
    const serving = this.#state.state === 'serving' && this.#engine !== null;
    return {
      activeJobs: stats.activeJobs,
      jobsServed: stats.jobsServed,
      tokensPerSecond: stats.tokensPerSecond,
      ttftMs: stats.ttftMs,
      freeSlots: serving ? Math.max(0, totalSlots - stats.activeJobs) : 0,
      totalSlots,
    };
  }

  /** Connects to the gateway and starts serving (the always-on use, with a state of its own). */
  start(): void {
    this.#own?.set(this.#engine ? 'serving' : 'waiting');
    this.connect();
  }

  /** Opens the link (reconnecting until disconnect) and starts rotating box keys. */
  connect(): void {
    if (this.isDisposed) return;
    this.#connected = true;
    this.#scheduleRotation();
    this.#link.connect();
  }

  /**
   * Attaches a loaded engine (or detaches with null; whoever loaded it disposes it). The bundle is
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
    this.#forgetPrevious();
    const timer = new TimerSlot(this.#o.clock);
    this.#previous = { key: this.#boxKey, timer };
    timer.set(this.#o.previousBoxKeyGraceMs, () => this.#forgetPrevious());
    this.#boxKey = next;
    await this.#resign();
    this.#log.info('box key rotated', { boxKeyId: next.keyId });
  }

  #forgetPrevious(): void {
    if (!this.#previous) return;
    this.#previous.timer.dispose();
    (this.#previous.key.secretKey as Uint8Array).fill(0);
    this.#previous = null;
  }

  /** Box key ids this agent opens envelopes for now, current first. */
  get boxKeyIds(): string[] {
    return this.#previous ? [this.#boxKey.keyId, this.#previous.key.keyId] : [this.#boxKey.keyId];
  }

  async #resign(): Promise<void> {
    const slots = this.#engine?.totalSlots ?? this.#bundle.bundle.capacity.slots;
    this.#bundle = await signedBundle(this.#o, this.#boxKey, this.#model, slots, this.#o.clock.now());
    this.#link.send({ v: PROTOCOL_VERSION, type: 'bundle', bundle: this.#bundle });
  }

  #scheduleRotation(): void {
    if (this.#rotation.pending) return;
    this.#rotation.set(this.#o.boxKeyRotationMs, () => {
      this.rotateBoxKey()
        .catch((err: unknown) => this.#log.error('box key rotation failed', { err: errorMessage(err) }))
        .finally(() => {
          if (this.#connected) this.#scheduleRotation();
        });
    });
  }

  /**
   * Lets running jobs finish for up to `graceMs`, then aborts the rest; each still ends with a
   * final chunk and a receipt, and the engine has stopped generating when this resolves. Set the
   * state away from 'serving' first so no new job starts. Aborting `resume` calls the drain off
   * (the jobs carry on). Unless resumed, the engine's warm conversations are cleared too: none
   * stays in memory past a preemption.
   */
  async drain(graceMs: number, resume?: AbortSignal): Promise<DrainOutcome> {
    const outcome = await this.#drainJobs(graceMs, resume);
    if (outcome.outcome !== 'resumed') await this.#engine?.forgetConversations?.();
    return outcome;
  }

  async #drainJobs(graceMs: number, resume?: AbortSignal): Promise<DrainOutcome> {
    const jobsAtStart = this.#runner.stats.activeJobs;
    if (jobsAtStart === 0) return { jobsAtStart, aborted: 0, outcome: 'settled' };
    const outcome = await new Promise<DrainOutcome['outcome']>((resolve) => {
      if (resume?.aborted) return resolve('resumed');
      if (graceMs <= 0) return resolve('grace');
      const timer = new TimerSlot(this.#o.clock);
      const finish = (o: DrainOutcome['outcome']): void => {
        timer.dispose();
        resume?.removeEventListener('abort', onResume);
        resolve(o);
      };
      const onResume = (): void => finish('resumed');
      timer.set(graceMs, () => finish('grace'));
      resume?.addEventListener('abort', onResume, { once: true });
      void this.#runner.drain().then(() => finish('settled'));
    });
    if (outcome !== 'grace') return { jobsAtStart, aborted: 0, outcome };
    const aborted = this.#runner.stats.activeJobs;
    await this.#runner.abortAll();
    return { jobsAtStart, aborted, outcome };
  }

  /** Says goodbye with `reason`, closes the link and stops reconnecting (until connect()). */
  async disconnect(reason: GoodbyeReason): Promise<void> {
    this.#connected = false;
    this.#rotation.clear();
    this.#forgetPrevious();
    await this.#link.disconnect(reason);
  }

  /**
   * Stops taking jobs (when it owns its state), lets running ones finish for `stopGraceMs` (then
   * aborts them), says goodbye ('quit') and disconnects. The engine stays with whoever loaded it.
   */
  protected override async onDispose(): Promise<void> {
    this.#own?.set('draining');
    await this.drain(this.#o.stopGraceMs);
    await this.disconnect('quit');
    this.#own?.set('stopped');
    this.#log.info('agent stopped', { agentId: this.agentId });
  }
}

function bundleModel(model: ServedModel): ServedModel {
  return { id: model.id, sha256: model.sha256, synthetic: model.synthetic, contextLength: model.contextLength };
}

async function signedBundle(
  options: Pick<ResolvedAgentOptions, 'identity' | 'boxKeyRotationMs' | 'platform' | 'posture' | 'claimEnclave'>,
  boxKey: BoxKeyPair,
  model: ServedModel,
  slots: number,
  now: number,
): Promise<SignedBundle> {
  // Valid a little longer than one rotation, so a bundle never lapses before the next one.
  return createBundle({
    identity: options.identity,
    boxKey,
    models: [bundleModel(model)],
    slots,
    platform: options.platform,
    posture: options.posture,
    ...(options.claimEnclave ? { enclave: options.claimEnclave } : {}),
    now,
    validityMs: Math.min(MAX_BUNDLE_VALIDITY_MS, options.boxKeyRotationMs + 3600_000),
  });
}
