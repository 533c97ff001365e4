/**
 * A harness of cheating agents that speak the real protocol (issue 13, "Must show"): each is the
 * real Agent (src/main/agent/agent.ts) with its real node-llama-cpp engine on a synthetic model,
 * wrapped where the cheat needs it (InferenceEngine, src/main/agent/engine/types.ts). The gateway,
 * the client and the auditor see exactly what such an agent would send: sealed chunks, a receipt
 * signed by its identity key, heartbeats with the speed it claims.
 *
 * The claimed model is the `mini-q8_0` synthetic file (128 wide, Q8_0, 512 tokens, 361 k
 * parameters), catalogued at the gateway under {@link HARNESS_MODEL_ID}. The cheats:
 *
 * - `honest`: serves that file.
 * - `small-model`: serves `tiny` (64 wide, F32, 107 k parameters: the smaller model, though its F32
 *   file is a little larger than the Q8_0 one) while its bundle names the `mini-q8_0` file's
 *   sha256. Both tokenizers are byte-level, so its replies are well-formed text; only the claimed
 *   model's likelihood tells them apart.
 * - `random-output`: runs the real engine for its pace but sends random printable ASCII of the
 *   same length instead of each delta; its counts are honest for what it sent (one token per byte
 *   in this vocabulary).
 * - `inflated-counts`: a real reply with `usage.completionTokens + inflateBy` (16 by default: far
 *   below the gateway's claims bound, the padded chunk capacity plus 257), never above maxTokens. Synthetic greedy models
 *   never emit EOS, so jobs that should leave room to inflate must end on a stop sequence or be
 *   sampled; a reply cut at maxTokens cannot be inflated past maxTokens without the gateway's own
 *   bound catching it.
 * - `faked-speed`: a real reply; the engine reports `speedFactor` (25) × its tokens per second and
 *   ÷ 25 its time to first token, which the agent's heartbeats then claim.
 * - `dropped-tail`: generates at most half the tokens the request allows, and ends the reply with
 *   finish 'stop' and the count it really sent. Of the two readings this is the one the issue
 *   means by "drop the end of a reply": a dropped tail that still claims the full count is an
 *   inflated count (the `inflated-counts` cheat, caught by the countersignature); this one signs a
 *   receipt consistent with its text and saves half the decode, and only the claimed model's view
 *   of where a reply may end (the `tail-dropped` finding) can catch it.
 *
 * Nothing here imports vitest: bench/honesty.ts uses it too.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  Agent,
  loadEngine,
  writeSyntheticModel,
  type EngineModelInfo,
  type GenerateRequest,
  type GenerateResult,
  type InferenceEngine,
  type ServedModel,
  type SyntheticModelFile,
} from '../../src/main/agent/index.js';
import { Gateway, openSqliteStore, type GatewayOptions, type GatewayStore } from '../../src/gateway/index.js';
import { generateIdentity, systemClock, type ChatMessage, type IdentityKeyPair } from '../../src/shared/index.js';

/** The cheats of the harness, honest first. */
export const CHEATS = ['honest', 'small-model', 'random-output', 'inflated-counts', 'faked-speed', 'dropped-tail'] as const;

/** One agent's behaviour in the harness. */
export type CheatName = (typeof CHEATS)[number];

/** The model id every harness agent serves (the claimed file is `mini-q8_0`). */
export const HARNESS_MODEL_ID = 'audited-mini';

/** The two synthetic files of the harness: the claimed (larger) model and the smaller one a cheat serves instead. */
export interface HarnessModels {
  /** The folder they were written to. */
  readonly dir: string;
  /** `mini-q8_0`: the file the catalog lists and every bundle names. */
  readonly claimed: SyntheticModelFile;
  /** `tiny`: what the `small-model` cheat really runs. */
  readonly smaller: SyntheticModelFile;
  /** The ServedModel every harness agent's bundle names. */
  readonly served: ServedModel;
  /** The model file for a sha256 (the claimed one only), for a reply checker. */
  modelPath(sha256: string): string | null;
  /** Removes the folder. */
  remove(): Promise<void>;
}

