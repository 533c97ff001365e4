/**
 * The agent as an owner runs it for months: a state machine that applies the policy's decisions
 * with timers on the injected clock.
 *
 * States (DESIGN.md): stopped → waiting → loading → serving ⇄ draining → waiting / paused, and
 * error with a reason a person can act on.
 *
 * - Every `pollMs`, and whenever the environment source says something changed, the runtime
 *   reads the machine and asks the pure policy (policy/policy.ts) for a decision.
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
 * Every preemption is reported with its timings (`preempted` events): when serving stopped, when
 * the jobs had settled, when the model was unloaded.
 */
import {
  DEFAULT_POLICY,
  NightjarError,
  isErrorCode,
  silentLogger,
  systemClock,
  type AgentState,
  type AgentStatusSnapshot,
  type Clock,
  type Decision,
  type EnvironmentReading,
  type GatewayStanding,
  type IdentityKeyPair,
  type Logger,
  type Manual,
  type Platform,
  type Policy,
  type Posture,
  type Preemption,
  type SignedReceipt,
  type StateReason,
  type TimerHandle,
} from '../../../shared/index.js';
import { AGENT_VERSION, Agent } from '../agent.js';
import type { InferenceEngine } from '../engine/types.js';
import type { EnvironmentSource } from '../environment/environment.js';
import { NoopPowerSaveBlocker, type PowerSaveBlocker } from '../environment/power-save.js';
import type { BackoffOptions, LinkState } from '../gateway-link.js';
import type { ServedModel } from '../job-runner.js';
import { detectPlatform, unattestedPosture } from '../platform.js';
import { decide, describeDecision, effectiveManual } from '../policy/policy.js';
import { systemTimeZone } from '../policy/schedule.js';

/** The model the runtime serves: what the bundle says, and how to load it. */
export interface ModelChoice {
  /** The model as the bundle names it. */
  readonly served: ServedModel;
  /**
   * Checks the file (sha256) and the memory, and loads it. Throws NightjarError with a message a
   * person can act on (NJ_MODEL_FILE_INVALID, NJ_MODEL_DOES_NOT_FIT, NJ_MODEL_LOAD_FAILED…).
   */
  load(): Promise<InferenceEngine>;
}

/** Events of {@link AgentRuntime}, with their arguments. */
export interface AgentRuntimeEvents {
  /** The state or its reason changed. */
  state: [{ state: AgentState; since: number; reason: StateReason | null; decision: Decision | null }];
  /** The gateway link changed state, or the gateway's welcome or refusal changed the standing. */
  link: [LinkState];
  /** A job started or ended. */
  jobs: [];
  /** A receipt was signed (and recorded). */
  receipt: [SignedReceipt];
  /** Serving stopped and the jobs settled; sent again with `unloadedMs` when the model is unloaded. */
  preempted: [Preemption];
  /** A new reading of the machine. */
  environment: [EnvironmentReading];
}

