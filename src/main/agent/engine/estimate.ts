/**
 * How much memory a model will take once loaded, estimated by node-llama-cpp from the file's
 * metadata (GgufInsights, without loading the weights): the weights, plus the KV cache and compute
 * buffers of a context with one sequence per slot. The agent adds a 10% margin and compares the
 * sum with free memory before it loads anything (models/memory.ts).
 */
import { GgufInsights, readGgufFileInfo } from 'node-llama-cpp';
import { NightjarError } from '../../../shared/index.js';

/** What an estimate needs. */
export interface EngineMemoryEstimateOptions {
  /** The GGUF file. Required. */
  modelPath: string;
  /** Parallel sequences, as the engine will create them. Required. */
  slots: number;
  /** Context length per sequence; null for min(the model's, 4096) as the engine does. */
  contextLength: number | null;
}

/** The estimate, in bytes. */
export interface EngineMemoryEstimate {
  modelBytes: number;
  contextBytes: number;
  /** (model + context) × 1.1. */
  totalBytes: number;
}

/** Estimates the memory the engine will use for this model and these options. */
export async function estimateEngineMemory(options: EngineMemoryEstimateOptions): Promise<EngineMemoryEstimate> {
  let insights: GgufInsights;
  try {
    const info = await readGgufFileInfo(options.modelPath, { sourceType: 'filesystem', readTensorInfo: true, logWarnings: false });
    insights = await GgufInsights.from(info);
  } catch (cause) {
    throw new NightjarError('NJ_MODEL_FILE_INVALID', `${options.modelPath} is not a readable GGUF file: ${(cause as Error).message}`, {
      cause,
    });
  }
  const train = insights.trainContextSize ?? 4096;
  const contextSize = options.contextLength ?? Math.min(train > 0 ? train : 4096, 4096);
  const model = await insights.estimateModelResourceRequirementsV2({ gpuLayers: 0 });
  const context = await insights.estimateContextResourceRequirementsV2({ contextSize, modelGpuLayers: 0, sequences: options.slots });
  const modelBytes = Math.ceil(model.cpuRam + model.gpuVram);
  const contextBytes = Math.ceil(context.cpuRam + context.gpuVram);
  return { modelBytes, contextBytes, totalBytes: Math.ceil((modelBytes + contextBytes) * 1.1) };
}
