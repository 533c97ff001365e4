/**
 * The whole provider agent, put together from its parts: config, models directory, receipt log,
 * runtime, and the control methods (served on loopback by a headless agent; the menu-bar app
 * wires the same handlers to its IPC bridge instead).
 */
import {
  CONTROL_API_VERSION,
  NightjarError,
  Resource,
  policySchema,
  silentLogger,
  systemClock,
  withDefaults,
  type BackoffOptions,
  type CatalogEntry,
  type Clock,
  type ControlEvent,
  type DownloadProgress,
  type Emitter,
  type Event,
  type IdentityKeyPair,
  type LinkInput,
  type Logger,
  type Manual,
  type ModelsSnapshot,
  type Platform,
  type Posture,
  type EnclaveSigner,
  loggedEmitter,
} from '../../shared/index.js';
import { saveConfig, saveStateFile, type AgentConfig, loadStateFile } from './config/config.js';
import type { AgentPaths } from './config/paths.js';
import { startControlServer, type ControlHandlers, type ControlServer } from './control/control-server.js';
import type { EngineMemoryEstimate, EngineMemoryEstimateOptions } from './engine/estimate.js';
import type { EngineOptions } from './engine/engine.js';
import type { InferenceEngine } from './engine/types.js';
import { defaultEnvironmentSource, type EnvironmentSource } from './environment/environment.js';
import { defaultPowerSaveBlocker, type PowerSaveBlocker } from './environment/power-save.js';
import { AGENT_VERSION } from './agent.js';
import { gatewaySocketUrl } from './gateway-link.js';
import { probeGateway } from './gateway-probe.js';
import { BUILT_IN_CATALOG, loadCatalogFile, mergeCatalogs } from './models/catalog.js';
import { modelChoice } from './models/choice.js';
import { defaultMemoryProbe, type MemoryProbe } from './models/memory.js';
import { defaultNativeAddon, type NativeAddon } from './native/native.js';
import { detectPlatform, nativeEnclaveSigner, nativePosture } from './platform.js';
import { ModelStore, type PullOptions } from './models/store.js';
import { systemTimeZone } from './policy/schedule.js';
import { SignedReceiptLog, summarizeEarnings } from './records/receipt-log.js';
import { AgentRuntime, type ModelChoice } from './runtime/runtime.js';

