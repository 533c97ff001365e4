/**
 * Turns an installed model into what the runtime loads: before any byte reaches llama.cpp, the
 * file's sha256 is checked against its manifest and the memory it will need is compared with what
 * is free.
 */
import { NightjarError, silentLogger, withDefaults, type InstalledModel, type Logger } from '../../../shared/index.js';
import { estimateEngineMemory, type EngineMemoryEstimate, type EngineMemoryEstimateOptions } from '../engine/estimate.js';
import { loadEngine as realLoadEngine, type EngineOptions } from '../engine/engine.js';
import type { InferenceEngine } from '../engine/types.js';
import type { ModelChoice } from '../runtime/runtime.js';
import { checkMemoryFit, defaultMemoryProbe, type MemoryProbe } from './memory.js';
import type { ModelStore } from './store.js';

/** Options of {@link modelChoice}. */
export interface ModelChoiceOptions {
  /** Where the model is installed. Required. */
  store: ModelStore;
  /** The installed model. Required. */
  model: InstalledModel;
  /** Parallel sequences. Defaults to 4. */
  slots?: number;
  /** Context per sequence; null for min(the model's, 4096). Defaults to null. */
  contextLength?: number | null;
  /** CPU threads; null for the engine's default. Defaults to null. */
  threads?: number | null;
  /** Load a model that fits only with swap. Defaults to false. */
  allowSwap?: boolean;
  /** Reads free memory. Defaults to the platform's probe. */
  memoryProbe?: MemoryProbe;
  /** Estimates the memory the engine will take. Defaults to node-llama-cpp's GgufInsights. */
  estimate?: (options: EngineMemoryEstimateOptions) => Promise<EngineMemoryEstimate>;
  /** Loads the engine. Defaults to the node-llama-cpp engine. */
  loadEngine?: (options: EngineOptions) => Promise<InferenceEngine>;
  /** Defaults to a silent logger. */
  logger?: Logger;
}

type Defaulted = 'slots' | 'contextLength' | 'threads' | 'allowSwap' | 'estimate' | 'loadEngine' | 'logger';

const CHOICE_DEFAULTS: Required<Pick<ModelChoiceOptions, Defaulted>> = {
  slots: 4,
  contextLength: null,
  threads: null,
  allowSwap: false,
  estimate: estimateEngineMemory,
  loadEngine: realLoadEngine,
  logger: silentLogger,
};

/** The context length each sequence gets for a model, as the engine will choose it. */
export function plannedContextLength(model: InstalledModel, configured: number | null | undefined): number {
  return configured ?? Math.min(model.contextLength ?? 4096, 4096);
}

/** A model choice for the runtime: verify the hash, check the memory, load. */
export function modelChoice(options: ModelChoiceOptions): ModelChoice {
  const o = withDefaults(CHOICE_DEFAULTS, options);
  const { store, model, slots, contextLength, logger: log } = o;
  const memoryProbe = o.memoryProbe ?? defaultMemoryProbe();
  return {
    served: { id: model.id, sha256: model.sha256, synthetic: model.synthetic, contextLength: plannedContextLength(model, contextLength) },
    async load() {
      const file = store.pathOf(model);
      await store.verify(model);
      const estimate = await o.estimate({ modelPath: file, slots, contextLength });
      const info = await memoryProbe();
      const fit = checkMemoryFit({ requiredBytes: estimate.totalBytes, minMemoryBytes: model.minMemoryBytes, info });
      log.info('memory check', {
        model: model.id,
        verdict: fit.verdict,
        requiredBytes: fit.requiredBytes,
        availableBytes: info.availableBytes,
        swapFreeBytes: info.swapFreeBytes,
      });
      if (fit.verdict === 'does-not-fit') throw new NightjarError('NJ_MODEL_DOES_NOT_FIT', `${model.id}: ${fit.message}`);
      if (fit.verdict === 'needs-swap' && !o.allowSwap) {
        throw new NightjarError(
          'NJ_MODEL_DOES_NOT_FIT',
          `${model.id}: ${fit.message} Set model.allowSwap in config.json to load it anyway.`,
        );
      }
      return o.loadEngine({
        modelPath: file,
        slots,
        logger: log,
        contextLength: contextLength ?? undefined,
        threads: o.threads ?? undefined,
      });
    },
  };
}
