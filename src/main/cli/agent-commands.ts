/**
 * `nightjar status | pause | resume | serve-now | earnings | receipts`: talk to the running agent
 * through its control API. pause and resume also work when no agent runs (they set what the next
 * start does); earnings and receipts then read the agent's receipt log directly.
 */
import { parseArgs } from 'node:util';
import {
  NightjarError,
  formatDateTime,
  formatDuration,
  parseDuration,
  type AgentStatusSnapshot,
  type EarningsSummary,
  type Manual,
  type ReceiptsPage,
} from '../../shared/index.js';
import { loadIdentity, readSignedReceiptLog, saveStateFile, summarizeEarnings, systemTimeZone } from '../agent/index.js';
import { cliConfig, cliPaths, requireRunningAgent, runningAgent, secretStore, table } from './agent-context.js';
import type { CliIo } from './io.js';

/** Usage of the commands in this file. */
export const AGENT_COMMANDS_USAGE = `Usage:
  nightjar status [--json]                 what the running agent is doing, and why
  nightjar pause [--for DURATION]          stop serving (drain, goodbye, disconnect) until resumed
  nightjar resume                          back to the policy
  nightjar serve-now [--for DURATION]      serve now, whatever idle time and schedule say
  nightjar earnings [--days N] [--json]    tokens (and credits, where priced) per day and model
  nightjar receipts [--limit N] [--json]   the receipts this agent signed, newest first

DURATION is like 30m, 2h or 1d. pause and resume also work with no agent running: they set what
the next \`nightjar serve\` does.
`;

