/**
 * `nightjar dispute FILE`: reveals one job to the gateway's auditor. FILE is the job's evidence as
 * `nightjar chat --keep-evidence FILE` wrote it (or an SDK program kept it); the gateway re-checks
 * the reply against the model file the agent's receipt names, and a failed check strikes the agent
 * and, while the job's earnings are still pending, gives its charge back. Revealing gives the
 * gateway's operator that conversation.
 */
import { readFile, stat } from 'node:fs/promises';
import { NightjarError, describeIssues, jobEvidenceSchema } from '../../shared/index.js';
import type { RevealResult } from '../../client/index.js';
import type { CommandContext } from '../io.js';
import { commandClient, reportError, type ClientCommandIo, type ClientFlagValues } from './common.js';

/** The largest evidence file read (the gateway's default body limit for a reveal). */
export const MAX_EVIDENCE_FILE_BYTES = 32 * 1024 * 1024;

/** Flags of `nightjar dispute`. */
export interface DisputeFlags extends ClientFlagValues {
  json?: boolean;
}

/** Reads and checks the evidence in `file` (NJ_USAGE for a file that is not one). */
async function readEvidence(file: string): Promise<ReturnType<typeof jobEvidenceSchema.parse>> {
  let text: string;
  try {
    const size = (await stat(file)).size;
    if (size > MAX_EVIDENCE_FILE_BYTES) throw new NightjarError('NJ_USAGE', `${file} is larger than any job's evidence (${size} bytes)`);
    text = await readFile(file, 'utf8');
  } catch (err) {
    if (err instanceof NightjarError) throw err;
    throw new NightjarError('NJ_USAGE', `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new NightjarError('NJ_USAGE', `${file} is not JSON; give the file \`nightjar chat --keep-evidence\` wrote`);
  }
  const evidence = jobEvidenceSchema.safeParse(parsed);
  if (!evidence.success)
    throw new NightjarError('NJ_EVIDENCE_INVALID', `${file} is not a job's evidence: ${describeIssues(evidence.error)}`);
  return evidence.data;
}

/** What is printed for a verdict: the outcome, each finding, and what moved. */
export function disputeText(r: RevealResult): string {
  const lines = [`Job ${r.jobId} on agent ${r.agentId}: the reply ${r.verdict.pass ? 'passed' : 'failed'} the gateway's check.`];
  for (const f of r.verdict.findings) lines.push(`  ${f.reason}: ${f.detail}`);
  lines.push(r.forfeited ? `${r.message} (${r.refunded} micro-credits).` : `${r.message}.`);
  return lines.join('\n') + '\n';
}

/** Runs `nightjar dispute FILE`; resolves with the exit code (0 passed, 1 failed or an error). */
export async function disputeCommand(values: DisputeFlags, file: string, ctx: CommandContext): Promise<number> {
  const io: ClientCommandIo = { ...ctx.io, signal: ctx.signal };
  try {
    const evidence = await readEvidence(file);
    const { client } = await commandClient(values, io, { countersign: false });
    const result = await client.reveal(evidence, io.signal);
    io.stdout.write(values.json ? JSON.stringify(result, null, 2) + '\n' : disputeText(result));
    return result.verdict.pass ? 0 : 1;
  } catch (err) {
    return reportError(io, err);
  }
}