/** Options of {@link AgentRuntime}. */
export interface AgentRuntimeOptions {
  /**
   * The gateway's agent WebSocket URL; null while this machine is not linked to a gateway (the
   * runtime then waits in 'error' with NJ_NOT_LINKED until {@link AgentRuntime.setGateway}).
   * Required.
   */
  gatewayUrl: string | null;
  /** The identity key pair. Required. */
  identity: IdentityKeyPair;
  /** Where the identity key is kept, as status reports it. Defaults to 'keychain'. */
  keyStore?: 'keychain' | 'plaintext-file';
  /** Where idle time, power and heat come from. Required. */
  environment: EnvironmentSource;
  /** The model to serve, asked for when one must be loaded; null when none is selected. Required. */
  model: () => ModelChoice | null | Promise<ModelChoice | null>;
  /** Defaults to {@link DEFAULT_POLICY}. */
  policy?: Policy;
  /** The owner's override at start. Defaults to auto. */
  manual?: Manual;
  /** Told about every change of the override, to persist it. Defaults to none. */
  onManualChange?: (manual: Manual) => void | Promise<void>;
  /** Receives every receipt before it is sent (awaited: the log fsyncs first). Defaults to none. */
  onReceipt?: (receipt: SignedReceipt) => void | Promise<void>;
  /** Keeps the machine awake while serving. Defaults to one that does nothing. */
  powerSaveBlocker?: PowerSaveBlocker;
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
  /** Random source for reconnect jitter. Defaults to Math.random. */
  random?: () => number;
  /** One-time enrollment token. Defaults to none. */
  enrollToken?: string;
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

/** Failures that may pass on their own (memory frees up, a transient load failure). */
const RETRYABLE = new Set(['NJ_MODEL_DOES_NOT_FIT', 'NJ_MODEL_LOAD_FAILED', 'NJ_ENGINE_FAILED', 'NJ_INTERNAL']);
/**
 * Gateway refusals that reconnecting cannot fix: a used or unknown enrollment token, another
 * protocol version, an identity the gateway will not accept. The agent stops and waits in
 * `error` until the owner acts (links again, resumes).
 */
const TERMINAL_REJECTS = new Set(['NJ_ENROLL_INVALID', 'NJ_PROTOCOL_VERSION', 'NJ_AUTH_FAILED', 'NJ_BUNDLE_INVALID']);

type Listener<A extends unknown[]> = (...args: A) => void;

function reasonOf(decision: Decision): StateReason {
  const { message, hint } = describeDecision(decision);
  return { code: decision.reason, message, hint };
}

function errorReason(error: NightjarError): StateReason {
  return { code: error.code, message: error.message.slice(0, 1024), hint: error.hint };
}

/** The provider agent's state machine. */
export class AgentRuntime implements AsyncDisposable {
  readonly #o: AgentRuntimeOptions;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #blocker: PowerSaveBlocker;
  readonly #listeners = new Map<keyof AgentRuntimeEvents, Set<Listener<never[]>>>();
  readonly #platform: Platform;
  readonly #posture: Posture;
  #gatewayUrl: string | null;
  #enrollToken: string | null;
  #standing: Omit<GatewayStanding, 'enrollToken'> = { operator: null, trust: null, rejected: null };
  #relinkRequested = false;
  #policy: Policy;
  #manual: Manual;
  #state: AgentState = 'stopped';
  #since: number;
  #reason: StateReason | null = null;
  #decision: Decision | null = null;
  #reading: EnvironmentReading | null = null;
  #agent: Agent | null = null;
  #choice: ModelChoice | null = null;
  #engine: InferenceEngine | null = null;
  #error: { error: NightjarError; retryAt: number | null } | null = null;
  #preemption: Preemption | null = null;
  #drainCancel: AbortController | null = null;
  #reloadRequested = false;
  #unloadDue = false;
  #unloadTimer: TimerHandle | null = null;
  #pollTimer: TimerHandle | null = null;
  #retryTimer: TimerHandle | null = null;
  #unsubscribe: (() => void) | null = null;
  #loop: Promise<void> | null = null;
  #dirty = false;
  #reading$: Promise<void> | null = null;
  #readAgain = false;
  /** True while readings fail: logged when it starts and when it ends, not at every poll. */
  #readFailing = false;
  #stopping: Promise<void> | null = null;

  constructor(options: AgentRuntimeOptions) {
    this.#o = options;
    this.#clock = options.clock ?? systemClock;
    this.#log = options.logger ?? silentLogger;
    this.#blocker = options.powerSaveBlocker ?? new NoopPowerSaveBlocker();
    this.#platform = options.platform ?? detectPlatform();
    this.#posture = options.posture ?? unattestedPosture(AGENT_VERSION);
    this.#gatewayUrl = options.gatewayUrl;
    this.#enrollToken = options.enrollToken ?? null;
    this.#policy = options.policy ?? DEFAULT_POLICY;
    this.#manual = options.manual ?? { mode: 'auto', until: null };
    this.#since = this.#clock.now();
  }

  // ---- events -------------------------------------------------------------------------------

