/**
 * The auditor (issue 13, "Audits that look like real jobs"; docs/auditor.md): a client account
 * that sends sealed jobs from a prompt set through the SDK exactly as any client does — same
 * route, same envelope and padding, same countersignature — paced like traffic and sampled like
 * it, and checks each reply against the claimed model file on its own machine. Then it reveals
 * the job to the gateway (POST /v1/jobs/:jobId/reveal), which re-checks it with its own checker
 * and records the verdict: strikes, and the job's earnings forfeited when the agent cheated.
 *
 * Nothing here is visible to the gateway as "an audit" until the reveal, which comes after the
 * job is over: the gateway has no auditor flag on a key, and the job path has no branch on one.
 * What could still give audits away is their statistics, so the mix matters: greedy and sampled
 * jobs at several temperatures with random seeds (were audits all greedy, a cheat could serve
 * honestly at temperature 0 only), varied maxTokens (visible in the envelope's header: match it to
 * the gateway's real traffic) and stop sequences, and exponential gaps (a Poisson process, as
 * independent clients make) around a mean rate.
 *
 * The auditor logs nothing of a prompt or a reply: its events name a prompt by its index in the
 * set, and a verdict by its figures.
 */
import {
  Emitter,
  NightjarError,
  Resource,
  delay,
  errorMessage,
  systemClock,
  withDefaults,
  type AuditFailureReason,
  type AuditVerdict,
  type ChatMessage,
  type Clock,
  type Event,
  type JobEvidence,
  type ReplyChecker,
  type ReplyUnderCheck,
  type Sampling,
} from '../../shared/index.js';
import type { ChatRequest, ChatResult, RevealResult } from '../sdk/index.js';
import { IncompleteReplyError } from '../sdk/index.js';
import { BUILT_IN_PROMPTS, type AuditPrompt } from './prompts.js';

/** When the auditor reveals a job to the gateway: every audit, or only those its own check failed. */
export type RevealMode = 'all' | 'failed';

/** What the auditor needs of a client: NightjarClient (src/client/sdk) has it. */
export interface AuditClient {
  /** Sends a job and resolves with the verified reply (and, asked for, its evidence). */
  complete(request: ChatRequest): Promise<ChatResult>;
  /** Reveals one job's evidence to the gateway's auditor. */
  reveal(evidence: JobEvidence): Promise<RevealResult>;
}

/** How audits sample, so they look like a real client's jobs. */
export interface AuditSamplingMix {
  /** Share of audits that are greedy (temperature 0, checked against a reference run). Defaults to 0.3. */
  greedyShare?: number;
  /** Temperatures of the sampled audits, drawn uniformly. Defaults to [0.2, 0.5, 0.7, 0.8, 1]. */
  temperatures?: readonly number[];
  /** maxTokens of each audit, drawn uniformly (visible in the header: match real traffic). Defaults to [32, 64, 128, 256, 512]. */
  maxTokens?: readonly number[];
  /** Share of audits that send one or two stop sequences. Defaults to 0.4. */
  stopShare?: number;
  /** Stop sequences to draw from. Defaults to a few that chat clients send ("\n\n", "###", "User:", "\nQ:", "END"). */
  stops?: readonly string[];
  /** Share of sampled audits that name a topP (from 0.9, 0.95, 1). Defaults to 0.5. */
  topPShare?: number;
  /** Share of sampled audits that name a topK (from 20, 40, 100). Defaults to 0.3. */
  topKShare?: number;
  /** Share of audits that send a seed (a random 32-bit one). Defaults to 0.6. */
  seedShare?: number;
}

/** The defaults of {@link AuditSamplingMix}. */
export const AUDIT_SAMPLING_DEFAULTS: Readonly<Required<AuditSamplingMix>> = {
  greedyShare: 0.3,
  temperatures: [0.2, 0.5, 0.7, 0.8, 1],
  maxTokens: [32, 64, 128, 256, 512],
  stopShare: 0.4,
  stops: ['\n\n', '###', 'User:', '\nQ:', 'END'],
  topPShare: 0.5,
  topKShare: 0.3,
  seedShare: 0.6,
};

