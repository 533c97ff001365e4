/**
 * `nightjar receipts --client`: the receipts this client verified, from its local log.
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { NightjarError, fromBase64Url, verifyReceipt } from '../../shared/index.js';
import { RECEIPT_LOG_NAME, VerifiedReceiptLog, type VerifiedReceiptLogEntry } from '../../client/index.js';
import { dataDirFrom, numberFlag, reportError, type ClientCommandIo } from './common.js';

/** Usage text of `nightjar receipts --client`. */
export const CLIENT_RECEIPTS_USAGE = `Usage: nightjar receipts --client [options]

Lists the receipts this client verified (newest last), from receipts.jsonl in the client data
folder. A receipt is the agent's signed statement of one job: tokens, model file, digests of the
request and reply ciphertexts — never their text.

Options:
  --limit N            show the last N receipts (default 20; 0 for all)
  --verify             check each receipt's signature again
  --json               print the entries as JSON lines
  --data-dir DIR       client data folder (env NIGHTJAR_CLIENT_DATA_DIR)
  -h, --help           show this help
`;

function time(ms: number): string {
  return new Date(ms).toISOString().replace('T', ' ').slice(0, 19);
}

async function signatureOk(entry: VerifiedReceiptLogEntry): Promise<boolean> {
  try {
    await verifyReceipt(entry.receipt, { identityKey: fromBase64Url(entry.identityKey), agentId: entry.agentId });
    return true;
  } catch {
    return false;
  }
}

/** Runs `nightjar receipts --client` (a `--client` flag in argv is accepted and skipped). */
export async function clientReceiptsCommand(argv: string[], io: ClientCommandIo): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        client: { type: 'boolean' },
        limit: { type: 'string' },
        verify: { type: 'boolean' },
        json: { type: 'boolean' },
        'data-dir': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    io.stderr.write(`error NJ_USAGE: ${(err as Error).message}\n\n${CLIENT_RECEIPTS_USAGE}`);
    return 2;
  }
  if (values.help) {
    io.stdout.write(CLIENT_RECEIPTS_USAGE);
    return 0;
  }
  try {
    const limit = numberFlag(values.limit, 'limit', true) ?? 20;
    if (limit < 0) throw new NightjarError('NJ_USAGE', '--limit must be 0 or more');
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
      const header = ['SAVED (UTC)', 'JOB', 'MODEL', 'AGENT', 'PROMPT', 'COMPLETION', 'FINISH', ...(checks ? ['SIGNATURE'] : [])];
      const rows = shown.map((e, i) => {
        const r = e.receipt.receipt;
        return [
          time(e.savedAt),
          r.jobId.slice(0, 8),
          r.model,
          e.agentId.slice(0, 8),
          String(r.promptTokens),
          String(r.completionTokens),
          r.finishReason,
          ...(checks ? [checks[i] ? 'ok' : 'INVALID'] : []),
        ];
      });
      const all = [header, ...rows];
      const widths = header.map((_, i) => Math.max(...all.map((r) => r[i]!.length)));
      for (const r of all)
        io.stdout.write(
          r
            .map((c, i) => c.padEnd(widths[i]!))
            .join('  ')
            .trimEnd() + '\n',
        );
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
