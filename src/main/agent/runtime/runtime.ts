/**
 * The agent as an owner runs it for months: the policy's decisions carried out with timers on the
 * injected clock.
 *
 * States (DESIGN.md): stopped → waiting → loading → serving ⇄ draining → waiting / paused, and
 * error with a reason a person can act on.
 *
 * - Every `pollMs`, and whenever the environment source says something changed, the runtime
 *   reads the machine and asks the pure policy (policy/policy.ts) for a decision.
 * - What to do about it is the pure planner's (planner.ts): one step at a time — connect, load,
 *   serve, drain, unload, disconnect, hold an error… This file is the executor: it owns the
 *   timers, the Agent, the engine it loaded and the power-save blocker, carries each step out and
 *   plans again until the planner says rest.
 * - serve: connect to the gateway, load the model (its file re-hashed and its memory checked by
 *   the model choice), then take jobs. The Mac is kept awake (power-save blocker) from here until
 *   the jobs have drained.
 * - wait (owner active, on battery, too hot, no fresh reading): stop taking jobs at once (the
 *   state turns 'draining' synchronously with the decision, and the gateway hears it in a
 *   heartbeat), let running jobs finish for `policy.graceMs`, abort the rest (the engine stops
 *   within a token), stay connected as 'waiting', and unload the model `policy.unloadDelayMs`
 *   later unless serving resumes first.
 * - off (paused, outside the schedule): the same drain, then a goodbye ('paused' or 'schedule')
 *   and the link closes.
 * - error (no model selected, a file that fails its hash, a model that does not fit, a load
 *   failure): disconnect with goodbye 'error' and stay there until the owner acts (resume,
 *   serve-now, selecting a model); a failure that may pass on its own is retried after
 *   `errorRetryMs`.
 *
 * The state lives in one {@link AgentStateStore} that the runtime writes and its Agent reads.
 * Every preemption is reported with its timings ({@link AgentRuntime.onPreempted}): when serving
 * stopped, when the jobs had settled, when the model was unloaded.
 */
import {
  DEFAULT_POLICY,
  NightjarError,
  Resource,
  isErrorCode,
  nextEvent,
  silentLogger,
  systemClock,
  withDefaults,
  type AgentState,
  type AgentStatusSnapshot,
  type Clock,
  type Decision,
  type Emitter,
  type EnvironmentReading,
  type Event,
  type GatewayStanding,
  type IdentityKeyPair,
  type LinkState,
  type GoodbyeReason,
  type Logger,
  type Manual,
  type Platform,
  type Policy,
  type Posture,
  type Preemption,
  type SignedReceipt,
  type StateReason,
  TimerSlot,
  errorMessage,
  loggedEmitter,
} from '../../../shared/index.js';
import { AGENT_VERSION, Agent, selfAttestation, type AgentMachineOptions } from '../agent.js';
import type { InferenceEngine } from '../engine/types.js';
import type { EnvironmentSource } from '../environment/environment.js';
import { NoopPowerSaveBlocker, type PowerSaveBlocker } from '../environment/power-save.js';
import type { ServedModel } from '../job-runner.js';
import { MemoryDeliveryLog, type ReceiptDeliveryLog } from '../receipt-outbox.js';
import { detectPlatform, unattestedPosture } from '../platform.js';
import { decide, effectiveManual } from '../policy/policy.js';
import { systemTimeZone } from '../policy/schedule.js';
import { AgentStateStore, type AgentStateChange } from '../state.js';
import { plan, reasonOf, stopsAccepting, type PlanInput, type Step } from './planner.js';

/** The model the runtime serves: what the bundle says, and how to load it. */
export interface ModelChoice {
  /** The model as the bundle names it. */
  readonly served: ServedModel;
  /**
   * Checks the file (sha256) and the memory, and loads it. Throws NightjarError with a message a
   * person can act on (NJ_MODEL_FILE_INVALID, NJ_MODEL_DOES_NOT_FIT, NJ_MODEL_LOAD_FAILED…).
   * The runtime disposes what it loads.
   */
  load(): Promise<InferenceEngine>;
}

