/**
 * `nightjar audit`: runs an auditor (src/client/audit) against a gateway — sealed jobs from a
 * prompt set, paced and sampled like real traffic, each reply checked here against the model
 * file given (node-llama-cpp, through the checker of src/main/agent) and then revealed to the
 * gateway for its own re-check. One progress line per audit, a summary at the end. Never prints a
 * prompt or a reply.
 */
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import {
  Auditor,
  BUILT_IN_PROMPTS,
  PROMPT_FILE_DEFAULTS,
  parsePromptLines,
  type AuditPrompt,
  type AuditResult,
  type RevealMode,
} from '../../client/index.js';
import { createReplyChecker, sha256File } from '../../main/agent/index.js';
import { NightjarError } from '../../shared/index.js';
import type { CommandContext } from '../io.js';
import { commandClient, reportError, type ClientCommandIo, type ClientFlagValues } from './common.js';

/** Flags of `nightjar audit`. */
export interface AuditFlags extends ClientFlagValues {
  model: string;
  modelFile: string;
  rate: number;
  jobs?: number;
  prompts?: string;
  reveal: RevealMode;
  threads?: number;
  json?: boolean;
}

/** How long an audit's reply stream may be silent, keepalives included, before it counts as broken. */
export const AUDIT_STREAM_IDLE_MS = 10_000;

/** Exit code when the run went through and at least one audit failed its checks. */
export const AUDIT_FAILED_EXIT = 3;

async function readPrompts(file: string, io: ClientCommandIo): Promise<readonly AuditPrompt[]> {
  const full = path.resolve(io.cwd, file);
  let size: number;
  try {
    size = (await stat(full)).size;
  } catch (cause) {
    throw new NightjarError('NJ_USAGE', `cannot read the prompt file ${full}: ${(cause as Error).message}`, { cause });
  }
  if (size > PROMPT_FILE_DEFAULTS.maxFileBytes) {
    throw new NightjarError('NJ_USAGE', `the prompt file ${full} is larger than ${PROMPT_FILE_DEFAULTS.maxFileBytes} bytes; split it`);
  }
  try {
    return parsePromptLines(await readFile(full, 'utf8'));
  } catch (cause) {
    if (cause instanceof NightjarError) throw new NightjarError('NJ_USAGE', `${cause.message} (${full})`, { cause });
    throw cause;
  }
}

/** One line per audit, without content: which agent, pass or fail and why, local and gateway verdicts. */
export function auditLine(r: AuditResult): string {
  const who = r.agentId ? `agent ${r.agentId.slice(0, 8)}` : 'no agent';
  const kind = r.request.greedy ? 'greedy' : `t=${r.request.temperature}`;
  const verdict = r.pass === null ? 'UNCHECKED' : r.pass ? 'pass' : `FAIL (${r.reasons.join(', ')})`;
  const local = r.local ? (r.local.pass ? 'pass' : 'fail') : '–';
  const gateway = r.gateway ? `${r.gateway.verdict.pass ? 'pass' : 'fail'}${r.gateway.forfeited ? ', forfeited' : ''}` : '–';
  const error = r.error ? ` · ${r.error.stage}: ${r.error.code} ${r.error.message}` : '';
  return (
    `[audit ${r.index} · ${who} · job ${r.jobId ?? '–'} · ${kind}, max ${r.request.maxTokens}` +
    `${r.request.stops ? `, ${r.request.stops} stop` : ''} · ${verdict} · local ${local} · gateway ${gateway}${error}]\n`
  );
}

/** Runs `nightjar audit`; resolves with the process exit code. */
export async function auditCommand(values: AuditFlags, ctx: CommandContext): Promise<number> {
  const io: ClientCommandIo = { ...ctx.io, signal: ctx.signal };
  let checker: { dispose(): Promise<void> } | null = null;
  try {
    const modelFile = path.resolve(io.cwd, values.modelFile);
    const prompts = values.prompts === undefined ? BUILT_IN_PROMPTS : await readPrompts(values.prompts, io);
    let sha256: string;
    try {
      sha256 = await sha256File(modelFile);
    } catch (cause) {
      throw new NightjarError('NJ_USAGE', `cannot read the model file ${modelFile}: ${(cause as Error).message}`, { cause });
    }
    // The local check shares this machine's CPU with the replies streaming in: a keepalive read late
    // under load must not break an audit (the idle timeout is the client's own; nothing of it is sent).
    const { client } = await commandClient(values, io, { streamIdleMs: AUDIT_STREAM_IDLE_MS });
    const catalog = await client.catalog(io.signal);
    if (!catalog.file(values.model, sha256)) {
      const listed = catalog.catalog.models.find((m) => m.id === values.model)?.files.map((f) => f.sha256) ?? [];
      throw new NightjarError(
        'NJ_USAGE',
        listed.length === 0
          ? `the gateway's catalog has no model ${values.model}; see \`nightjar models offered\``
          : `the model file ${modelFile} (sha256 ${sha256}) is not a file the gateway's catalog lists for ${values.model} ` +
              `(it lists ${listed.join(', ')}); audit with the file the catalog names`,
      );
    }
    const handle = createReplyChecker({
      modelPath: (sha) => (sha === sha256 ? modelFile : null),
      ...(values.threads === undefined ? {} : { threads: values.threads }),
      logger: ctx.logger('audit'),
    });
    checker = handle;
    const auditor = new Auditor({
      client,
      checker: handle.check,
      model: values.model,
      prompts,
      ratePerMinute: values.rate,
      ...(values.jobs === undefined ? {} : { jobs: values.jobs }),
      reveal: values.reveal,
      clock: ctx.clock,
    });
    const stop = (): void => void auditor.dispose();
    io.signal?.addEventListener('abort', stop, { once: true });
    auditor.onAudit((r) => {
      if (values.json) io.stdout.write(JSON.stringify({ type: 'audit', ...r }) + '\n');
      else io.stderr.write(auditLine(r));
    });
    if (!values.json) {
      io.stderr.write(
        `[auditing ${values.model} (sha256 ${sha256.slice(0, 12)}…) at ${values.gateway ?? client.gatewayUrl}: ` +
          `${values.jobs ?? 'unbounded'} audits, about ${values.rate} a minute, ${prompts.length} prompts, reveal ${values.reveal}]\n`,
      );
    }
    const summary = await auditor.run();
    io.signal?.removeEventListener('abort', stop);
    await auditor.dispose();
    await client.countersigned();
    if (values.json) io.stdout.write(JSON.stringify({ type: 'summary', ...summary }) + '\n');
    else {
      io.stdout.write(
        `${summary.audits} audits: ${summary.passed} passed, ${summary.failed} failed, ${summary.unchecked} unchecked` +
          `${summary.disagreements ? `, ${summary.disagreements} where this machine and the gateway disagreed` : ''}\n`,
      );
      for (const [agentId, a] of Object.entries(summary.agents)) {
        const reasons = Object.entries(a.reasons)
          .map(([reason, n]) => `${reason} ×${n}`)
          .join(', ');
        io.stdout.write(`  agent ${agentId}: ${a.audits} audits, ${a.failed} failed${reasons ? ` (${reasons})` : ''}\n`);
      }
    }
    return summary.failed > 0 ? AUDIT_FAILED_EXIT : 0;
  } catch (err) {
    return reportError(io, err);
  } finally {
    await checker?.dispose();
  }
}