function flags(argv: string[], extra: Record<string, { type: 'string' | 'boolean' }> = {}): Record<string, string | boolean | undefined> {
  return parseArgs({ args: argv, options: { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' }, ...extra } }).values;
}

function help(io: CliIo): number {
  io.stdout.write(AGENT_COMMANDS_USAGE);
  return 0;
}

/** One paragraph about the agent's status. */
export function describeStatus(s: AgentStatusSnapshot, now = Date.now()): string {
  const lines = [`Agent ${s.agentId.slice(0, 12)}… ${s.state}${s.model ? ` · ${s.model.id}${s.model.loaded ? ' (loaded)' : ''}` : ''}`];
  lines.push(`  state     ${s.state} for ${formatDuration(now - s.since)}${s.reason ? ` — ${s.reason.message}` : ''}`);
  if (s.reason?.hint) lines.push(`            ${s.reason.hint}`);
  lines.push(`  gateway   ${s.gatewayUrl ?? 'not linked'} (${s.link})`);
  lines.push(
    `  jobs      ${s.activeJobs} running, ${s.jobsServed} served · ${s.freeSlots}/${s.totalSlots} slots free · ${s.tokensPerSecond.toFixed(1)} tokens/s · first token ${Math.round(s.ttftMs)} ms`,
  );
  const e = s.environment;
  if (e) {
    const idle = e.idleSeconds === null ? 'idle time unknown' : `idle ${formatDuration(e.idleSeconds * 1000)}`;
    const power =
      e.onAc === null
        ? 'power unknown'
        : e.onAc
          ? 'on AC'
          : `on battery${e.batteryPercent === null ? '' : ` ${Math.round(e.batteryPercent)}%`}`;
    lines.push(
      `  machine   ${idle}${e.screenLocked ? ' · screen locked' : ''} · ${power} · thermal ${e.thermal ?? 'unknown'} · memory pressure ${e.memoryPressure ?? 'unknown'}`,
    );
  }
  lines.push(`  override  ${describeManual(s.manual)}`);
  return lines.join('\n') + '\n';
}

function describeManual(m: Manual): string {
  if (m.mode === 'auto') return 'none (the policy decides)';
  return `${m.mode}${m.until === null ? ' until resumed' : ` until ${formatDateTime(m.until)}`}`;
}

/** Runs `nightjar status`. */
export async function statusCommand(argv: string[], io: CliIo): Promise<number> {
  const f = flags(argv);
  if (f.help) return help(io);
  const client = await requireRunningAgent(cliPaths(io));
  const status = await client.call('status', {});
  io.stdout.write(f.json ? JSON.stringify(status, null, 2) + '\n' : describeStatus(status));
  return 0;
}

/** Runs `nightjar pause`, `resume` and `serve-now`. */
export async function manualCommand(mode: Manual['mode'], argv: string[], io: CliIo): Promise<number> {
  const f = flags(argv, mode === 'auto' ? {} : { for: { type: 'string' } });
  if (f.help) return help(io);
  const until = typeof f.for === 'string' ? Date.now() + parseDuration(f.for, '--for') : null;
  const paths = cliPaths(io);
  const client = await runningAgent(paths);
  if (client) {
    const status =
      mode === 'paused'
        ? await client.call('pause', { until })
        : mode === 'serve-now'
          ? await client.call('serveNow', { until })
          : await client.call('resume', {});
    io.stdout.write(describeStatus(status));
    return 0;
  }
  if (mode === 'serve-now') throw new NightjarError('NJ_AGENT_NOT_RUNNING', 'No agent is running to serve now.');
  await saveStateFile(paths.stateFile, { manual: { mode, until } });
  io.stdout.write(
    `No agent is running; the next \`nightjar serve\` starts ${mode === 'paused' ? `paused${until === null ? '' : ` until ${formatDateTime(until)}`}` : 'following the policy'}.\n`,
  );
  return 0;
}

async function localRecords(
  io: CliIo,
  keyFile?: string,
): Promise<{
  receipts: Awaited<ReturnType<typeof readSignedReceiptLog>>;
  checked: boolean;
  timeZone: string;
  prices: Record<string, { promptPerMTok: string; completionPerMTok: string }>;
  share: number;
}> {
  const paths = cliPaths(io);
  const config = await cliConfig(paths);
  const identity = await loadIdentity(secretStore(io, paths, config, keyFile)).catch(() => null);
  const receipts = await readSignedReceiptLog(paths.receiptsFile, identity ? { identityKey: identity.publicKey } : {});
  return {
    receipts,
    checked: identity !== null,
    timeZone: config.policy.timeZone ?? systemTimeZone(),
    prices: config.earnings.prices,
    share: config.earnings.operatorShare,
  };
}

/** Runs `nightjar earnings`. */
export async function earningsCommand(argv: string[], io: CliIo): Promise<number> {
  const f = flags(argv, { days: { type: 'string' }, 'key-file': { type: 'string' } });
  if (f.help) return help(io);
  const days = typeof f.days === 'string' ? Number(f.days) : undefined;
  if (days !== undefined && (!Number.isInteger(days) || days < 1)) throw new NightjarError('NJ_USAGE', '--days must be a positive integer');
  const client = await runningAgent(cliPaths(io));
  let summary: EarningsSummary;
  let note = '';
  if (client) summary = await client.call('earnings', days === undefined ? {} : { days });
  else {
    const local = await localRecords(io, typeof f['key-file'] === 'string' ? f['key-file'] : undefined);
    summary = summarizeEarnings({
      ...local.receipts,
      timeZone: local.timeZone,
      prices: local.prices,
      operatorShare: local.share,
      ...(days === undefined ? {} : { days }),
    });
    if (!local.checked) note = 'The identity key could not be read, so signatures were not checked.\n';
  }
  if (f.json) {
    io.stdout.write(JSON.stringify(summary, null, 2) + '\n');
    return 0;
  }
  io.stdout.write(formatEarnings(summary) + note);
  return 0;
}

/** The earnings table for people. */
export function formatEarnings(s: EarningsSummary): string {
  if (s.rows.length === 0) return `No receipts yet.${s.rejectedLines ? ` (${s.rejectedLines} log lines were not valid receipts.)` : ''}\n`;
  const credits = (m: string | null): string => (m === null ? '—' : (Number(m) / 1e6).toFixed(6));
  const rows = [
    ['date', 'model', 'jobs', 'prompt', 'completion', 'credits'],
    ...s.rows.map((r) => [r.date, r.model, String(r.jobs), String(r.promptTokens), String(r.completionTokens), credits(r.microCredits)]),
  ];
  rows.push([
    'total',
    '',
    String(s.totals.jobs),
    String(s.totals.promptTokens),
    String(s.totals.completionTokens),
    credits(s.totals.microCredits),
  ]);
  let out = table(rows);
  out += `Days in ${s.timeZone}. `;
  out +=
    s.priceSource === 'config'
      ? 'Credits: your share at the prices in config.json (an estimate; the gateway ledger settles).\n'
      : 'No prices configured (earnings.prices in config.json), so no credits are shown.\n';
  if (s.rejectedLines) out += `${s.rejectedLines} log lines were not receipts this agent signed; they are not counted.\n`;
  return out;
}

/** Runs `nightjar receipts`. */
export async function receiptsCommand(argv: string[], io: CliIo): Promise<number> {
  const f = flags(argv, { limit: { type: 'string' }, 'key-file': { type: 'string' } });
  if (f.help) return help(io);
  const limit = typeof f.limit === 'string' ? Number(f.limit) : 20;
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000)
    throw new NightjarError('NJ_USAGE', '--limit must be an integer from 1 to 1000');
  const client = await runningAgent(cliPaths(io));
  let page: ReceiptsPage;
  if (client) page = await client.call('receipts', { limit });
  else {
    const local = await localRecords(io, typeof f['key-file'] === 'string' ? f['key-file'] : undefined);
    page = { v: 1, receipts: [...local.receipts.receipts].reverse().slice(0, limit), total: local.receipts.receipts.length };
  }
  if (f.json) {
    io.stdout.write(JSON.stringify(page, null, 2) + '\n');
    return 0;
  }
  if (page.receipts.length === 0) {
    io.stdout.write('No receipts yet.\n');
    return 0;
  }
  const rows = [['ended', 'job', 'model', 'prompt', 'completion', 'finish', 'took']];
  for (const { receipt: r } of page.receipts) {
    rows.push([
      formatDateTime(r.endedAt),
      r.jobId,
      r.model,
      String(r.promptTokens),
      String(r.completionTokens),
      r.finishReason,
      formatDuration(r.endedAt - r.startedAt),
    ]);
  }
  io.stdout.write(table(rows) + `${page.receipts.length} of ${page.total} receipts, newest first.\n`);
  return 0;
}