/** Options of {@link AgentRuntime}. */
export interface AgentRuntimeOptions extends AgentMachineOptions {
  /**
   * The gateway's agent WebSocket URL; null while this machine is not linked to a gateway (the
   * runtime then waits in 'error' with NJ_NOT_LINKED until {@link AgentRuntime.setGateway}).
   * Required.
   */
  gatewayUrl: string | null;
  /** The identity key pair. Required. */
  identity: IdentityKeyPair;
  /** Where idle time, power and heat come from. Required. */
  environment: EnvironmentSource;
  /** The model to serve, asked for when one must be loaded; null when none is selected. Required. */
  model: () => ModelChoice | null | Promise<ModelChoice | null>;
  /** Where the identity key is kept, as status reports it. Defaults to 'keychain'. */
  keyStore?: 'keychain' | 'plaintext-file';
  /** Defaults to {@link DEFAULT_POLICY}. */
  policy?: Policy;
  /** The owner's override at start. Defaults to auto. */
  manual?: Manual;
  /**
   * Saves every change of the override. A hook, awaited before the runtime acts on the change, so
   * an override the owner set survives a crash right after. A failure is logged. Defaults to
   * saving nothing.
   */
  saveManual?: (manual: Manual) => void | Promise<void>;
  /**
   * Records every receipt before it is sent. A hook, awaited: the receipt log fsyncs the receipt
   * first, so the gateway is never paid for a job missing from the agent's own record. Defaults
   * to recording nothing.
   */
  recordReceipt?: (receipt: SignedReceipt) => void | Promise<void>;
  /**
   * Where receipts the gateway has not acknowledged are marked (the receipt log), so a receipt
   * whose link dropped is delivered after a reconnect, even by an agent built after a relink or a
   * restart. Defaults to keeping them in memory only.
   */
  receiptDelivery?: ReceiptDeliveryLog;
  /** Keeps the machine awake while serving. Defaults to one that does nothing. */
  powerSaveBlocker?: PowerSaveBlocker;
  /** One-time enrollment token. Defaults to none. */
  enrollToken?: string | null;
  /** How often the machine is read. Defaults to 2000 ms. */
  pollMs?: number;
  /** A reading older than this is not acted on. Defaults to max(10 s, 3 × pollMs). */
  maxReadingAgeMs?: number;
  /** Time between box key rotations. Defaults to 24 hours. */
  boxKeyRotationMs?: number;
  /** How long a rotated-out box key still opens envelopes. Defaults to 6 minutes. */
  previousBoxKeyGraceMs?: number;
  /** Delay before retrying a failure that may pass (memory, load). Defaults to 5 minutes. */
  errorRetryMs?: number;
  /** The system's time zone, used when the policy names none. Defaults to the process's. */
  systemTimeZone?: () => string;
}

type Defaulted =
  | 'keyStore'
  | 'policy'
  | 'manual'
  | 'saveManual'
  | 'recordReceipt'
  | 'enrollToken'
  | 'pollMs'
  | 'errorRetryMs'
  | 'systemTimeZone'
  | 'clock'
  | 'logger';

const RUNTIME_DEFAULTS: Required<Pick<AgentRuntimeOptions, Defaulted>> = {
  keyStore: 'keychain',
  policy: DEFAULT_POLICY,
  manual: { mode: 'auto', until: null },
  saveManual: () => undefined,
  recordReceipt: () => undefined,
  enrollToken: null,
  pollMs: 2000,
  errorRetryMs: 300_000,
  systemTimeZone,
  clock: systemClock,
  logger: silentLogger,
};

/** Failures that may pass on their own (memory frees up, a transient load failure). */
const RETRYABLE = new Set(['NJ_MODEL_DOES_NOT_FIT', 'NJ_MODEL_LOAD_FAILED', 'NJ_ENGINE_FAILED', 'NJ_INTERNAL']);
/**
 * Gateway refusals that reconnecting cannot fix: a used or unknown enrollment token, another
 * protocol version, an identity the gateway will not accept. The agent stops and waits in
 * `error` until the owner acts (links again, resumes).
 */
const TERMINAL_REJECTS = new Set(['NJ_ENROLL_INVALID', 'NJ_PROTOCOL_VERSION', 'NJ_AUTH_FAILED', 'NJ_BUNDLE_INVALID']);
/** Steps one plan may take before the runtime assumes it is going round in circles. */
const MAX_STEPS = 64;

