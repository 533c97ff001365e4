/**
 * src/client/audit: the auditor (docs/auditor.md). A client account that sends sealed jobs like
 * real traffic, checks each reply against the claimed model file on its own machine, and reveals
 * it to the gateway for the gateway's own re-check. `nightjar audit` (src/cli/client) builds one
 * with the checker from src/main/agent.
 */
export {
  Auditor,
  AUDITOR_DEFAULTS,
  AUDIT_SAMPLING_DEFAULTS,
  type AuditClient,
  type AuditError,
  type AuditorOptions,
  type AuditRequestShape,
  type AuditResult,
  type AuditSamplingMix,
  type AuditSummary,
  type RevealMode,
} from './auditor.js';
export { BUILT_IN_PROMPTS, PROMPT_FILE_DEFAULTS, parsePromptLines, type AuditPrompt, type PromptFileOptions } from './prompts.js';