/** Options of {@link AgentService}. */
export interface AgentServiceOptions {
  /** Where the agent's files are. Required. */
  paths: AgentPaths;
  /** The loaded config. Required. */
  config: AgentConfig;
  /**
   * The gateway's agent WebSocket URL; null if this machine is not linked yet (the `link`
   * control method links it). Required.
   */
  gatewayUrl: string | null;
  /** The identity, from the keychain (or the opted-in key file). Required. */
  identity: IdentityKeyPair;
  /** Where the identity is kept, as status reports it. Defaults to config.keys.store. */
  keyStore?: 'keychain' | 'plaintext-file';
  /**
   * Checks that a gateway answers before the `link` method saves it; throws NightjarError
   * (NJ_GATEWAY_UNREACHABLE…) if not. Defaults to a hello/challenge probe with a 5 s timeout.
   */
  probeGateway?: (agentUrl: string) => Promise<void>;
  /**
   * Serve this model instead of the one config.json selects (`serve --model`): a choice built by
   * the caller. Defaults to the selected installed model.
   */
  model?: ModelChoice | null;
  /** Idle, power and heat. Defaults to the platform's source. */
  environment?: EnvironmentSource;
  /** Keeps the machine awake while serving. Defaults to caffeinate on macOS, nothing elsewhere. */
  powerSaveBlocker?: PowerSaveBlocker;
  /** Free memory. Defaults to the platform's probe. */
  memoryProbe?: MemoryProbe;
  /** Memory estimate of a model. Defaults to node-llama-cpp's. */
  estimate?: (options: EngineMemoryEstimateOptions) => Promise<EngineMemoryEstimate>;
  /** Loads engines. Defaults to the node-llama-cpp engine. */
  loadEngine?: (options: EngineOptions) => Promise<InferenceEngine>;
  /** For downloads. Defaults to the global fetch. */
  fetch?: typeof fetch;
  /** Serve the control API on loopback. Defaults to config.control.enabled. */
  control?: boolean;
  /** Serve the dashboard (the built renderer in this folder) on the control server too. Defaults to none. */
  dashboardDir?: string | null;
  /** Gateway reconnect timing. Defaults as GatewayLinkOptions.backoff says. */
  backoff?: BackoffOptions;
  /** How often the machine is read. Defaults to 2000 ms. */
  pollMs?: number;
  /**
   * The native addon, for the posture, the chip's name and (in the default environment source)
   * idle time and heat. Defaults to {@link defaultNativeAddon}: test-loaded and loaded on macOS;
   * elsewhere not loaded, every call answering unsupported.
   */
  native?: NativeAddon;
  /** Defaults to what the OS (and on a Mac the native addon) reports. */
  platform?: Platform;
  /**
   * Defaults to what the native addon can read ({@link nativePosture}: on a Mac it calls
   * PT_DENY_ATTACH); without the addon, or off macOS, the unattested posture (nulls and false).
   */
  posture?: Posture;
  /**
   * The Secure Enclave key that co-signs the bundle and answers challenges (used only while the
   * posture passes the agent's own check). Null for none. Defaults to {@link nativeEnclaveSigner}
   * of the addon: this app's enclave key on a Mac, none elsewhere.
   */
  enclave?: EnclaveSigner | null;
  /** Defaults to the system clock. */
  clock?: Clock;
  /** Defaults to a silent logger. */
  logger?: Logger;
}

type Defaulted = 'model' | 'dashboardDir' | 'clock' | 'logger';

const SERVICE_DEFAULTS: Required<Pick<AgentServiceOptions, Defaulted>> = {
  model: null,
  dashboardDir: null,
  clock: systemClock,
  logger: silentLogger,
};

type ResolvedServiceOptions = typeof SERVICE_DEFAULTS &
  AgentServiceOptions & {
    keyStore: 'keychain' | 'plaintext-file';
    control: boolean;
    platform: Platform;
    posture: Posture;
    native: NativeAddon;
    memoryProbe: MemoryProbe;
    probeGateway: (agentUrl: string) => Promise<void>;
  };

function resolve(options: AgentServiceOptions, native: NativeAddon): ResolvedServiceOptions {
  const o = withDefaults(SERVICE_DEFAULTS, options);
  const platform = options.platform ?? detectPlatform(native);
  const posture = options.posture ?? nativePosture(native, AGENT_VERSION);
  return {
    ...o,
    enclave: options.enclave === undefined ? nativeEnclaveSigner(native) : options.enclave,
    native,
    keyStore: options.keyStore ?? options.config.keys.store,
    control: options.control ?? options.config.control.enabled,
    platform,
    posture,
    memoryProbe: options.memoryProbe ?? defaultMemoryProbe(),
    probeGateway:
      options.probeGateway ??
      (async (url: string) => {
        await probeGateway({
          url,
          model: { id: 'link-probe', sha256: '0'.repeat(64), synthetic: true, contextLength: 4096 },
          platform,
          posture,
        });
      }),
  };
}

/** A download under way: its last progress. */
interface DownloadRecord {
  progress: DownloadProgress;
}

/** A provider agent with its files, records and control methods. */
export class AgentService extends Resource {
  readonly runtime: AgentRuntime;
  readonly store: ModelStore;
  readonly receipts: SignedReceiptLog;
  /** The loopback control server, when enabled. */
  control: ControlServer | null = null;
  /** The control methods (served over HTTP here, over IPC in the app). */
  readonly handlers: ControlHandlers;
  readonly #o: ResolvedServiceOptions;
  readonly #log: Logger;
  readonly #catalog: CatalogEntry[];
  readonly #events: Emitter<ControlEvent>;
  readonly #downloads = new Map<string, DownloadRecord>();
  #config: AgentConfig;