/** Options of {@link Auditor}. */
export interface AuditorOptions {
  /** The client account audits are sent with (a NightjarClient with the auditor's key). Required. */
  client: AuditClient;
  /** Checks a reply against the claimed model file (createReplyChecker in src/main/agent). Required. */
  checker: ReplyChecker;
  /** The model id audited. Required. */
  model: string;
  /** The prompts audits draw from, uniformly. Defaults to {@link BUILT_IN_PROMPTS}. */
  prompts?: readonly AuditPrompt[];
  /** Mean audits per minute of {@link Auditor.run}; gaps are exponential around it. Defaults to 2. */
  ratePerMinute?: number;
  /** Audits {@link Auditor.run} sends before it resolves. Defaults to Infinity (until dispose()). */
  jobs?: number;
  /** Audits under way at once in {@link Auditor.run} (a send waits while this many are). Defaults to 4. */
  maxInFlight?: number;
  /** Which audits are revealed to the gateway. Defaults to 'all'. */
  reveal?: RevealMode;
  /**
   * Tries at a reveal the gateway refuses with NJ_RATE_LIMITED (it re-checks a bounded number of
   * jobs at once), each after the wait it names (1 s when it names none). Defaults to 5.
   */
  revealAttempts?: number;
  /** How audits sample. Each field defaults as {@link AUDIT_SAMPLING_DEFAULTS} says. */
  sampling?: AuditSamplingMix;
  /** Clock of the pacing. Defaults to the system clock. */
  clock?: Clock;
  /** Random source in [0, 1) for prompts, sampling and gaps. Defaults to Math.random. */
  random?: () => number;
}

/** The defaults of {@link AuditorOptions}. */
export const AUDITOR_DEFAULTS: Readonly<Required<Omit<AuditorOptions, 'client' | 'checker' | 'model' | 'sampling'>>> = {
  prompts: BUILT_IN_PROMPTS,
  ratePerMinute: 2,
  jobs: Infinity,
  maxInFlight: 4,
  reveal: 'all',
  revealAttempts: 5,
  clock: systemClock,
  random: () => Math.random(),
};

/** What one audit sent, without content: enough to tell greedy from sampled and to reproduce it. */
export interface AuditRequestShape {
  /** Index of the prompt in the set. */
  promptIndex: number;
  /** True when temperature 0 (the reply is also compared with a reference run). */
  greedy: boolean;
  temperature: number;
  maxTokens: number;
  topP?: number;
  topK?: number;
  seed?: number;
  /** Stop sequences sent. */
  stops: number;
}

/** Why an audit has no full verdict: the stage that failed, and its error. */
export interface AuditError {
  stage: 'job' | 'check' | 'reveal';
  code: string;
  message: string;
}

/** One audit's outcome, as {@link Auditor.onAudit} fires it. */
export interface AuditResult {
  /** This auditor's count of audits, from 1. */
  index: number;
  request: AuditRequestShape;
  /** The job id, once the gateway admitted it; null when the job never started. */
  jobId: string | null;
  /** The agent that served it; null when none did. */
  agentId: string | null;
  /**
   * False when either check found something wrong, true when every check that ran passed, null
   * when no check ran (the job failed, or the checker could not take it and nothing was revealed).
   */
  pass: boolean | null;
  /** Every reason found, local and gateway, each once. */
  reasons: AuditFailureReason[];
  /** The local check's verdict; null when it did not run. */
  local: AuditVerdict | null;
  /** The gateway's verdict on the revealed job; null when it was not revealed (or the reveal failed). */
  gateway: { verdict: AuditVerdict; forfeited: boolean; refunded: string } | null;
  /** True when both verdicts exist and disagree on pass. */
  disagree: boolean;
  /** What went wrong on the way, if anything. */
  error: AuditError | null;
}

