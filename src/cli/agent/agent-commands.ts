/**
 * `nightjar status | pause | resume | serve-now | earnings | receipts`: talk to the running agent
 * through its control API. pause and resume also work when no agent runs (they set what the next
 * start does); earnings and receipts then read the agent's receipt log directly.
 */
import {
  NightjarError,
  formatCredits,
  formatDateTime,
  formatDuration,
  parseDuration,
  type AgentStatusSnapshot,
  type EarningsSummary,
  type Manual,
  type ReceiptsPage,
} from '../../shared/index.js';
import { loadIdentity, readSignedReceiptLog, saveStateFile, summarizeEarnings, systemTimeZone } from '../../main/agent/index.js';
import type { CommandContext, CommandIo } from '../io.js';
import { table } from '../table.js';
import { cliConfig, cliPaths, requireRunningAgent, runningAgent, secretStore } from './agent-context.js';

/** Flags of `nightjar status`. */
export interface StatusFlags {
  json?: boolean;
}

/** Flags of `nightjar pause` and `serve-now` (`resume` takes none). */
export interface ManualFlags {
  /** A duration such as 30m, 2h or 1d. */
  for?: string;
}

/** Flags of `nightjar earnings`. */
export interface EarningsFlags {
  days?: number;
  json?: boolean;
  keyFile?: string;
}

/** Flags of `nightjar receipts` (without --client). */
export interface ReceiptsFlags {
  limit: number;
  json?: boolean;
  keyFile?: string;
}

/** One paragraph about the agent's status. */
export function describeStatus(s: AgentStatusSnapshot, now = Date.now()): string {
  const lines = [`Agent ${s.agentId.slice(0, 12)}… ${s.state}${s.model ? ` · ${s.model.id}${s.model.loaded ? ' (loaded)' : ''}` : ''}`];
  lines.push(`  state     ${s.state} for ${formatDuration(now - s.since)}${s.reason ? ` — ${s.reason.message}` : ''}`);
  if (s.reason?.hint) lines.push(`            ${s.reason.hint}`);
  lines.push(`  gateway   ${s.gatewayUrl ?? 'not linked'} (${s.link})`);
  lines.push(
    `  jobs      ${s.activeJobs} running, ${s.jobsServed} served · ${s.freeSlots}/${s.totalSlots} slots free ` +
      `· ${s.tokensPerSecond.toFixed(1)} tokens/s · first token ${Math.round(s.ttftMs)} ms`,
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
      `  machine   ${idle}${e.screenLocked ? ' · screen locked' : ''} · ${power} · ` +
        `thermal ${e.thermal ?? 'unknown'} · memory pressure ${e.memoryPressure ?? 'unknown'}`,
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
export async function statusCommand(f: StatusFlags, { io, clock }: CommandContext): Promise<number> {
  const client = await requireRunningAgent(cliPaths(io));
  const status = await client.call('status', {});
  io.stdout.write(f.json ? JSON.stringify(status, null, 2) + '\n' : describeStatus(status, clock.now()));
  return 0;
}

/** Runs `nightjar pause`, `resume` and `serve-now`. */
export async function manualCommand(mode: Manual['mode'], f: ManualFlags, { io, clock }: CommandContext): Promise<number> {
  const until = typeof f.for === 'string' ? clock.now() + parseDuration(f.for, '--for') : null;
  const paths = cliPaths(io);
  const client = await runningAgent(paths);
  if (client) {
    const status =
      mode === 'paused'
        ? await client.call('pause', { until })
        : mode === 'serve-now'
          ? await client.call('serveNow', { until })
          : await client.call('resume', {});
    io.stdout.write(describeStatus(status, clock.now()));
    return 0;
  }
  if (mode === 'serve-now') throw new NightjarError('NJ_AGENT_NOT_RUNNING', 'No agent is running to serve now.');
  await saveStateFile(paths.stateFile, { manual: { mode, until } });
  io.stdout.write(
    'No agent is running; the next `nightjar serve` ' +
      `starts ${mode === 'paused' ? `paused${until === null ? '' : ` until ${formatDateTime(until)}`}` : 'following the policy'}.\n`,
  );
  return 0;
}

async function localRecords(
  io: CommandIo,
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
export async function earningsCommand(f: EarningsFlags, { io }: CommandContext): Promise<number> {
  const days = f.days;
  const client = await runningAgent(cliPaths(io));
  let summary: EarningsSummary;
  let note = '';
  if (client) summary = await client.call('earnings', days === undefined ? {} : { days });
  else {
    const local = await localRecords(io, f.keyFile);
    summary = summarizeEarnings({ ...local.receipts, timeZone: local.timeZone, prices: local.prices, operatorShare: local.share, days });
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
  const rows = [
    ['date', 'model', 'jobs', 'prompt', 'completion', 'credits'],
    ...s.rows.map((r) => [
      r.date,
      r.model,
      String(r.jobs),
      String(r.promptTokens),
      String(r.completionTokens),
      formatCredits(r.microCredits),
    ]),
  ];
  rows.push([
    'total',
    '',
    String(s.totals.jobs),
    String(s.totals.promptTokens),
    String(s.totals.completionTokens),
    formatCredits(s.totals.microCredits),
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
export async function receiptsCommand(f: ReceiptsFlags, { io }: CommandContext): Promise<number> {
  const limit = f.limit;
  if (limit < 1 || limit > 1000) throw new NightjarError('NJ_USAGE', '--limit must be an integer from 1 to 1000');
  const client = await runningAgent(cliPaths(io));
  let page: ReceiptsPage;
  if (client) page = await client.call('receipts', { limit });
  else {
    const local = await localRecords(io, f.keyFile);
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
