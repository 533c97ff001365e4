/**
 * The whole provider agent, put together from its parts: config, models directory, receipt log,
 * runtime, and the control methods (served on loopback by a headless agent; the menu-bar app
 * wires the same handlers to its IPC bridge instead).
 */
import {
  CONTROL_API_VERSION,
  NightjarError,
  policySchema,
  silentLogger,
  systemClock,
  type CatalogEntry,
  type Clock,
  type ControlEvent,
  type DownloadProgress,
  type IdentityKeyPair,
  type LinkInput,
  type Logger,
  type ModelsSnapshot,
  type Platform,
  type Posture,
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
import { gatewaySocketUrl, type BackoffOptions } from './gateway-link.js';
import { probeGateway } from './gateway-probe.js';
import { BUILT_IN_CATALOG, loadCatalogFile, mergeCatalogs } from './models/catalog.js';
import { modelChoice } from './models/choice.js';
import { defaultMemoryProbe, type MemoryProbe } from './models/memory.js';
import { detectPlatform, unattestedPosture } from './platform.js';
import { ModelStore, type PullOptions } from './models/store.js';
import { systemTimeZone } from './policy/schedule.js';
import { ReceiptLog, summarizeEarnings } from './records/receipt-log.js';
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
  model?: ModelChoice;
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
  dashboardDir?: string;
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
  /** How often the machine is read. Defaults to 2000 ms. */
  pollMs?: number;
}

/** A provider agent with its files, records and control methods. */
export class AgentService implements AsyncDisposable {
  readonly runtime: AgentRuntime;
  readonly store: ModelStore;
  readonly receipts: ReceiptLog;
  /** The loopback control server, when enabled. */
  control: ControlServer | null = null;
  /** The control methods (served over HTTP here, over IPC in the app). */
  readonly handlers: ControlHandlers;
  readonly #o: AgentServiceOptions;
  readonly #log: Logger;
  readonly #catalog: CatalogEntry[];
  readonly #listeners = new Set<(event: ControlEvent) => void>();
  readonly #downloads = new Map<string, { progress: DownloadProgress; abort: AbortController; done: Promise<void> }>();
  #config: AgentConfig;
  #stopping: Promise<void> | null = null;