function errorReason(error: NightjarError): StateReason {
  return { code: error.code, message: error.message.slice(0, 1024), hint: error.hint };
}

function asNightjarError(err: unknown): NightjarError {
  return err instanceof NightjarError ? err : new NightjarError('NJ_INTERNAL', errorMessage(err), { cause: err });
}

/** What {@link AgentRuntime.whenState} takes. */
export interface WhenStateOptions {
  /** Gives up after this long on the runtime's clock (NJ_TIMEOUT). Defaults to never. */
  timeoutMs?: number;
  /** Stops waiting (NJ_CANCELLED). Defaults to none. */
  signal?: AbortSignal;
}

/** The provider agent's state machine: the planner's steps, carried out. */
export class AgentRuntime extends Resource {
  readonly #o: typeof RUNTIME_DEFAULTS & AgentRuntimeOptions;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #blocker: PowerSaveBlocker;
  readonly #platform: Platform;
  readonly #posture: Posture;
  readonly #store: AgentStateStore;
  /** Undelivered receipts, shared by every agent this runtime builds (one per link). */
  readonly #delivery: ReceiptDeliveryLog;
  readonly #link$: Emitter<LinkState>;
  readonly #jobs$: Emitter<void>;
  readonly #receipt$: Emitter<SignedReceipt>;
  readonly #preempted$: Emitter<Preemption>;
  readonly #environment$: Emitter<EnvironmentReading>;
  readonly #pollTimer: TimerSlot;
  readonly #unloadTimer: TimerSlot;
  readonly #retryTimer: TimerSlot;
  #gatewayUrl: string | null;
  #enrollToken: string | null;
  #standing: Omit<GatewayStanding, 'enrollToken'> = { operator: null, trust: null, rejected: null };
  #policy: Policy;
  #manual: Manual;
  #decision: Decision | null = null;
  #reading: EnvironmentReading | null = null;
  #agent: Agent | null = null;
  #choice: ModelChoice | null = null;
  #engine: InferenceEngine | null = null;
  #error: { error: NightjarError; retryAt: number | null } | null = null;
  #preemption: Preemption | null = null;
  #drainCancel: AbortController | null = null;
  #drained = false;
  #reloadRequested = false;
  #relinkRequested = false;
  #unloadDue = false;
  #loop: Promise<void> | null = null;
  #dirty = false;
  #reading$: Promise<void> | null = null;
  #readAgain = false;
  /** True while readings fail: logged when it starts and when it ends, not at every poll. */
  #readFailing = false;
  #stopping = false;