  /** Subscribes to an event; returns the unsubscribe. */
  on<K extends keyof AgentRuntimeEvents>(event: K, listener: Listener<AgentRuntimeEvents[K]>): () => void {
    let set = this.#listeners.get(event);
    if (!set) this.#listeners.set(event, (set = new Set()));
    set.add(listener as Listener<never[]>);
    return () => set.delete(listener as Listener<never[]>);
  }

  #emit<K extends keyof AgentRuntimeEvents>(event: K, ...args: AgentRuntimeEvents[K]): void {
    for (const l of this.#listeners.get(event) ?? []) {
      try {
        (l as Listener<AgentRuntimeEvents[K]>)(...args);
      } catch (err) {
        this.#log.error('runtime event listener failed', { event, err: err instanceof Error ? err.message : String(err) });
      }
    }
  }

  // ---- what it is ---------------------------------------------------------------------------

  /** The agent's id. */
  get agentId(): string {
    return this.#o.identity.agentId;
  }

  /** The state. */
  get state(): AgentState {
    return this.#state;
  }

  /** Why it is in its state. */
  get reason(): StateReason | null {
    return this.#reason;
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

  /** Everything a dashboard shows. */
  status(): AgentStatusSnapshot {
    const agent = this.#agent;
    const model = agent?.model ?? this.#choice?.served ?? null;
    return {
      v: 1,
      agentId: this.agentId,
      state: this.#state,
      since: this.#since,
      reason: this.#reason,
      decision: this.#decision,
      manual: this.#manual,
      link: agent?.linkState ?? 'idle',
      gatewayUrl: this.#gatewayUrl,
      gateway: { enrollToken: this.#enrollToken !== null, ...this.#standing },
      model: model ? { id: model.id, sha256: model.sha256, synthetic: model.synthetic, loaded: this.#engine !== null } : null,
      totalSlots: this.#engine?.totalSlots ?? 0,
      freeSlots: agent?.freeSlots ?? 0,
      activeJobs: agent?.activeJobs ?? 0,
      jobsServed: agent?.jobsServed ?? 0,
      tokensPerSecond: agent?.tokensPerSecond ?? 0,
      ttftMs: agent?.ttftMs ?? 0,
      environment: this.#reading,
      security: { keyStore: this.#o.keyStore ?? 'keychain', platform: this.#platform, posture: this.#posture },
    };
  }

  /** The gateway's agent WebSocket URL; null while not linked. */
  get gatewayUrl(): string | null {
    return this.#gatewayUrl;
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
    if (this.#state !== 'stopped' || this.#stopping) return;
    this.#setState('waiting', null);
    this.#unsubscribe = this.#o.environment.subscribe?.(() => void this.#read()) ?? null;
    this.#schedulePoll();
    await this.#read();
  }

  /**
   * Stops: takes no more jobs, lets running ones finish for the policy's grace (then aborts
   * them), says goodbye ('quit'), unloads the model and releases the power-save blocker.
   */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      for (const t of [this.#pollTimer, this.#unloadTimer, this.#retryTimer]) if (t) this.#clock.clearTimeout(t);
      this.#pollTimer = this.#unloadTimer = this.#retryTimer = null;
      this.#unsubscribe?.();
      // The agent stops taking jobs now; a drain already under way in the loop ends with it.
      const stopping = this.#agent?.stop(this.#policy.graceMs);
      await this.#loop?.catch(() => undefined);
      await this.#reading$;
      await stopping;
      await this.#agent?.stop(this.#policy.graceMs);
      const engine = this.#engine;
      this.#engine = null;
      await engine?.dispose();
      this.#blocker.release();
      this.#setState('stopped', null);
      this.#log.info('agent runtime stopped', { agentId: this.agentId });
    })();
    return this.#stopping;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
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
    if (this.#state === 'serving') this.#stopAccepting('relink');
    this.#kick();
  }

  /**
   * The selected model changed: drain and unload the current one, then load the new choice when
   * the policy says serve. Clears an error.
   */
  reloadModel(): void {
    this.#reloadRequested = true;
    this.#error = null;
    if (this.#state === 'serving') this.#stopAccepting('model-change');
    this.#kick();
  }

  async #setManual(manual: Manual): Promise<void> {
    this.#manual = manual;
    this.#log.info('owner override', { mode: manual.mode, until: manual.until });
    try {
      await this.#o.onManualChange?.(manual);
    } catch (err) {
      this.#log.warn('could not save the override', { err: err instanceof Error ? err.message : String(err) });
    }
    this.#apply(true);
  }

  // ---- reading and deciding -----------------------------------------------------------------

  #schedulePoll(): void {
    this.#pollTimer = this.#clock.setTimeout(() => {
      this.#pollTimer = null;
      if (this.#stopping) return;
      void this.#read().finally(() => {
        if (!this.#stopping) this.#schedulePoll();
      });
    }, this.#o.pollMs ?? 2000);
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
          this.#emit('environment', this.#reading);
        } catch (err) {
          if (!this.#readFailing)
            this.#log.warn('could not read idle time, power or heat', { err: err instanceof Error ? err.message : String(err) });
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
    if (this.#stopping || this.#state === 'stopped') return;
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
      timeZone: this.#policy.timeZone ?? (this.#o.systemTimeZone ?? systemTimeZone)(),
      maxReadingAgeMs: this.#o.maxReadingAgeMs ?? Math.max(10_000, 3 * (this.#o.pollMs ?? 2000)),
    });
    const changed = decision.action !== this.#decision?.action || decision.reason !== this.#decision.reason;
    if (!changed && !force) return;
    if (changed) this.#log.info('policy decision', { action: decision.action, reason: decision.reason });
    this.#decision = decision;
    if (decision.action === 'serve') this.#drainCancel?.abort();
    else if (this.#state === 'serving') this.#stopAccepting(decision.reason);
    this.#kick();
  }

  /** Stops taking jobs now: synchronous, so no job starts after the decision. */
  #stopAccepting(reason: string): void {
    const agent = this.#agent;
    if (!agent) return;
    this.#preemption = {
      reason,
      detectedAt: this.#clock.now(),
      jobsAtDetection: agent.activeJobs,
      jobsAborted: 0,
      settledMs: 0,
      unloadedMs: null,
    };
    agent.setState('draining');
    this.#setState('draining', this.#decision && this.#decision.action !== 'serve' ? reasonOf(this.#decision) : null);
  }

  // ---- acting -------------------------------------------------------------------------------

  #kick(): void {
    this.#dirty = true;
    if (this.#loop) return;
    this.#loop = (async () => {
      try {
        while (this.#dirty && !this.#stopping) {
          this.#dirty = false;
          await this.#step();
        }
      } catch (err) {
        this.#log.error('agent runtime step failed', { err: err instanceof Error ? err.message : String(err) });
        if (!this.#stopping) await this.#fail(err).catch(() => undefined);
      } finally {
        this.#loop = null;
      }
    })();
  }

  async #step(): Promise<void> {
    const decision = this.#decision;
    if (!decision) return;
    if (this.#reloadRequested) {
      this.#reloadRequested = false;
      await this.#drainJobs();
      await this.#unload();
      this.#choice = null;
    }
    if (this.#relinkRequested) {
      this.#relinkRequested = false;
      await this.#drainJobs();
      const agent = this.#agent;
      this.#agent = null;
      this.#standing = { operator: null, trust: null, rejected: null };
      if (agent) await agent.stop(0);
      this.#emit('link', 'idle');
    }
    if (decision.action === 'off' && decision.reason === 'paused') return this.#standDown(decision);
    if (this.#error) {
      if (this.#error.retryAt !== null && this.#clock.now() >= this.#error.retryAt) this.#error = null;
      else return this.#holdError();
    }
    if (decision.action === 'serve') return this.#serve();
    return this.#standDown(decision);
  }

  /** Makes sure there is a model choice and an Agent for it; false (after failing) if not. */
  async #ensureAgent(): Promise<Agent | null> {
    const gatewayUrl = this.#gatewayUrl;
    if (gatewayUrl === null) {
      await this.#fail(new NightjarError('NJ_NOT_LINKED', 'This machine is not linked to a gateway yet.'));
      return null;
    }
    if (!this.#choice) {
      let choice: ModelChoice | null;
      try {
        choice = await this.#o.model();
      } catch (err) {
        await this.#fail(err);
        return null;
      }
      if (!choice) {
        await this.#fail(new NightjarError('NJ_MODEL_NOT_INSTALLED', 'No model is selected for this agent.'));
        return null;
      }
      if (this.#stopping) return null;
      this.#choice = choice;
      if (this.#agent) await this.#agent.setEngine(null, choice.served);
    }
    if (this.#stopping) return null;
    this.#agent ??= await Agent.create({
      gatewayUrl,
      identity: this.#o.identity,
      model: this.#choice.served,
      // After a relink the model may already be loaded: the new link serves it at once.
      ...(this.#engine ? { engine: this.#engine } : {}),
      clock: this.#clock,
      logger: this.#log,
      platform: this.#platform,
      posture: this.#posture,
      ...(this.#o.backoff ? { backoff: this.#o.backoff } : {}),
      ...(this.#o.random ? { random: this.#o.random } : {}),
      ...(this.#enrollToken ? { enrollToken: this.#enrollToken } : {}),
      ...(this.#o.boxKeyRotationMs ? { boxKeyRotationMs: this.#o.boxKeyRotationMs } : {}),
      ...(this.#o.previousBoxKeyGraceMs ? { previousBoxKeyGraceMs: this.#o.previousBoxKeyGraceMs } : {}),
      onReceipt: async (receipt) => {
        await this.#o.onReceipt?.(receipt);
        this.#emit('receipt', receipt);
      },
      onJobsChange: () => this.#emit('jobs'),
      onLinkState: (state) => this.#emit('link', state),
      onWelcome: (welcome) => this.#setStanding({ operator: welcome.operator, trust: welcome.trust, rejected: null }),
      onReject: (rejected) => {
        this.#setStanding({ ...this.#standing, rejected });
        if (TERMINAL_REJECTS.has(rejected.code) && isErrorCode(rejected.code)) {
          this.#error = { error: new NightjarError(rejected.code, `the gateway refused this agent: ${rejected.message}`), retryAt: null };
          this.#log.error('agent cannot serve', { code: rejected.code, reason: rejected.message });
          this.#apply(true);
        }
      },
      thermal: () => this.#reading?.thermal ?? 'nominal',
      memoryPressure: () => this.#reading?.memoryPressure ?? 'normal',
    });
    if (this.#stopping) return null;
    const link = this.#agent.linkState;
    if (link === 'idle' || link === 'stopped') this.#agent.connect();
    return this.#agent;
  }

  async #serve(): Promise<void> {
    const agent = await this.#ensureAgent();
    if (!agent || !this.#choice) return;
    this.#cancelUnload();
    if (!this.#engine) {
      this.#setState('loading', null);
      agent.setState('loading');
      let engine: InferenceEngine;
      try {
        engine = await this.#choice.load();
      } catch (err) {
        await this.#fail(err);
        return;
      }
      if (this.#stopping) {
        await engine.dispose();
        return;
      }
      this.#engine = engine;
      await agent.setEngine(engine, this.#choice.served);
    }
    // The decision may have changed while the model loaded; the loop comes round again then.
    if (this.#decision?.action !== 'serve') return;
    this.#preemption = null;
    this.#blocker.acquire();
    agent.setState('serving');
    this.#setState('serving', reasonOf(this.#decision));
  }

  /** Drains running jobs (within the grace) and reports the preemption. False if called off. */
  async #drainJobs(): Promise<boolean> {
    const agent = this.#agent;
    if (!agent || (this.#state !== 'serving' && this.#state !== 'draining')) return true;
    if (this.#state === 'serving') this.#stopAccepting(this.#decision?.reason ?? 'model-change');
    const cancel = new AbortController();
    this.#drainCancel = cancel;
    const result = await agent.drain(this.#policy.graceMs, cancel.signal);
    if (this.#drainCancel === cancel) this.#drainCancel = null;
    if (result.outcome === 'resumed' && !this.#reloadRequested && this.#decision?.action === 'serve') return false;
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
      this.#emit('preempted', { ...p });
    }
    this.#blocker.release();
    return true;
  }

  async #standDown(decision: Extract<Decision, { action: 'wait' | 'off' }>): Promise<void> {
    if (!(await this.#drainJobs())) return;
    this.#blocker.release();
    if (decision.action === 'off') {
      const agent = this.#agent;
      const link = agent?.linkState;
      if (agent && link !== 'idle' && link !== 'stopped') await agent.disconnect(decision.reason === 'paused' ? 'paused' : 'schedule');
      agent?.setState(decision.reason === 'paused' ? 'paused' : 'waiting');
      this.#setState(decision.reason === 'paused' ? 'paused' : 'waiting', reasonOf(decision));
    } else {
      const agent = await this.#ensureAgent();
      if (!agent) return;
      agent.setState('waiting');
      this.#setState('waiting', reasonOf(decision));
    }
    if (this.#engine) {
      if (this.#unloadDue) await this.#unload();
      else this.#scheduleUnload();
    }
  }

  #scheduleUnload(): void {
    if (this.#unloadTimer || this.#unloadDue || this.#stopping) return;
    this.#unloadTimer = this.#clock.setTimeout(() => {
      this.#unloadTimer = null;
      this.#unloadDue = true;
      this.#kick();
    }, this.#policy.unloadDelayMs);
  }

  #cancelUnload(): void {
    if (this.#unloadTimer) this.#clock.clearTimeout(this.#unloadTimer);
    this.#unloadTimer = null;
    this.#unloadDue = false;
  }

  /** Unloads the model now: memory goes back to the owner. */
  async #unload(): Promise<void> {
    this.#cancelUnload();
    const engine = this.#engine;
    if (!engine) return;
    this.#engine = null;
    await this.#agent?.setEngine(null);
    await engine.dispose();
    const p = this.#preemption;
    if (p && p.unloadedMs === null) {
      p.unloadedMs = this.#clock.now() - p.detectedAt;
      this.#emit('preempted', { ...p });
    }
    this.#log.info('model unloaded', { afterMs: p?.unloadedMs ?? null });
  }

  /** Enters (or stays in) the error state: no jobs, no link, no model in memory. */
  async #fail(err: unknown): Promise<void> {
    const error =
      err instanceof NightjarError
        ? err
        : new NightjarError('NJ_INTERNAL', err instanceof Error ? err.message : String(err), { cause: err });
    const retryAt = RETRYABLE.has(error.code) ? this.#clock.now() + (this.#o.errorRetryMs ?? 300_000) : null;
    this.#error = { error, retryAt };
    this.#log.error('agent cannot serve', { code: error.code, reason: error.message, retryAt });
    if (retryAt !== null && !this.#stopping) {
      if (this.#retryTimer) this.#clock.clearTimeout(this.#retryTimer);
      this.#retryTimer = this.#clock.setTimeout(() => {
        this.#retryTimer = null;
        this.#apply(true);
      }, retryAt - this.#clock.now());
    }
    await this.#holdError();
  }

  async #holdError(): Promise<void> {
    const error = this.#error?.error;
    if (!error) return;
    if (!(await this.#drainJobs())) return;
    this.#blocker.release();
    const agent = this.#agent;
    const link = agent?.linkState;
    if (agent && link !== 'idle' && link !== 'stopped') {
      agent.setState('error');
      await agent.disconnect('error');
    }
    await this.#unload();
    this.#setState('error', errorReason(error));
  }

  #setStanding(standing: Omit<GatewayStanding, 'enrollToken'>): void {
    this.#standing = standing;
    this.#emit('link', this.#agent?.linkState ?? 'idle');
  }

  #setState(state: AgentState, reason: StateReason | null): void {
    if (state === this.#state && reason?.code === this.#reason?.code && reason?.message === this.#reason?.message) return;
    if (state !== this.#state) {
      this.#since = this.#clock.now();
      this.#log.info('agent state', { state, reason: reason?.code ?? null });
    }
    this.#state = state;
    this.#reason = reason;
    this.#emit('state', { state, since: this.#since, reason, decision: this.#decision });
  }
}