/** What {@link Auditor.run} resolves with. */
export interface AuditSummary {
  audits: number;
  passed: number;
  failed: number;
  /** Audits with no verdict (their job or check failed). */
  unchecked: number;
  /** Audits whose local and gateway verdicts disagreed. */
  disagreements: number;
  /** Per agent: audits, failures and the reasons found. */
  agents: Record<string, { audits: number; failed: number; reasons: Partial<Record<AuditFailureReason, number>> }>;
}

function pick<T>(items: readonly T[], random: () => number): T {
  return items[Math.min(items.length - 1, Math.floor(random() * items.length))]!;
}

function codeOf(error: unknown): string {
  return error instanceof NightjarError ? error.code : 'NJ_INTERNAL';
}

function shareOption(name: string, value: number): number {
  if (!(value >= 0 && value <= 1)) throw new NightjarError('NJ_CONFIG_INVALID', `audit sampling ${name} must be from 0 to 1; got ${value}`);
  return value;
}

/**
 * Sends audit jobs and checks their replies. {@link Auditor.run} paces them; {@link Auditor.audit}
 * sends one now. Each outcome is fired on {@link Auditor.onAudit}.
 */
export class Auditor extends Resource {
  readonly #o: Omit<Required<AuditorOptions>, 'sampling'>;
  readonly #mix: Required<AuditSamplingMix>;
  readonly #results = new Emitter<AuditResult>();
  readonly #stop = new AbortController();
  #count = 0;

  /** Fires once per audit, when its checks and reveal are done. */
  readonly onAudit: Event<AuditResult> = this.#results.event;

