/**
 * The contract of a reply check (DESIGN.md "Honest work", docs/honesty.md "Audits"): what an
 * auditor and the gateway's dispute re-check hand to a checker that holds the claimed model file,
 * and the verdict it gives back. Only types live here; the checker itself runs node-llama-cpp
 * (src/main/agent/engine), and whoever needs one (the auditor, a gateway with audit models) is
 * handed it by the `nightjar` command.
 */
import type { ChatMessage, FinishReason, ResponseFormat, Sampling, Tool, ToolCall, ToolChoice } from '../protocol/schemas.js';

/** One opened job as a checker sees it: the request and reply in the clear, and the receipt's claims. */
export interface ReplyUnderCheck {
  /** The job (for the verdict's records only). */
  jobId: string;
  /** The model id the request named. */
  model: string;
  /** The sha256 (hex) of the model file the receipt names: the file the reply is checked against. */
  modelSha256: string;
  /** The conversation as the request sealed it. */
  messages: readonly ChatMessage[];
  /** The request's sampling parameters as sealed (fields left out take the agent's defaults). */
  sampling: Sampling;
  /** The reply as delivered: its text and how the final chunk said it ended. */
  reply: {
    text: string;
    finishReason: FinishReason;
    /** The request's stop sequence that ended the reply, when the final chunk names one. */
    stopSequence?: string;
  };
  /** What the agent's signed receipt claims. */
  claimed: { promptTokens: number; completionTokens: number };
  /**
   * The request's tools, tool choice and response format, when it sealed any: the reply was then
   * generated under a grammar, and only its counts are checked (docs/honesty.md). Absent: none.
   */
  constraints?: { tools?: Tool[]; toolChoice?: ToolChoice; responseFormat?: ResponseFormat };
  /** The tool calls the final chunk carried, when it carried any. */
  toolCalls?: ToolCall[];
}

/** Why a reply failed its check. Stable names: they are stored with the audit and shown to operators. */
export type AuditFailureReason =
  /** A reply token outside what the request's sampling could have drawn (its top-k, or top-1 when greedy). */
  | 'off-distribution'
  /** The reply as a whole is far less likely under the model than sampled text can be. */
  | 'implausible-likelihood'
  /** A greedy reply differs from the reference run beyond a near-tie (auditor only). */
  | 'greedy-mismatch'
  /** The receipt claims more completion tokens than the reply's own tokenization holds. */
  | 'completion-count'
  /** The receipt claims more prompt tokens than the rendered prompt holds. */
  | 'prompt-count'
  /** The reply ends where the model would not have ended it (a dropped tail). */
  | 'tail-dropped';

/** One thing a check found wrong, with numbers that explain it (never content). */
export interface AuditFinding {
  reason: AuditFailureReason;
  /** One sentence for an operator, e.g. "token 7 of 32 ranks 181st; the request allowed the top 40". */
  detail: string;
  /** The figures behind the finding (ranks, counts, log-likelihoods). */
  figures: Readonly<Record<string, number>>;
}

/** The verdict on one reply. */
export interface AuditVerdict {
  /** True when nothing was found wrong. */
  pass: boolean;
  /** What was found wrong; empty when `pass`. */
  findings: AuditFinding[];
  /** What the check measured, for records and benchmarks (token counts, mean log-probability…). */
  figures: Readonly<Record<string, number>>;
}

/** What a checker may do beyond the teacher-forced check. */
export interface ReplyCheckOptions {
  /**
   * Also generate a reference reply greedily and compare (the auditor's own greedy audits; only for
   * requests with temperature 0). Defaults to false: the gateway's dispute re-check does not generate.
   */
  reference?: boolean;
}

/**
 * Checks one reply against the model file its receipt names. Resolves with a verdict; rejects with
 * NightjarError NJ_AUDIT_UNAVAILABLE when it does not hold that file.
 */
export type ReplyChecker = (reply: ReplyUnderCheck, options?: ReplyCheckOptions) => Promise<AuditVerdict>;