  private constructor(options: AgentServiceOptions, receipts: ReceiptLog, catalog: CatalogEntry[], manual: AgentRuntime['manual']) {
    this.#o = options;
    this.#log = options.logger ?? silentLogger;
    this.#config = options.config;
    this.#catalog = catalog;
    this.receipts = receipts;
    const clock = options.clock ?? systemClock;
    this.store = new ModelStore({ dir: options.paths.modelsDir, clock, logger: this.#log });
    this.runtime = new AgentRuntime({
      gatewayUrl: options.gatewayUrl,
      identity: options.identity,
      keyStore: options.keyStore ?? options.config.keys.store,
      environment: options.environment ?? defaultEnvironmentSource(),
      model: () => this.#choice(),
      policy: options.config.policy,
      manual,
      onManualChange: (m) => saveStateFile(options.paths.stateFile, { manual: m }),
      onReceipt: (r) => receipts.append(r),
      powerSaveBlocker: options.powerSaveBlocker ?? defaultPowerSaveBlocker(process.platform, this.#log),
      clock,
      logger: this.#log,
      boxKeyRotationMs: options.config.boxKeyRotationHours * 3600_000,
      ...(options.config.gateway.enrollToken ? { enrollToken: options.config.gateway.enrollToken } : {}),
      ...(options.platform ? { platform: options.platform } : {}),
      ...(options.posture ? { posture: options.posture } : {}),
      ...(options.backoff ? { backoff: options.backoff } : {}),
      ...(options.pollMs ? { pollMs: options.pollMs } : {}),
    });
    this.runtime.on('state', (s) => this.#emit({ type: 'state', ...s }));
    this.runtime.on('link', (link) => this.#emit({ type: 'link', link }));
    this.runtime.on('jobs', () => this.#emit(this.#jobsEvent()));
    this.runtime.on('preempted', (preemption) => this.#emit({ type: 'preempted', preemption }));
    this.runtime.on('environment', (reading) => this.#emit({ type: 'environment', reading }));
    this.runtime.on('receipt', ({ receipt: r }) =>
      this.#emit({
        type: 'receipt',
        jobId: r.jobId,
        model: r.model,
        promptTokens: r.promptTokens,
        completionTokens: r.completionTokens,
        finishReason: r.finishReason,
        endedAt: r.endedAt,
      }),
    );
    this.handlers = this.#handlers();
  }

  /** Opens the records, starts the runtime and (if enabled) the control server. */
  static async start(options: AgentServiceOptions): Promise<AgentService> {
    const extra = options.config.catalogFile ? await loadCatalogFile(options.config.catalogFile) : null;
    const catalog = mergeCatalogs(BUILT_IN_CATALOG, extra);
    const receipts = await ReceiptLog.open({ file: options.paths.receiptsFile, identityKey: options.identity.publicKey });
    const { manual } = await loadStateFile(options.paths.stateFile);
    const service = new AgentService(options, receipts, catalog, manual);
    try {
      if (options.control ?? options.config.control.enabled) {
        service.control = await startControlServer({
          handlers: service.handlers,
          subscribe: (send) => service.onEvent(send),
          initialEvents: () => {
            const s = service.runtime.status();
            return [{ type: 'state', state: s.state, since: s.since, reason: s.reason, decision: s.decision }, service.#jobsEvent()];
          },
          port: options.config.control.port,
          controlFile: options.paths.controlFile,
          logger: service.#log,
          ...(options.dashboardDir ? { dashboardDir: options.dashboardDir } : {}),
          now: () => (options.clock ?? systemClock).now(),
        });
      }
      await service.runtime.start();
    } catch (err) {
      await service.stop();
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

  /** Subscribes to the control events; returns the unsubscribe. */
  onEvent(listener: (event: ControlEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #emit(event: ControlEvent): void {
    for (const l of [...this.#listeners]) l(event);
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
      ...(this.#o.memoryProbe ? { memoryProbe: this.#o.memoryProbe } : {}),
      ...(this.#o.estimate ? { estimate: this.#o.estimate } : {}),
      ...(this.#o.loadEngine ? { loadEngine: this.#o.loadEngine } : {}),
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
      memory: await (this.#o.memoryProbe ?? defaultMemoryProbe())().then(
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
    const probe =
      this.#o.probeGateway ??
      (async (u: string) => {
        await probeGateway({
          url: u,
          model: { id: 'link-probe', sha256: '0'.repeat(64), synthetic: true, contextLength: 4096 },
          platform: this.#o.platform ?? detectPlatform(),
          posture: this.#o.posture ?? unattestedPosture(AGENT_VERSION),
        });
      });
    await probe(url);
    const token = enrollToken ?? null;
    await this.#saveConfig({ ...this.#config, gateway: { url: gatewayUrl, enrollToken: token } });
    this.#log.info('linked to a gateway', { url, enrollToken: token !== null });
    this.runtime.setGateway(url, token);
  }

  /**
   * Downloads a catalog model in the background; progress goes out as `download` events. A second
   * call for a model already downloading does nothing.
   */
  download(id: string, options: Pick<PullOptions, 'sha256'> = {}): void {
    if (this.#downloads.has(id)) return;
    const entry = this.#catalog.find((m) => m.id === id);
    if (!entry) throw new NightjarError('NJ_MODEL_NOT_INSTALLED', `${id} is not in the catalog.`);
    if (!entry.sha256 && !options.sha256) {
      throw new NightjarError('NJ_BAD_REQUEST', `The catalog has no sha256 for ${id}; give the file's sha256 with the download.`);
    }
    const abort = new AbortController();
    const record = {
      progress: {
        modelId: id,
        phase: 'starting',
        receivedBytes: 0,
        totalBytes: entry.bytes,
        resumedFromBytes: 0,
        bytesPerSecond: 0,
        error: null,
      } as DownloadProgress,
      abort,
      done: Promise.resolve(),
    };
    this.#downloads.set(id, record);
    record.done = this.store
      .pull(entry, {
        ...options,
        signal: abort.signal,
        ...(this.#o.fetch ? { fetch: this.#o.fetch } : {}),
        onProgress: (p) => {
          record.progress = p;
          // 'done' goes out once the model is installed (manifest written, listed), so a UI that
          // selects the model when it hears 'done' finds it.
          if (p.phase !== 'done') this.#emit({ type: 'download', progress: p });
        },
      })
      .then(
        () => {
          this.#downloads.delete(id);
          this.#emit({ type: 'download', progress: { ...record.progress, phase: 'done' } });
        },
        (err: unknown) => {
          if (!abort.signal.aborted)
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
        this.download(id, sha256 ? { sha256 } : {});
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
          ...(days === undefined ? {} : { days }),
          now: (this.#o.clock ?? systemClock).now(),
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

  /** Stops everything: downloads, the runtime (draining jobs), the control server, the log. */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      for (const d of this.#downloads.values()) d.abort.abort(new Error('the agent is stopping'));
      await Promise.all([...this.#downloads.values()].map((d) => d.done));
      await this.runtime.stop();
      await this.control?.close();
      await this.receipts.dispose();
      this.#listeners.clear();
    })();
    return this.#stopping;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}