  constructor(options: AuditorOptions) {
    super();
    const o = withDefaults(AUDITOR_DEFAULTS, options);
    const mix = withDefaults(AUDIT_SAMPLING_DEFAULTS, options.sampling);
    if (typeof o.model !== 'string' || o.model === '') throw new NightjarError('NJ_CONFIG_INVALID', 'the auditor needs a model id');
    if (o.prompts.length === 0) throw new NightjarError('NJ_CONFIG_INVALID', 'the auditor needs at least one prompt');
    if (!(o.ratePerMinute > 0 && o.ratePerMinute <= 6000)) {
      throw new NightjarError('NJ_CONFIG_INVALID', `the audit rate must be above 0 and at most 6000 a minute; got ${o.ratePerMinute}`);
    }
    if (!(o.jobs === Infinity || (Number.isInteger(o.jobs) && o.jobs >= 0))) {
      throw new NightjarError('NJ_CONFIG_INVALID', `audit jobs must be a whole number; got ${o.jobs}`);
    }
    if (!(Number.isInteger(o.maxInFlight) && o.maxInFlight >= 1 && o.maxInFlight <= 64)) {
      throw new NightjarError('NJ_CONFIG_INVALID', `maxInFlight must be an integer from 1 to 64; got ${o.maxInFlight}`);
    }
    if (o.reveal !== 'all' && o.reveal !== 'failed') throw new NightjarError('NJ_CONFIG_INVALID', `reveal must be 'all' or 'failed'`);
    if (!(Number.isInteger(o.revealAttempts) && o.revealAttempts >= 1 && o.revealAttempts <= 20)) {
      throw new NightjarError('NJ_CONFIG_INVALID', `revealAttempts must be an integer from 1 to 20; got ${o.revealAttempts}`);
    }
    for (const [name, value] of Object.entries({
      greedyShare: mix.greedyShare,
      stopShare: mix.stopShare,
      topPShare: mix.topPShare,
      topKShare: mix.topKShare,
      seedShare: mix.seedShare,
    })) {
      shareOption(name, value);
    }
    if (mix.temperatures.length === 0 || mix.temperatures.some((t) => !(t > 0 && t <= 2))) {
      throw new NightjarError(
        'NJ_CONFIG_INVALID',
        'audit temperatures must be above 0 and at most 2 (greedy audits come from greedyShare)',
      );
    }
    if (mix.maxTokens.length === 0 || mix.maxTokens.some((n) => !(Number.isInteger(n) && n >= 1 && n <= 32_768))) {
      throw new NightjarError('NJ_CONFIG_INVALID', 'audit maxTokens must be integers from 1 to 32768');
    }
    if (mix.stops.some((s) => s.length === 0 || s.length > 256)) {
      throw new NightjarError('NJ_CONFIG_INVALID', 'audit stop sequences must be 1 to 256 characters');
    }
    this.#o = o;
    this.#mix = mix;
    this.disposables.add(this.#results);
    this.disposables.add(() => this.#stop.abort());
  }

  /** Draws the next audit's prompt and sampling. */
  #draw(): { promptIndex: number; messages: readonly ChatMessage[]; sampling: Sampling; shape: AuditRequestShape } {
    const r = this.#o.random;
    const mix = this.#mix;
    const promptIndex = Math.min(this.#o.prompts.length - 1, Math.floor(r() * this.#o.prompts.length));
    const greedy = r() < mix.greedyShare;
    const temperature = greedy ? 0 : pick(mix.temperatures, r);
    const maxTokens = pick(mix.maxTokens, r);
    const topP = !greedy && r() < mix.topPShare ? pick([0.9, 0.95, 1], r) : undefined;
    const topK = !greedy && r() < mix.topKShare ? pick([20, 40, 100], r) : undefined;
    const seed = r() < mix.seedShare ? Math.floor(r() * 2 ** 32) : undefined;
    let stop: string[] | undefined;
    if (mix.stops.length > 0 && r() < mix.stopShare) {
      const first = pick(mix.stops, r);
      const second = r() < 0.5 ? pick(mix.stops, r) : first;
      stop = first === second ? [first] : [first, second];
    }
    // The sampling exactly as the SDK seals it (fields left undefined are absent from the envelope).
    const sampling: Sampling = { maxTokens, temperature, topP, topK, seed, stop };
    return {
      promptIndex,
      messages: this.#o.prompts[promptIndex]!.messages,
      sampling,
      shape: {
        promptIndex,
        greedy,
        temperature,
        maxTokens,
        ...(topP === undefined ? {} : { topP }),
        ...(topK === undefined ? {} : { topK }),
        ...(seed === undefined ? {} : { seed }),
        stops: stop?.length ?? 0,
      },
    };
  }

  /** Sends one audit now, checks it, reveals it as the reveal mode says; resolves with (and fires) its result. */
  async audit(): Promise<AuditResult> {
    if (this.isDisposed) throw new NightjarError('NJ_CANCELLED', 'the auditor was disposed');
    const index = ++this.#count;
    const { messages, sampling, shape } = this.#draw();
    const base = { index, request: shape, jobId: null, agentId: null, reasons: [], local: null, gateway: null, disagree: false };
    let result: ChatResult;
    try {
      result = await this.#o.client.complete({
        model: this.#o.model,
        messages: [...messages],
        maxTokens: sampling.maxTokens,
        temperature: sampling.temperature,
        topP: sampling.topP,
        topK: sampling.topK,
        seed: sampling.seed,
        stop: sampling.stop,
        keepEvidence: true,
        signal: this.#stop.signal,
      });
    } catch (error) {
      const served = error instanceof IncompleteReplyError ? error.servedBy : null;
      return this.#emit({
        ...base,
        jobId: served?.jobId ?? null,
        agentId: served?.agentId ?? null,
        pass: null,
        error: { stage: 'job', code: codeOf(error), message: errorMessage(error) },
      });
    }
    const underCheck: ReplyUnderCheck = {
      jobId: result.jobId,
      model: this.#o.model,
      modelSha256: result.receipt.modelSha256,
      messages,
      sampling,
      reply: {
        text: result.text,
        finishReason: result.finishReason,
        ...(result.stopSequence === undefined ? {} : { stopSequence: result.stopSequence }),
      },
      claimed: { promptTokens: result.receipt.promptTokens, completionTokens: result.receipt.completionTokens },
    };
    let local: AuditVerdict | null = null;
    let error: AuditError | null = null;
    try {
      local = await this.#o.checker(underCheck, { reference: shape.greedy });
    } catch (e) {
      error = { stage: 'check', code: codeOf(e), message: errorMessage(e) };
    }
    let gateway: AuditResult['gateway'] = null;
    const reveal = this.#o.reveal === 'all' || local === null || !local.pass;
    if (reveal && !this.isDisposed) {
      try {
        if (result.evidence === undefined) throw new NightjarError('NJ_EVIDENCE_INVALID', 'the client kept no evidence of the job');
        const answer = await this.#reveal(result.evidence);
        gateway = { verdict: answer.verdict, forfeited: answer.forfeited, refunded: answer.refunded };
      } catch (e) {
        error ??= { stage: 'reveal', code: codeOf(e), message: errorMessage(e) };
      }
    }
    const verdicts = [local, gateway?.verdict].filter((v): v is AuditVerdict => v !== null && v !== undefined);
    const reasons = [...new Set(verdicts.flatMap((v) => v.findings.map((f) => f.reason)))];
    return this.#emit({
      ...base,
      jobId: result.jobId,
      agentId: result.agentId,
      pass: verdicts.length === 0 ? null : verdicts.every((v) => v.pass),
      reasons,
      local,
      gateway,
      disagree: local !== null && gateway !== null && local.pass !== gateway.verdict.pass,
      error,
    });
  }

  /** Reveals `evidence`, waiting out the gateway's NJ_RATE_LIMITED refusals (revealAttempts in all). */
  async #reveal(evidence: JobEvidence): Promise<RevealResult> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#o.client.reveal(evidence);
      } catch (error) {
        if (!(error instanceof NightjarError) || error.code !== 'NJ_RATE_LIMITED' || attempt >= this.#o.revealAttempts) throw error;
        await delay(this.#o.clock, error.retryAfterMs ?? 1000, this.#stop.signal);
      }
    }
  }

  #emit(result: AuditResult): AuditResult {
    this.#results.fire(result);
    return result;
  }

  /**
   * Sends `jobs` audits (all of them, or until dispose()) at exponential gaps around the mean rate,
   * at most maxInFlight at once, and resolves with their summary once the last is done. Audits never
   * throw here: each outcome, failures included, is an {@link AuditResult}.
   */
  async run(): Promise<AuditSummary> {
    const summary: AuditSummary = { audits: 0, passed: 0, failed: 0, unchecked: 0, disagreements: 0, agents: {} };
    const inFlight = new Set<Promise<void>>();
    const meanGapMs = 60_000 / this.#o.ratePerMinute;
    const record = (r: AuditResult): void => {
      summary.audits++;
      if (r.pass === true) summary.passed++;
      else if (r.pass === false) summary.failed++;
      else summary.unchecked++;
      if (r.disagree) summary.disagreements++;
      if (r.agentId) {
        const a = (summary.agents[r.agentId] ??= { audits: 0, failed: 0, reasons: {} });
        a.audits++;
        if (r.pass === false) a.failed++;
        for (const reason of r.reasons) a.reasons[reason] = (a.reasons[reason] ?? 0) + 1;
      }
    };
    for (let sent = 0; sent < this.#o.jobs && !this.isDisposed; sent++) {
      // Exponential gaps: the arrivals of a Poisson process, as many independent clients make.
      const gap = -Math.log(1 - this.#o.random()) * meanGapMs;
      try {
        await delay(this.#o.clock, gap, this.#stop.signal);
        while (inFlight.size >= this.#o.maxInFlight) await Promise.race(inFlight);
      } catch {
        break;
      }
      if (this.isDisposed) break;
      const one: Promise<void> = this.audit()
        .then(record, () => undefined)
        .finally(() => inFlight.delete(one));
      inFlight.add(one);
    }
    await Promise.all(inFlight);
    return summary;
  }
}
