/**
 * Turns an installed model into what the runtime loads: before any byte reaches llama.cpp, the
 * file's sha256 is checked against its manifest and the memory it will need is compared with what
 * is free.
 */
import { NightjarError, silentLogger, type InstalledModel, type Logger } from '../../../shared/index.js';
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

/** The context length each sequence gets for a model, as the engine will choose it. */
export function plannedContextLength(model: InstalledModel, configured: number | null | undefined): number {
  return configured ?? Math.min(model.contextLength ?? 4096, 4096);
}

/** A model choice for the runtime: verify the hash, check the memory, load. */
export function modelChoice(options: ModelChoiceOptions): ModelChoice {
  const { store, model } = options;
  const log = options.logger ?? silentLogger;
  const slots = options.slots ?? 4;
  const contextLength = options.contextLength ?? null;
  return {
    served: { id: model.id, sha256: model.sha256, synthetic: model.synthetic, contextLength: plannedContextLength(model, contextLength) },
    async load() {
      const file = store.pathOf(model);
      await store.verify(model);
      const estimate = await (options.estimate ?? estimateEngineMemory)({ modelPath: file, slots, contextLength });
      const info = await (options.memoryProbe ?? defaultMemoryProbe())();
      const fit = checkMemoryFit({ requiredBytes: estimate.totalBytes, minMemoryBytes: model.minMemoryBytes, info });
      log.info('memory check', {
        model: model.id,
        verdict: fit.verdict,
        requiredBytes: fit.requiredBytes,
        availableBytes: info.availableBytes,
        swapFreeBytes: info.swapFreeBytes,
      });
      if (fit.verdict === 'does-not-fit') throw new NightjarError('NJ_MODEL_DOES_NOT_FIT', `${model.id}: ${fit.message}`);
      if (fit.verdict === 'needs-swap' && !options.allowSwap) {
        throw new NightjarError(
          'NJ_MODEL_DOES_NOT_FIT',
          `${model.id}: ${fit.message} Set model.allowSwap in config.json to load it anyway.`,
        );
      }
      return (options.loadEngine ?? realLoadEngine)({
        modelPath: file,
        slots,
        logger: log,
        ...(contextLength === null ? {} : { contextLength }),
        ...(options.threads ? { threads: options.threads } : {}),
      });
    },
  };
}