/** Writes the harness's two synthetic models into a fresh folder under `parent` (made if missing). */
export async function writeHarnessModels(parent: string = os.tmpdir()): Promise<HarnessModels> {
  await mkdir(parent, { recursive: true });
  const dir = await mkdtemp(path.join(parent, 'nightjar-harness-'));
  const claimed = await writeSyntheticModel({ path: path.join(dir, 'mini-q8_0.gguf'), shape: 'mini-q8_0', seed: 0 });
  const smaller = await writeSyntheticModel({ path: path.join(dir, 'tiny.gguf'), shape: 'tiny', seed: 0 });
  return {
    dir,
    claimed,
    smaller,
    // Not marked synthetic: the catalog prices and routes it (a file's own flag decides nothing there).
    served: { id: HARNESS_MODEL_ID, sha256: claimed.sha256, synthetic: false, contextLength: 4096 },
    modelPath: (sha256) => (sha256 === claimed.sha256 ? claimed.path : null),
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}

/** mulberry32: a small seeded generator, uniform in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Options of {@link cheatingEngine}. */
export interface CheatingEngineOptions {
  /** Parallel sequences. Defaults to 1 (so two jobs at once spread over two agents). */
  slots?: number;
  /** CPU threads of the real engine. Defaults to 1 (the 2-core machines these run on). */
  threads?: number;
  /** Tokens `inflated-counts` adds to each receipt. Defaults to 16. */
  inflateBy?: number;
  /** How much faster `faked-speed` claims to be. Defaults to 25. */
  speedFactor?: number;
  /** Random source of `random-output`. Defaults to a seeded generator (seed 1). */
  random?: () => number;
  /**
   * Milliseconds between the tokens the agent streams (and the speed it reports is the paced one):
   * the synthetic model decodes far faster than a Mac serves a real one, too fast for the gateway
   * to time (it times decodes of 250 ms and more). Defaults to 0 (as fast as the engine goes).
   */
  paceMs?: number;
}

/** The defaults of {@link CheatingEngineOptions}. */
export const CHEATING_ENGINE_DEFAULTS = { slots: 1, threads: 1, inflateBy: 16, speedFactor: 25, paceMs: 0 } as const;

/** Random printable ASCII (0x20–0x7E) of `length` characters. */
function randomPrintable(length: number, random: () => number): string {
  let s = '';
  for (let i = 0; i < length; i++) s += String.fromCharCode(0x20 + Math.floor(random() * 95));
  return s;
}

/**
 * The real engine with one cheat applied to what it reports. Forwards everything else (slots,
 * prompt counts, dispose) to the engine it wraps.
 */
export class CheatingEngine implements InferenceEngine {
  readonly cheat: CheatName;
  /** Jobs this engine generated (for the bench: jobs the cheat served). */
  generated = 0;
  readonly #inner: InferenceEngine;
  readonly #o: Required<Omit<CheatingEngineOptions, 'slots' | 'threads'>>;

  constructor(cheat: CheatName, inner: InferenceEngine, options: CheatingEngineOptions = {}) {
    this.cheat = cheat;
    this.#inner = inner;
    this.#o = {
      inflateBy: options.inflateBy ?? CHEATING_ENGINE_DEFAULTS.inflateBy,
      speedFactor: options.speedFactor ?? CHEATING_ENGINE_DEFAULTS.speedFactor,
      paceMs: options.paceMs ?? CHEATING_ENGINE_DEFAULTS.paceMs,
      random: options.random ?? seededRandom(1),
    };
  }

  get model(): EngineModelInfo {
    return this.#inner.model;
  }
  get totalSlots(): number {
    return this.#inner.totalSlots;
  }
  get freeSlots(): number {
    return this.#inner.freeSlots;
  }

  countPromptTokens(messages: readonly ChatMessage[]): Promise<number> {
    return this.#inner.countPromptTokens(messages);
  }

  async generate(request: GenerateRequest): Promise<GenerateResult> {
    this.generated++;
    const paceMs = this.#o.paceMs;
    if (paceMs <= 0) return this.#cheated(request);
    // Each token is streamed paceMs after the one before (in order, while the engine runs on);
    // the reported speed is what was streamed, before any cheat scales it.
    const started = Date.now();
    let streamed = Promise.resolve();
    let tokens = 0;
    const paced = await this.#cheated(
      {
        ...request,
        onDelta: (delta) => {
          tokens++;
          streamed = streamed.then(async () => {
            await new Promise((r) => setTimeout(r, paceMs));
            request.onDelta?.(delta);
          });
        },
      },
      (inner) => ({ ...inner, tokensPerSecond: tokens / Math.max(0.001, (Date.now() - started) / 1000) }),
      () => streamed,
    );
    return paced;
  }

  /** The cheat's generation; `real` adjusts the inner engine's result first, `flush` runs after it (pacing). */
  async #cheated(
    request: GenerateRequest,
    real: (inner: GenerateResult) => GenerateResult = (r) => r,
    flush: () => Promise<void> = async () => undefined,
  ): Promise<GenerateResult> {
    const inner = async (r: GenerateRequest): Promise<GenerateResult> => {
      const result = await this.#inner.generate(r);
      await flush();
      return real(result);
    };
    switch (this.cheat) {
      case 'honest':
      case 'small-model':
        return inner(request);
      case 'random-output': {
        let text = '';
        const real = await inner({
          ...request,
          onDelta: (delta) => {
            const fake = randomPrintable(delta.length, this.#o.random);
            text += fake;
            request.onDelta?.(fake);
          },
        });
        return { ...real, text };
      }
      case 'inflated-counts': {
        const real = await inner(request);
        // Never above maxTokens: the gateway caps a claim there itself (src/gateway/claims.ts).
        const completionTokens = Math.min(request.sampling.maxTokens, real.usage.completionTokens + this.#o.inflateBy);
        return { ...real, usage: { ...real.usage, completionTokens } };
      }
      case 'faked-speed': {
        const real = await inner(request);
        return {
          ...real,
          tokensPerSecond: real.tokensPerSecond * this.#o.speedFactor,
          timeToFirstTokenMs: real.timeToFirstTokenMs / this.#o.speedFactor,
        };
      }
      case 'dropped-tail': {
        const half = Math.max(1, Math.ceil(request.sampling.maxTokens / 2));
        const real = await inner({ ...request, sampling: { ...request.sampling, maxTokens: half } });
        // A reply that ended by itself before half of maxTokens lost nothing: sent as it is.
        if (real.finishReason !== 'length' || half >= request.sampling.maxTokens) return real;
        return { ...real, finishReason: 'stop' };
      }
    }
  }

  dispose(): Promise<void> {
    return this.#inner.dispose();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }
}

/** Loads the real engine a cheat runs (the smaller file for `small-model`, else the claimed one) and wraps it. */
export async function cheatingEngine(
  cheat: CheatName,
  models: HarnessModels,
  options: CheatingEngineOptions = {},
): Promise<CheatingEngine> {
  const file = cheat === 'small-model' ? models.smaller : models.claimed;
  const inner = await loadEngine({
    modelPath: file.path,
    slots: options.slots ?? CHEATING_ENGINE_DEFAULTS.slots,
    threads: options.threads ?? CHEATING_ENGINE_DEFAULTS.threads,
    contextLength: 4096,
  });
  return new CheatingEngine(cheat, inner, options);
}

/** A harness agent: the real Agent on a (possibly cheating) engine. */
export interface HarnessAgent {
  readonly cheat: CheatName;
  readonly agent: Agent;
  readonly agentId: string;
  readonly engine: CheatingEngine;
  /** Stops the agent and disposes its engine. */
  dispose(): Promise<void>;
}

/** Options of {@link HonestyNetwork.startAgent}. */
export interface HarnessAgentOptions extends CheatingEngineOptions {
  /** Defaults to a fresh identity. */
  identity?: IdentityKeyPair;
}

/** A billed gateway on SQLite with the harness model catalogued and priced, and two funded keys. */
export interface HonestyNetwork {
  readonly gateway: Gateway;
  readonly store: GatewayStore;
  readonly models: HarnessModels;
  readonly operator: { id: string; token: string };
  /** An ordinary client's key. */
  readonly clientKey: { id: string; key: string };
  /** The auditor's key: an ordinary client key too (the gateway has no notion of an auditor). */
  readonly auditorKey: { id: string; key: string };
  /** Starts a harness agent bound to the operator and waits until the gateway lists it serving. */
  startAgent(cheat: CheatName, options?: HarnessAgentOptions): Promise<HarnessAgent>;
  /** Stops every agent started here, the gateway and the store, and removes the gateway's folder. */
  close(): Promise<void>;
}

/** Options of {@link startHonestyNetwork}. */
export interface HonestyNetworkOptions {
  /** The harness models (written once per file or run). Required. */
  models: HarnessModels;
  /** More gateway options (a checker, a clock, honesty settings). Defaults to none. */
  gateway?: GatewayOptions;
  /** Credits (micro-credits) on each key. Defaults to 1 000 credits. */
  funds?: bigint;
}

/** 1 credit per million prompt tokens, 2 per million completion tokens. */
export const HARNESS_PRICE = { promptPerMTok: 1_000_000n, completionPerMTok: 2_000_000n };

/** Starts a {@link HonestyNetwork} in a fresh temp folder. */
export async function startHonestyNetwork(options: HonestyNetworkOptions): Promise<HonestyNetwork> {
  const { models } = options;
  const dir = await mkdtemp(path.join(os.tmpdir(), 'nightjar-honesty-gw-'));
  const store = await openSqliteStore({ path: path.join(dir, 'gateway.db') });
  const now = Date.now();
  await store.catalog.addFile(
    HARNESS_MODEL_ID,
    { sha256: models.claimed.sha256, bytes: models.claimed.bytes, name: 'mini-q8_0.gguf', quantization: 'Q8_0', contextLength: 4096 },
    now,
  );
  await store.accounts.setPrice(HARNESS_MODEL_ID, HARNESS_PRICE, now);
  const operator = await store.accounts.createOperator({ name: 'Harness', now });
  const funds = options.funds ?? 1_000_000_000n;
  const clientKey = await store.accounts.createApiKey({ name: 'client', now });
  await store.ledger.topUp(clientKey.id, funds, now);
  const auditorKey = await store.accounts.createApiKey({ name: 'auditor', now });
  await store.ledger.topUp(auditorKey.id, funds, now);
  const gateway = await Gateway.start({ port: 0, store, ...options.gateway });
  const agents = new Set<HarnessAgent>();
  return {
    gateway,
    store,
    models,
    operator: { id: operator.id, token: operator.token },
    clientKey: { id: clientKey.id, key: clientKey.key },
    auditorKey: { id: auditorKey.id, key: auditorKey.key },
    async startAgent(cheat, agentOptions = {}) {
      const engine = await cheatingEngine(cheat, models, agentOptions);
      const enrollToken = (await store.accounts.createEnrollmentToken({ operatorId: operator.id, now: Date.now(), ttlMs: 3_600_000 }))
        .token;
      let agent: Agent;
      try {
        agent = await Agent.create({
          gatewayUrl: gateway.agentUrl,
          identity: agentOptions.identity ?? (await generateIdentity()),
          engine,
          model: models.served,
          enrollToken,
          backoff: { initialMs: 50, maxMs: 200 },
          stopGraceMs: 100,
        });
      } catch (error) {
        await engine.dispose();
        throw error;
      }
      const handle: HarnessAgent = {
        cheat,
        agent,
        agentId: agent.agentId,
        engine,
        async dispose() {
          agents.delete(handle);
          await agent.dispose();
          await engine.dispose();
        },
      };
      agents.add(handle);
      agent.start();
      await gateway.agentServing(agent.agentId, { timeoutMs: 10_000, clock: systemClock });
      return handle;
    },
    async close() {
      await Promise.all([...agents].map((a) => a.dispose()));
      await gateway.dispose();
      await store.dispose();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
