/**
 * `nightjar receipts --client`: the receipts this client verified, from its local log.
 */
import path from 'node:path';
import { NightjarError, formatDateTime, fromBase64Url, verifyReceipt } from '../../shared/index.js';
import { RECEIPT_LOG_NAME, VerifiedReceiptLog, type VerifiedReceiptLogEntry } from '../../client/index.js';
import type { CommandContext } from '../io.js';
import { table } from '../table.js';
import { dataDirFrom, reportError } from './common.js';

/** Flags of `nightjar receipts --client`. */
export interface ClientReceiptsFlags {
  /** The last N receipts; 0 for all. */
  limit: number;
  verify?: boolean;
  json?: boolean;
  dataDir?: string;
}

async function signatureOk(entry: VerifiedReceiptLogEntry): Promise<boolean> {
  try {
    await verifyReceipt(entry.receipt, { identityKey: fromBase64Url(entry.identityKey), agentId: entry.agentId });
    return true;
  } catch {
    return false;
  }
}

/** Runs `nightjar receipts --client`. */
export async function clientReceiptsCommand(values: ClientReceiptsFlags, { io }: CommandContext): Promise<number> {
  try {
    const { limit } = values;
    const dir = dataDirFrom(values, io);
    if (!dir) throw new NightjarError('NJ_USAGE', 'no home folder in the environment; pass --data-dir');
    const log = new VerifiedReceiptLog({ file: path.join(dir, RECEIPT_LOG_NAME) });
    const { entries, unreadable } = await log.read();
    const shown = limit === 0 ? entries : entries.slice(-limit);
    const checks = values.verify ? await Promise.all(shown.map(signatureOk)) : null;
    if (values.json) {
      shown.forEach((e, i) => io.stdout.write(JSON.stringify(checks ? { ...e, signatureOk: checks[i] } : e) + '\n'));
    } else if (entries.length === 0) {
      io.stdout.write(`No receipts yet in ${log.file}.\n`);
    } else {
      const header = ['SAVED', 'JOB', 'MODEL', 'AGENT', 'PROMPT', 'COMPLETION', 'FINISH', ...(checks ? ['SIGNATURE'] : [])];
      const rows = shown.map((e, i) => {
        const r = e.receipt.receipt;
        return [
          formatDateTime(e.savedAt, { seconds: true }),
          r.jobId.slice(0, 8),
          r.model,
          e.agentId.slice(0, 8),
          String(r.promptTokens),
          String(r.completionTokens),
          r.finishReason,
          ...(checks ? [checks[i] ? 'ok' : 'INVALID'] : []),
        ];
      });
      io.stdout.write(table([header, ...rows]));
      const totalPrompt = shown.reduce((n, e) => n + e.receipt.receipt.promptTokens, 0);
      const totalCompletion = shown.reduce((n, e) => n + e.receipt.receipt.completionTokens, 0);
      io.stderr.write(
        `${shown.length} of ${entries.length} receipts · ${totalPrompt} prompt + ${totalCompletion} completion tokens · ${log.file}\n`,
      );
    }
    if (unreadable > 0) io.stderr.write(`warning: ${unreadable} unreadable line(s) in ${log.file} were skipped\n`);
    if (checks?.includes(false)) {
      io.stderr.write('error NJ_RECEIPT_INVALID: a receipt in the log does not verify under its agent key\n');
      return 1;
    }
    return 0;
  } catch (err) {
    return reportError(io, err);
  }
}