  constructor(options: AgentRuntimeOptions) {
    super();
    const o = (this.#o = withDefaults(RUNTIME_DEFAULTS, options));
    this.#clock = o.clock;
    const log = (this.#log = o.logger);
    this.#blocker = options.powerSaveBlocker ?? new NoopPowerSaveBlocker();
    this.#platform = options.platform ?? detectPlatform();
    this.#posture = options.posture ?? unattestedPosture(AGENT_VERSION);
    this.#gatewayUrl = o.gatewayUrl;
    this.#enrollToken = o.enrollToken;
    this.#policy = o.policy;
    this.#manual = o.manual;
    const d = this.disposables;
    this.#store = d.add(new AgentStateStore({ clock: this.#clock, logger: log }));
    this.#delivery = options.receiptDelivery ?? new MemoryDeliveryLog();
    this.#link$ = d.add(loggedEmitter(log, 'link'));
    this.#jobs$ = d.add(loggedEmitter(log, 'jobs'));
    this.#receipt$ = d.add(loggedEmitter(log, 'receipt'));
    this.#preempted$ = d.add(loggedEmitter(log, 'preemption'));
    this.#environment$ = d.add(loggedEmitter(log, 'environment'));
    this.#pollTimer = d.add(new TimerSlot(this.#clock));
    this.#unloadTimer = d.add(new TimerSlot(this.#clock));
    this.#retryTimer = d.add(new TimerSlot(this.#clock));
    this.onState = this.#store.onChange;
    this.onLink = this.#link$.event;
    this.onJobs = this.#jobs$.event;
    this.onReceipt = this.#receipt$.event;
    this.onPreempted = this.#preempted$.event;
    this.onEnvironment = this.#environment$.event;
  }

  // ---- events -------------------------------------------------------------------------------

  /** The state or its reason changed. Await serving with {@link AgentRuntime.whenState}. */
  readonly onState: Event<AgentStateChange>;
  /** The gateway link changed state, or the gateway's welcome or refusal changed the standing. */
  readonly onLink: Event<LinkState>;
  /** A job started generating or ended. */
  readonly onJobs: Event<void>;
  /** A receipt was signed and recorded. */
  readonly onReceipt: Event<SignedReceipt>;
  /** Serving stopped and the jobs settled; fired again with `unloadedMs` when the model is unloaded. */
  readonly onPreempted: Event<Preemption>;
  /** A new reading of the machine. */
  readonly onEnvironment: Event<EnvironmentReading>;

  /**
   * Resolves with the state once `accept` holds for it — at once if it holds now, else at the
   * first change that satisfies it (e.g. `whenState('serving')`: the agent is ready).
   */
  whenState(accept: AgentState | ((s: AgentStateChange) => boolean), options: WhenStateOptions = {}): Promise<AgentStateChange> {
    const test = typeof accept === 'string' ? (s: AgentStateChange) => s.state === accept : accept;
    if (test(this.#store.current)) return Promise.resolve(this.#store.current);
    return nextEvent(this.onState, test, {
      clock: this.#clock,
      timeoutMs: options.timeoutMs,
      signal: options.signal,
      what: typeof accept === 'string' ? `the agent to be ${accept}` : 'the agent state',
    });
  }

  // ---- what it is ---------------------------------------------------------------------------

  /** The agent's id. */
  get agentId(): string {
    return this.#o.identity.agentId;
  }

  /** The state. */
  get state(): AgentState {
    return this.#store.state;
  }

  /** Why it is in its state. */
  get reason(): StateReason | null {
    return this.#store.current.reason;
  }

  /** The last decision of the policy. */
  get decision(): Decision | null {
    return this.#decision;
  }

  /** The policy in force. */
  get policy(): Policy {
    return this.#policy;
  }

  /** The owner's override. */
  get manual(): Manual {
    return this.#manual;
  }

  /** The gateway side, once created (it needs a model). */
  get agent(): Agent | null {
    return this.#agent;
  }

  /** The loaded engine, if any. */
  get engine(): InferenceEngine | null {
    return this.#engine;
  }

  /** The gateway's agent WebSocket URL; null while not linked. */
  get gatewayUrl(): string | null {
    return this.#gatewayUrl;
  }

  /** Everything a dashboard shows. */
  status(): AgentStatusSnapshot {
    const agent = this.#agent;
    const model = agent?.model ?? this.#choice?.served ?? null;
    const { state, since, reason } = this.#store.current;
    const figures = agent?.figures() ?? { activeJobs: 0, jobsServed: 0, freeSlots: 0, totalSlots: 0, tokensPerSecond: 0, ttftMs: 0 };
    return {
      v: 1,
      agentId: this.agentId,
      state,
      since,
      reason,
      decision: this.#decision,
      manual: this.#manual,
      link: agent?.linkState ?? 'idle',
      gatewayUrl: this.#gatewayUrl,
      gateway: { enrollToken: this.#enrollToken !== null, ...this.#standing },
      model: model ? { id: model.id, sha256: model.sha256, synthetic: model.synthetic, loaded: this.#engine !== null } : null,
      totalSlots: this.#engine?.totalSlots ?? 0,
      freeSlots: figures.freeSlots,
      activeJobs: figures.activeJobs,
      jobsServed: figures.jobsServed,
      tokensPerSecond: figures.tokensPerSecond,
      ttftMs: figures.ttftMs,
      environment: this.#reading,
      security: {
        keyStore: this.#o.keyStore,
        platform: this.#platform,
        posture: this.#posture,
        attestation: selfAttestation(this.#posture, this.#o.enclave),
      },
    };
  }

  /** Resolves when the state machine has nothing more to do right now. */
  async settled(): Promise<void> {
    while (this.#loop || this.#reading$) {
      await this.#reading$;
      await this.#loop;
    }
  }

  // ---- lifecycle ----------------------------------------------------------------------------

  /** Starts: reads the machine, decides, and acts on it. Resolves after the first reading. */
  async start(): Promise<void> {
    if (this.#store.state !== 'stopped' || this.#stopping || this.isDisposed) return;
    this.#setState('waiting', null);
    const changes = this.#o.environment.onChange;
    if (changes) this.disposables.add(changes(() => void this.#read()));
    this.#schedulePoll();
    await this.#read();
  }

  /**
   * The graceful stop: takes no more jobs, lets running ones finish for the policy's grace (then
   * aborts them), says goodbye ('quit'), unloads the model and releases the power-save blocker.
   */
  protected override async onDispose(): Promise<void> {
    this.#stopping = true;
    for (const t of [this.#pollTimer, this.#unloadTimer, this.#retryTimer]) t.clear();
    // No job starts from here; a drain already under way in the loop ends with this one.
    if (this.#store.state === 'serving') this.#setState('draining', null);
    const grace = this.#policy.graceMs;
    const draining = this.#agent?.drain(grace);
    await this.#loop?.catch(() => undefined);
    await this.#reading$;
    await draining;
    // The loop may have made a new agent meanwhile: it drains too, then says goodbye.
    const agent = this.#agent;
    if (agent) {
      await agent.drain(grace);
      await agent.dispose();
    }
    const engine = this.#engine;
    this.#engine = null;
    if (engine) {
      this.disposables.delete(engine);
      await engine.dispose();
    }
    this.#blocker.release();
    this.#setState('stopped', null);
    this.#log.info('agent runtime stopped', { agentId: this.agentId });
  }

  // ---- the owner's controls -----------------------------------------------------------------

  /** Pauses until `until` (ms since the epoch) or until resumed. */
  async pause(until: number | null = null): Promise<void> {
    await this.#setManual({ mode: 'paused', until });
  }

  /** Back to the policy; clears an error so the model is tried again. */
  async resume(): Promise<void> {
    this.#error = null;
    await this.#setManual({ mode: 'auto', until: null });
  }

  /** Serves now, whatever idle time and schedule say, until `until` or resumed. */
  async serveNow(until: number | null = null): Promise<void> {
    this.#error = null;
    await this.#setManual({ mode: 'serve-now', until });
  }

  /** Replaces the policy and re-decides at once. */
  setPolicy(policy: Policy): void {
    this.#policy = policy;
    this.#apply(true);
  }

  /**
   * Links to another gateway (or the same one with another enrollment token): running jobs drain
   * as for a model change, the current link says goodbye, and the next connection goes to `url`
   * presenting `enrollToken`. The loaded model stays loaded. Clears an error.
   */
  setGateway(url: string, enrollToken: string | null): void {
    this.#gatewayUrl = url;
    this.#enrollToken = enrollToken;
    this.#relinkRequested = true;
    this.#error = null;
    if (this.#store.state === 'serving') this.#stopAccepting('relink');
    this.#kick();
  }

  /**
   * The selected model changed: drain and unload the current one, then load the new choice when
   * the policy says serve. Clears an error.
   */
  reloadModel(): void {
    this.#reloadRequested = true;
    this.#error = null;
    if (this.#store.state === 'serving') this.#stopAccepting('model-change');
    this.#kick();
  }

  async #setManual(manual: Manual): Promise<void> {
    this.#manual = manual;
    this.#log.info('owner override', { mode: manual.mode, until: manual.until });
    try {
      await this.#o.saveManual(manual);
    } catch (err) {
      this.#log.warn('could not save the override', { err: errorMessage(err) });
    }
    this.#apply(true);
  }

  // ---- reading and deciding -----------------------------------------------------------------

  #schedulePoll(): void {
    this.#pollTimer.set(this.#o.pollMs, () => {
      if (this.#stopping) return;
      void this.#read().finally(() => {
        if (!this.#stopping) this.#schedulePoll();
      });
    });
  }

  /**
   * Reads the machine and decides. A call while a read is under way reads once more after it (the
   * change that prompted the call may have come after the first read began).
   */
  #read(): Promise<void> {
    // Decide on what is known first: after a sleep or a clock jump, the last reading is stale, and
    // the agent must stop taking jobs before the new reading arrives, not after.
    this.#apply();
    if (this.#reading$) {
      this.#readAgain = true;
      return this.#reading$;
    }
    this.#reading$ = (async () => {
      do {
        this.#readAgain = false;
        try {
          const sample = await this.#o.environment.read();
          this.#reading = { ...sample, at: this.#clock.now() };
          if (this.#readFailing) this.#log.info('idle time, power and heat can be read again');
          this.#readFailing = false;
          this.#environment$.fire(this.#reading);
        } catch (err) {
          if (!this.#readFailing) this.#log.warn('could not read idle time, power or heat', { err: errorMessage(err) });
          this.#readFailing = true;
        }
        if (!this.#stopping) this.#apply();
      } while (this.#readAgain && !this.#stopping);
      this.#reading$ = null;
    })();
    return this.#reading$;
  }

  /** Decides with what is known and starts acting on a changed decision. */
  #apply(force = false): void {
    if (this.#stopping || this.#store.state === 'stopped') return;
    const now = this.#clock.now();
    if (this.#manual.mode !== 'auto' && effectiveManual(this.#manual, now) === 'auto') {
      void this.#setManual({ mode: 'auto', until: null });
      return;
    }
    const decision = decide({
      reading: this.#reading,
      policy: this.#policy,
      manual: this.#manual,
      now,
      timeZone: this.#policy.timeZone ?? this.#o.systemTimeZone(),
      maxReadingAgeMs: this.#o.maxReadingAgeMs ?? Math.max(10_000, 3 * this.#o.pollMs),
    });
    const changed = decision.action !== this.#decision?.action || decision.reason !== this.#decision.reason;
    if (!changed && !force) return;
    if (changed) this.#log.info('policy decision', { action: decision.action, reason: decision.reason });
    this.#decision = decision;
    // Serving again calls a drain off, unless the drain is there to change the model or the link.
    if (decision.action === 'serve' && !this.#reloadRequested && !this.#relinkRequested) this.#drainCancel?.abort();
    else if (stopsAccepting(decision, this.#store.state)) this.#stopAccepting(decision.reason);
    this.#kick();
  }

  /** Stops taking jobs now: synchronous, so no job starts after the decision. */
  #stopAccepting(reason: string): void {
    const agent = this.#agent;
    if (!agent) return;
    this.#preemption = {
      reason,
      detectedAt: this.#clock.now(),
      jobsAtDetection: agent.stats.activeJobs,
      jobsAborted: 0,
      settledMs: 0,
      unloadedMs: null,
    };
    this.#drained = false;
    const d = this.#decision;
    this.#setState('draining', d && d.action !== 'serve' ? reasonOf(d) : null);
  }

  // ---- acting: plan, then carry the step out ------------------------------------------------

  #planInput(): PlanInput {
    const link = this.#agent?.linkState;
    const { state, reason } = this.#store.current;
    return {
      decision: this.#decision,
      error: this.#error && { reason: errorReason(this.#error.error), retryAt: this.#error.retryAt },
      now: this.#clock.now(),
      reloadRequested: this.#reloadRequested,
      relinkRequested: this.#relinkRequested,
      linked: this.#gatewayUrl !== null,
      chosen: this.#choice !== null,
      agent: this.#agent !== null,
      connected: link !== undefined && link !== 'idle' && link !== 'stopped',
      loaded: this.#engine !== null,
      state,
      reason,
      drained: this.#drained,
      unloadDue: this.#unloadDue,
      unloadScheduled: this.#unloadTimer.pending,
    };
  }

  #kick(): void {
    this.#dirty = true;
    if (this.#loop) return;
    this.#loop = (async () => {
      try {
        while (this.#dirty && !this.#stopping) {
          this.#dirty = false;
          await this.#run();
        }
      } catch (err) {
        this.#log.error('agent runtime step failed', { err: errorMessage(err) });
        if (!this.#stopping) {
          // Hold the failure as an error, once; a step that keeps throwing does not spin.
          this.#fail(err);
          await this.#run().catch(() => undefined);
        }
      } finally {
        this.#loop = null;
      }
      // A change that came in while the failure was being held is acted on.
      if (this.#dirty && !this.#stopping) this.#kick();
    })();
  }

  /** Carries out the planner's steps until it says rest. */
  async #run(): Promise<void> {
    for (let n = 0; !this.#stopping; n++) {
      const step = plan(this.#planInput());
      if (step.kind === 'rest') return;
      if (n >= MAX_STEPS) {
        this.#log.error('agent runtime is going round in circles; resting', { step: step.kind });
        return;
      }
      await this.#execute(step);
    }
  }

  async #execute(step: Exclude<Step, { kind: 'rest' }>): Promise<void> {
    switch (step.kind) {
      case 'drain':
        return this.#drainJobs(step.reason);
      case 'unload':
        return this.#unload();
      case 'forget-model':
        this.#reloadRequested = false;
        this.#choice = null;
        return;
      case 'relink':
        return this.#relink();
      case 'clear-error':
        this.#error = null;
        return;
      case 'fail':
        return this.#fail(new NightjarError(step.code, 'This machine is not linked to a gateway yet.'));
      case 'choose-model':
        return this.#chooseModel();
      case 'connect':
        return this.#connect();
      case 'keep-model':
        this.#unloadTimer.clear();
        this.#unloadDue = false;
        return;
      case 'load':
        return this.#load();
      case 'serve':
        this.#preemption = null;
        this.#blocker.acquire();
        this.#setState('serving', step.reason);
        return;
      case 'disconnect':
        return this.#agent?.disconnect(step.goodbye satisfies GoodbyeReason);
      case 'enter':
        this.#blocker.release();
        this.#setState(step.state, step.reason);
        return;
      case 'schedule-unload':
        this.#unloadTimer.set(this.#policy.unloadDelayMs, () => {
          this.#unloadDue = true;
          this.#kick();
        });
        return;
    }
  }

  async #chooseModel(): Promise<void> {
    let choice: ModelChoice | null;
    try {
      choice = await this.#o.model();
    } catch (err) {
      return this.#fail(err);
    }
    if (!choice) return this.#fail(new NightjarError('NJ_MODEL_NOT_INSTALLED', 'No model is selected for this agent.'));
    if (this.#stopping) return;
    this.#choice = choice;
    await this.#agent?.setEngine(null, choice.served);
  }

  /** Makes the gateway side for the model chosen, if there is none, and opens its link. */
  async #connect(): Promise<void> {
    const url = this.#gatewayUrl;
    const choice = this.#choice;
    if (url === null || choice === null) return;
    if (!this.#agent) {
      const agent = await Agent.create({
        gatewayUrl: url,
        identity: this.#o.identity,
        model: choice.served,
        // After a relink the model may already be loaded: the new link serves it at once.
        engine: this.#engine,
        state: this.#store,
        // The runtime drains before it lets an agent go.
        stopGraceMs: 0,
        recordReceipt: this.#o.recordReceipt,
        receiptDelivery: this.#delivery,
        enrollToken: this.#enrollToken,
        boxKeyRotationMs: this.#o.boxKeyRotationMs,
        previousBoxKeyGraceMs: this.#o.previousBoxKeyGraceMs,
        backoff: this.#o.backoff,
        random: this.#o.random,
        thermal: () => this.#reading?.thermal ?? 'nominal',
        memoryPressure: () => this.#reading?.memoryPressure ?? 'normal',
        clock: this.#clock,
        logger: this.#log,
        platform: this.#platform,
        posture: this.#posture,
        ...(this.#o.enclave ? { enclave: this.#o.enclave } : {}),
        allowSoftwareEnclave: this.#o.allowSoftwareEnclave ?? false,
      });
      if (this.#stopping) {
        await agent.dispose();
        return;
      }
      this.#adopt(agent);
    }
    const link = this.#agent!.linkState;
    if (link === 'idle' || link === 'stopped') this.#agent!.connect();
  }

  /** Takes `agent` as the gateway side: its events become the runtime's. */
  #adopt(agent: Agent): void {
    this.#agent = agent;
    this.disposables.add(agent);
    // The subscriptions end with the agent (its events go when it is disposed).
    agent.onReceipt((r) => this.#receipt$.fire(r));
    agent.onJobs(() => this.#jobs$.fire());
    agent.onLink((state) => this.#link$.fire(state));
    agent.onWelcome((w) => this.#setStanding({ operator: w.operator, trust: w.trust, rejected: null }));
    agent.onReject((rejected) => {
      this.#setStanding({ ...this.#standing, rejected });
      if (TERMINAL_REJECTS.has(rejected.code) && isErrorCode(rejected.code)) {
        this.#error = { error: new NightjarError(rejected.code, `the gateway refused this agent: ${rejected.message}`), retryAt: null };
        this.#log.error('agent cannot serve', { code: rejected.code, reason: rejected.message });
        this.#apply(true);
      }
    });
  }

  async #load(): Promise<void> {
    const choice = this.#choice;
    if (!choice) return;
    this.#setState('loading', null);
    let engine: InferenceEngine;
    try {
      engine = await choice.load();
    } catch (err) {
      return this.#fail(err);
    }
    // Whoever loads an engine disposes it: the runtime, when it unloads or stops.
    this.disposables.add(engine);
    if (this.#stopping) return;
    this.#engine = engine;
    await this.#agent?.setEngine(engine, choice.served);
  }

  /** Drains running jobs (within the grace) and reports the preemption. */
  async #drainJobs(reason: string): Promise<void> {
    const agent = this.#agent;
    if (!agent) return;
    if (this.#store.state === 'serving') this.#stopAccepting(reason);
    const cancel = new AbortController();
    this.#drainCancel = cancel;
    const result = await agent.drain(this.#policy.graceMs, cancel.signal);
    if (this.#drainCancel === cancel) this.#drainCancel = null;
    // Called off: serving again, with the jobs carrying on (the next plan serves).
    if (result.outcome === 'resumed') return;
    this.#drained = true;
    const p = this.#preemption;
    if (p) {
      p.jobsAborted = result.aborted;
      p.settledMs = this.#clock.now() - p.detectedAt;
      this.#log.info('jobs settled after preemption', {
        reason: p.reason,
        jobs: p.jobsAtDetection,
        aborted: p.jobsAborted,
        settledMs: p.settledMs,
      });
      this.#preempted$.fire({ ...p });
    }
    this.#blocker.release();
  }

  /** Drops the gateway side; the next connect makes one for the new gateway. */
  async #relink(): Promise<void> {
    this.#relinkRequested = false;
    const agent = this.#agent;
    this.#agent = null;
    this.#standing = { operator: null, trust: null, rejected: null };
    if (agent) {
      this.disposables.delete(agent);
      await agent.dispose();
    }
    this.#link$.fire('idle');
  }

  /** Unloads the model now: memory goes back to the owner. */
  async #unload(): Promise<void> {
    this.#unloadTimer.clear();
    this.#unloadDue = false;
    const engine = this.#engine;
    if (!engine) return;
    this.#engine = null;
    await this.#agent?.setEngine(null);
    this.disposables.delete(engine);
    await engine.dispose();
    const p = this.#preemption;
    if (p && p.unloadedMs === null) {
      p.unloadedMs = this.#clock.now() - p.detectedAt;
      this.#preempted$.fire({ ...p });
    }
    this.#log.info('model unloaded', { afterMs: p?.unloadedMs ?? null });
  }

  /** Holds an error: the planner then drains, says 'error', disconnects and unloads. */
  #fail(err: unknown): void {
    const error = asNightjarError(err);
    const retryAt = RETRYABLE.has(error.code) ? this.#clock.now() + this.#o.errorRetryMs : null;
    this.#error = { error, retryAt };
    this.#log.error('agent cannot serve', { code: error.code, reason: error.message, retryAt });
    if (retryAt !== null && !this.#stopping) this.#retryTimer.set(retryAt - this.#clock.now(), () => this.#apply(true));
  }

  #setStanding(standing: Omit<GatewayStanding, 'enrollToken'>): void {
    this.#standing = standing;
    this.#link$.fire(this.#agent?.linkState ?? 'idle');
  }

  #setState(state: AgentState, reason: StateReason | null): void {
    const was = this.#store.state;
    if (!this.#store.set(state, reason, this.#decision)) return;
    if (state !== was) this.#log.info('agent state', { state, reason: reason?.code ?? null });
  }
}
