/**
 * The reply checker: a {@link ReplyChecker} on node-llama-cpp for whoever holds model files (the
 * auditor, a gateway with audit models; the `nightjar` command hands it to them). For each reply it
 * loads the engine for the file the receipt names (lazily, keeping the last one loaded), inspects the
 * reply in one teacher-forced pass, optionally runs the greedy reference, and judges the figures
 * with the pure {@link judgeReply} (src/shared/honesty/judge.ts). docs/honesty.md "Audits: the check".
 */
import {
  allowedRank,
  effectiveSampling,
  isConstrained,
  judgeConstrainedCounts,
  judgeReply,
  NightjarError,
  resolveAuditPolicy,
  silentLogger,
  withDefaults,
  type AuditPolicy,
  type AuditVerdict,
  type Logger,
  type ReplyCheckOptions,
  type ReplyChecker,
  type ReplyUnderCheck,
} from '../../../shared/index.js';
import { defaultThreads, loadEngine } from './engine.js';
import type { InferenceEngine, ReplyInspector } from './types.js';

/** Options of {@link createReplyChecker}. */
export interface ReplyCheckerOptions {
  /**
   * The local path of the model file with this sha256 (lowercase hex), or null when there is none
   * here (the check then rejects with NJ_AUDIT_UNAVAILABLE). Required.
   */
  modelPath: (sha256: string) => string | null | Promise<string | null>;
  /** CPU threads of the checker's engine. Defaults to {@link defaultThreads}. */
  threads?: number;
  /** Receives load and unload lines (never content). Defaults to a silent logger. */
  logger?: Logger;
  /** The rules of the verdict, over DEFAULT_AUDIT_POLICY. Defaults to none (the defaults). */
  policy?: Partial<AuditPolicy>;
}

/** A running reply checker. */
export interface ReplyCheckerHandle {
  /** Checks one reply; checks run one at a time, in call order. */
  readonly check: ReplyChecker;
  /** Waits for the check in progress and frees the loaded model. Idempotent. */
  dispose(): Promise<void>;
}

type CheckerEngine = InferenceEngine & ReplyInspector;

const SHA256_HEX = /^[0-9a-f]{64}$/;

/**
 * Creates a reply checker. Loads nothing until the first check; then keeps one engine (one slot)
 * for the last model file used, and replaces it when a check names another file.
 */
export function createReplyChecker(options: ReplyCheckerOptions): ReplyCheckerHandle {
  const resolved = withDefaults({ threads: defaultThreads(), logger: silentLogger, policy: {} }, options);
  const { threads, logger } = resolved;
  if (!Number.isInteger(threads) || threads < 1 || threads > 1024) {
    throw new NightjarError('NJ_CONFIG_INVALID', `Reply checker option threads must be an integer from 1 to 1024; got ${String(threads)}.`);
  }
  let policy: AuditPolicy;
  try {
    policy = resolveAuditPolicy(resolved.policy);
  } catch (error) {
    throw new NightjarError('NJ_CONFIG_INVALID', `Reply checker option policy: ${error instanceof Error ? error.message : String(error)}`);
  }
  let loaded: { sha256: string; engine: CheckerEngine } | undefined;
  let queue: Promise<unknown> = Promise.resolve();
  let disposed = false;

  async function engineFor(sha256: string): Promise<CheckerEngine> {
    if (loaded?.sha256 === sha256) return loaded.engine;
    const path = await options.modelPath(sha256);
    if (path === null) {
      throw new NightjarError('NJ_AUDIT_UNAVAILABLE', `This checker holds no model file with sha256 ${sha256}.`);
    }
    if (loaded !== undefined) {
      const previous = loaded;
      loaded = undefined;
      await previous.engine.dispose();
    }
    const engine = await loadEngine({ modelPath: path, slots: 1, threads, logger });
    loaded = { sha256, engine };
    return engine;
  }

  async function checkNow(input: ReplyUnderCheck, checkOptions: ReplyCheckOptions | undefined): Promise<AuditVerdict> {
    if (disposed) throw new NightjarError('NJ_AUDIT_UNAVAILABLE', 'This reply checker was disposed.');
    const sha256 = String(input.modelSha256).toLowerCase();
    if (!SHA256_HEX.test(sha256)) {
      throw new NightjarError('NJ_BAD_REQUEST', 'A reply to check names its model file by a sha256 of 64 hex digits.');
    }
    const engine = await engineFor(sha256);
    const started = performance.now();
    if (isConstrained({ ...(input.constraints ?? {}), sampling: input.sampling })) {
      // Drawn under a grammar or penalties: the counts only (docs/honesty.md "Constrained replies").
      const constraints = input.constraints ?? {};
      const calls = (input.toolCalls ?? []).map((c) => `{"name": ${JSON.stringify(c.name)}, "arguments": ${c.arguments}}`);
      const promptTokens = await engine.countPromptTokens(input.messages, constraints);
      const reply = [input.reply.text, ...calls].filter((t) => t !== '').join('');
      const inspection = await engine.inspect({
        messages: input.messages,
        reply: { text: reply, finishReason: input.reply.finishReason === 'tool_calls' ? 'length' : input.reply.finishReason },
        topN: 1,
      });
      const verdict = judgeConstrainedCounts(input, { promptTokens, replyTokens: inspection.replyTokens }, policy);
      return { ...verdict, figures: { ...verdict.figures, ms: Math.round(performance.now() - started) } };
    }
    const sampling = effectiveSampling(input.sampling, policy);
    let referenceText: string | undefined;
    if (checkOptions?.reference === true && sampling.temperature === 0) {
      // As long as the request allowed, or as fits this engine's context if that is shorter.
      const room = engine.model.contextLength - (await engine.countPromptTokens(input.messages));
      const maxTokens = Math.max(1, Math.min(input.sampling.maxTokens, room));
      const reference = await engine.generate({ messages: input.messages, sampling: { ...input.sampling, temperature: 0, maxTokens } });
      referenceText = reference.text;
    }
    const inspection = await engine.inspect({
      messages: input.messages,
      reply: input.reply,
      stop: input.sampling.stop ?? [],
      topN: allowedRank(sampling),
      ...(referenceText === undefined ? {} : { referenceText }),
    });
    const verdict = judgeReply(input, inspection, policy);
    const ms = Math.round(performance.now() - started);
    logger.debug('reply checked', {
      pass: verdict.pass,
      reasons: verdict.findings.map((f) => f.reason).join(',') || 'none',
      replyTokens: inspection.replyTokens,
      ms,
    });
    return { ...verdict, figures: { ...verdict.figures, ms } };
  }

  const check: ReplyChecker = (input, checkOptions) => {
    const run = queue.then(() => checkNow(input, checkOptions));
    queue = run.catch(() => undefined);
    return run;
  };

  let disposing: Promise<void> | undefined;
  return {
    check,
    dispose(): Promise<void> {
      disposing ??= (async () => {
        disposed = true;
        await queue;
        const engine = loaded?.engine;
        loaded = undefined;
        await engine?.dispose();
      })();
      return disposing;
    },
  };
}
