/**
 * @internal The SDK's reveal as the helpers agreed it (issue 13): until it is on main, the auditor
 * is written against this shape. Replaced by the SDK's own types when they land.
 */
import type { AuditVerdict } from '../../shared/index.js';

/** What the gateway answers to a revealed job. */
export interface RevealResult {
  jobId: string;
  agentId: string;
  verdict: AuditVerdict;
  forfeited: boolean;
  refunded: string;
}

/** What a client keeps of one job to reveal it later. */
export type JobEvidence = unknown;