  private constructor(o: ResolvedServiceOptions, receipts: SignedReceiptLog, catalog: CatalogEntry[], manual: Manual) {
    super();
    this.#o = o;
    const log = (this.#log = o.logger);
    this.#config = o.config;
    this.#catalog = catalog;
    const d = this.disposables;
    this.receipts = d.add(receipts);
    this.#events = d.add(loggedEmitter<ControlEvent>(log, 'control event'));
    this.onEvent = this.#events.event;
    this.store = d.add(new ModelStore({ dir: o.paths.modelsDir, clock: o.clock, logger: log }));
    this.runtime = d.add(
      new AgentRuntime({
        gatewayUrl: o.gatewayUrl,
        identity: o.identity,
        keyStore: o.keyStore,
        environment: o.environment ?? defaultEnvironmentSource(process.platform, o.native),
        model: () => this.#choice(),
        policy: o.config.policy,
        manual,
        saveManual: (m) => saveStateFile(o.paths.stateFile, { manual: m }),
        recordReceipt: (r) => receipts.append(r),
        receiptDelivery: receipts,
        powerSaveBlocker: o.powerSaveBlocker ?? defaultPowerSaveBlocker(process.platform, log),
        enrollToken: o.config.gateway.enrollToken,
        boxKeyRotationMs: o.config.boxKeyRotationHours * 3600_000,
        backoff: o.backoff,
        pollMs: o.pollMs,
        platform: o.platform,
        posture: o.posture,
        ...(o.enclave ? { enclave: o.enclave } : {}),
        clock: o.clock,
        logger: log,
      }),
    );
    this.#forwardEvents();
    this.handlers = this.#handlers();
  }

  /** Every control event: what the event stream and the app's IPC bridge carry. */
  readonly onEvent: Event<ControlEvent>;

  #forwardEvents(): void {
    const r = this.runtime;
    const emit = (e: ControlEvent): void => this.#events.fire(e);
    r.onState((s) => emit({ type: 'state', state: s.state, since: s.since, reason: s.reason, decision: s.decision }));
    r.onLink((link) => emit({ type: 'link', link }));
    r.onJobs(() => emit(this.#jobsEvent()));
    r.onPreempted((preemption) => emit({ type: 'preempted', preemption }));
    r.onEnvironment((reading) => emit({ type: 'environment', reading }));
    r.onReceipt(({ receipt }) =>
      emit({
        type: 'receipt',
        jobId: receipt.jobId,
        model: receipt.model,
        promptTokens: receipt.promptTokens,
        completionTokens: receipt.completionTokens,
        finishReason: receipt.finishReason,
        endedAt: receipt.endedAt,
      }),
    );
  }

  /** Opens the records, starts the runtime and (if enabled) the control server. */
  static async start(options: AgentServiceOptions): Promise<AgentService> {
    const o = resolve(options, options.native ?? (await defaultNativeAddon(process.platform, { logger: options.logger })));
    const extra = o.config.catalogFile ? await loadCatalogFile(o.config.catalogFile) : null;
    const catalog = mergeCatalogs(BUILT_IN_CATALOG, extra);
    const receipts = await SignedReceiptLog.open({ file: o.paths.receiptsFile, identityKey: o.identity.publicKey });
    const { manual } = await loadStateFile(o.paths.stateFile);
    const service = new AgentService(o, receipts, catalog, manual);
    try {
      if (o.control) {
        service.control = service.disposables.add(
          await startControlServer({
            handlers: service.handlers,
            events: service.onEvent,
            initialEvents: () => {
              const s = service.runtime.status();
              return [{ type: 'state', state: s.state, since: s.since, reason: s.reason, decision: s.decision }, service.#jobsEvent()];
            },
            port: o.config.control.port,
            controlFile: o.paths.controlFile,
            dashboardDir: o.dashboardDir,
            clock: o.clock,
            logger: o.logger,
          }),
        );
      }
      await service.runtime.start();
    } catch (err) {
      await service.dispose();
      throw err;
    }
    return service;
  }

  /** The config in force. */
  get config(): AgentConfig {
    return this.#config;
  }

  /** The catalog: built-in entries and the config's catalog file. */
  get catalog(): readonly CatalogEntry[] {
    return this.#catalog;
  }

  #jobsEvent(): ControlEvent {
    const s = this.runtime.status();
    return {
      type: 'jobs',
      activeJobs: s.activeJobs,
      jobsServed: s.jobsServed,
      freeSlots: s.freeSlots,
      totalSlots: s.totalSlots,
      tokensPerSecond: s.tokensPerSecond,
      ttftMs: s.ttftMs,
    };
  }

  /** The model the runtime should serve now. */
  async #choice(): Promise<ModelChoice | null> {
    if (this.#o.model) return this.#o.model;
    const id = this.#config.model.selected;
    if (!id) return null;
    const model = await this.store.get(id);
    if (!model) throw new NightjarError('NJ_MODEL_NOT_INSTALLED', `The selected model ${id} is not installed on this machine.`);
    const m = this.#config.model;
    return modelChoice({
      store: this.store,
      model,
      slots: m.slots,
      contextLength: m.contextLength,
      threads: m.threads,
      allowSwap: m.allowSwap,
      logger: this.#log,
      memoryProbe: this.#o.memoryProbe,
      estimate: this.#o.estimate,
      loadEngine: this.#o.loadEngine,
    });
  }

  async #saveConfig(next: AgentConfig): Promise<void> {
    await saveConfig(this.#o.paths.configFile, next);
    this.#config = next;
  }

  async #models(): Promise<ModelsSnapshot> {
    return {
      v: CONTROL_API_VERSION,
      selected: this.#o.model?.served.id ?? this.#config.model.selected,
      installed: await this.store.list(),
      catalog: [...this.#catalog],
      downloads: [...this.#downloads.values()].map((d) => d.progress),
      memory: await this.#o.memoryProbe().then(
        (m) => ({ totalBytes: m.totalBytes, availableBytes: m.availableBytes }),
        () => null,
      ),
    };
  }

  /**
   * Links this machine to the gateway at `gatewayUrl` (http(s):// or ws(s)://): checks it answers
   * as a Nightjar gateway, saves it (and the enrollment token) to config.json, and reconnects.
   */
  async link({ gatewayUrl, enrollToken }: LinkInput): Promise<void> {
    const url = gatewaySocketUrl(gatewayUrl);
    await this.#o.probeGateway(url);
    const token = enrollToken ?? null;
    await this.#saveConfig({ ...this.#config, gateway: { url: gatewayUrl, enrollToken: token } });
    this.#log.info('linked to a gateway', { url, enrollToken: token !== null });
    this.runtime.setGateway(url, token);
  }

  /**
   * Downloads a catalog model in the background; progress goes out as `download` events. A second
   * call for a model already downloading does nothing. Disposing the service (its model store)
   * aborts it; the partial file stays for a resume.
   */
  download(id: string, options: Pick<PullOptions, 'sha256'> = {}): void {
    if (this.#downloads.has(id)) return;
    const entry = this.#catalog.find((m) => m.id === id);
    if (!entry) throw new NightjarError('NJ_MODEL_NOT_INSTALLED', `${id} is not in the catalog.`);
    if (!entry.sha256 && !options.sha256) {
      throw new NightjarError('NJ_BAD_REQUEST', `The catalog has no sha256 for ${id}; give the file's sha256 with the download.`);
    }
    const record: DownloadRecord = {
      progress: {
        modelId: id,
        phase: 'starting',
        receivedBytes: 0,
        totalBytes: entry.bytes,
        resumedFromBytes: 0,
        bytesPerSecond: 0,
        error: null,
      },
    };
    this.#downloads.set(id, record);
    this.store
      .pull(entry, {
        sha256: options.sha256,
        fetch: this.#o.fetch,
        onProgress: (p) => {
          record.progress = p;
          // 'done' goes out once the model is installed (manifest written, listed), so a UI that
          // selects the model when it hears 'done' finds it.
          if (p.phase !== 'done') this.#events.fire({ type: 'download', progress: p });
        },
      })
      .then(
        () => {
          this.#downloads.delete(id);
          this.#events.fire({ type: 'download', progress: { ...record.progress, phase: 'done' } });
        },
        (err: unknown) => {
          if (!this.isDisposed)
            this.#log.warn('download failed', { model: id, code: err instanceof NightjarError ? err.code : 'NJ_INTERNAL' });
        },
      )
      .finally(() => this.#downloads.delete(id));
  }

  #handlers(): ControlHandlers {
    const status = () => this.runtime.status();
    return {
      status,
      pause: async ({ until }) => {
        await this.runtime.pause(until ?? null);
        return status();
      },
      resume: async () => {
        await this.runtime.resume();
        return status();
      },
      serveNow: async ({ until }) => {
        await this.runtime.serveNow(until ?? null);
        return status();
      },
      getPolicy: () => this.runtime.policy,
      setPolicy: async (patch) => {
        const policy = policySchema.parse({ ...this.runtime.policy, ...patch });
        await this.#saveConfig({ ...this.#config, policy });
        this.runtime.setPolicy(policy);
        return policy;
      },
      listModels: () => this.#models(),
      downloadModel: async ({ id, sha256 }) => {
        this.download(id, { sha256 });
        return this.#models();
      },
      selectModel: async ({ id }) => {
        await this.store.require(id);
        if (this.#o.model)
          throw new NightjarError('NJ_BAD_REQUEST', 'This agent was started with --model; restart it without to select models.');
        await this.#saveConfig({ ...this.#config, model: { ...this.#config.model, selected: id } });
        this.runtime.reloadModel();
        return this.#models();
      },
      removeModel: async ({ id }) => {
        const selected = this.#o.model?.served.id ?? this.#config.model.selected;
        if (id === selected) throw new NightjarError('NJ_BAD_REQUEST', `${id} is the model this agent serves; select another one first.`);
        if (!(await this.store.remove(id)))
          throw new NightjarError('NJ_MODEL_NOT_INSTALLED', `The model ${id} is not installed on this machine.`);
        return this.#models();
      },
      earnings: ({ days }) =>
        summarizeEarnings({
          receipts: this.receipts.receipts,
          rejectedLines: this.receipts.rejectedLines,
          timeZone: this.runtime.policy.timeZone ?? systemTimeZone(),
          prices: this.#config.earnings.prices,
          operatorShare: this.#config.earnings.operatorShare,
          days,
          now: this.#o.clock.now(),
        }),
      receipts: ({ limit, before }) => {
        const all = this.receipts.receipts;
        const newest = [...all].reverse().filter((r) => before === undefined || r.receipt.endedAt < before);
        return { v: CONTROL_API_VERSION, receipts: newest.slice(0, limit ?? 50), total: all.length };
      },
      link: async (input) => {
        await this.link(input);
        return status();
      },
    };
  }

  /**
   * Stops everything: the downloads (their partial files kept), the runtime (draining jobs within
   * the policy's grace), the control server (its file removed), the receipt log.
   */
  protected override async onDispose(): Promise<void> {
    // Downloads first, then the runtime: the rest goes in the store's order (last added first).
    await this.store.dispose();
    await this.runtime.dispose();
  }
}
