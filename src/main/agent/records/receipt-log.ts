/**
 * The agent's own record of its work: every receipt it signs, appended to a JSON-lines file and
 * fsync'd before the receipt is sent, so the owner can audit what the gateway pays for. Reading
 * checks each line's schema and signature against the agent's identity key; a torn last line (a
 * crash mid-append) or an altered line is counted as rejected, never summed.
 *
 * Delivery marks: a receipt whose `done` could not reach the gateway (the link dropped) is
 * followed by a line `{"delivery":{"jobId","attempt","state":"undelivered","at"}}`, and once the
 * gateway acknowledged it (or the agent gave up on it) by one with the final state. They are not
 * receipts and are neither summed nor counted as rejected; the log is still append-only. (A
 * reader older than the marks counts them as rejected lines.)
 */
import { mkdir, open, readFile, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import {
  CONTROL_API_VERSION,
  RECEIPT_OUTCOMES,
  jobIdSchema,
  attemptSchema,
  signedReceiptSchema,
  verifyReceipt,
  type AsyncResource,
  type EarningsRow,
  type EarningsSummary,
  type SignedReceipt,
} from '../../../shared/index.js';
import { errnoCode } from '../fs-util.js';
import type { ReceiptDeliveryLog } from '../receipt-outbox.js';

/** The delivery states a mark line records. */
export const DELIVERY_STATES = ['undelivered', ...RECEIPT_OUTCOMES.filter((o) => o !== 'retry'), 'expired'] as const;
/** A receipt's delivery state. */
export type DeliveryState = (typeof DELIVERY_STATES)[number];

const deliveryMarkSchema = z.strictObject({
  delivery: z.strictObject({
    jobId: jobIdSchema,
    attempt: attemptSchema,
    state: z.enum(DELIVERY_STATES),
    at: z.int().min(0).max(Number.MAX_SAFE_INTEGER),
  }),
});
/** One delivery mark line. */
export type DeliveryMark = z.infer<typeof deliveryMarkSchema>['delivery'];

/** The receipts of a log, oldest first, and how many lines were not valid receipts. */
export interface SignedReceiptLogContents {
  receipts: SignedReceipt[];
  rejectedLines: number;
  /** Delivery marks, oldest first. */
  marks?: DeliveryMark[];
}

/**
 * Reads a receipt log. With `identityKey`, a receipt counts only if this key signed it and it
 * names this key's agent.
 */
export async function readSignedReceiptLog(file: string, options: { identityKey?: Uint8Array } = {}): Promise<SignedReceiptLogContents> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return { receipts: [], rejectedLines: 0 };
    throw err;
  }
  const receipts: SignedReceipt[] = [];
  const marks: DeliveryMark[] = [];
  let rejectedLines = 0;
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      rejectedLines++;
      continue;
    }
    const mark = deliveryMarkSchema.safeParse(value);
    if (mark.success) {
      marks.push(mark.data.delivery);
      continue;
    }
    const parsed = signedReceiptSchema.safeParse(value);
    if (!parsed.success) {
      rejectedLines++;
      continue;
    }
    if (options.identityKey) {
      const ok = await verifyReceipt(parsed.data, { identityKey: options.identityKey }).then(
        () => true,
        () => false,
      );
      if (!ok) {
        rejectedLines++;
        continue;
      }
    }
    receipts.push(parsed.data);
  }
  return { receipts, rejectedLines, marks };
}

/** The receipts whose last delivery mark says undelivered, oldest first. */
export function undeliveredReceipts(contents: SignedReceiptLogContents): SignedReceipt[] {
  const last = new Map<string, DeliveryState>();
  for (const m of contents.marks ?? []) last.set(`${m.jobId}:${m.attempt}`, m.state);
  return contents.receipts.filter((r) => last.get(`${r.receipt.jobId}:${r.receipt.attempt}`) === 'undelivered');
}

/** Options of {@link SignedReceiptLog}. */
export interface SignedReceiptLogOptions {
  /** The log file. Required. */
  file: string;
  /** Checks signatures of the lines already in the file when opened. Defaults to none (no check). */
  identityKey?: Uint8Array;
}

/**
 * The agent's open log of the receipts it signed (the client keeps its own ReceiptLog of the
 * receipts it verified): reads what is there once, then appends.
 */
export class SignedReceiptLog implements AsyncResource, ReceiptDeliveryLog {
  readonly file: string;
  readonly #identityKey: Uint8Array | undefined;
  #handle: FileHandle | null = null;
  #contents: SignedReceiptLogContents = { receipts: [], rejectedLines: 0 };
  #queue: Promise<void> = Promise.resolve();
  #closed = false;

  private constructor(options: SignedReceiptLogOptions) {
    this.file = path.resolve(options.file);
    this.#identityKey = options.identityKey;
  }

  /** Opens (creating if needed, mode 0600) and reads the log. */
  static async open(options: SignedReceiptLogOptions): Promise<SignedReceiptLog> {
    const log = new SignedReceiptLog(options);
    await mkdir(path.dirname(log.file), { recursive: true, mode: 0o700 });
    log.#contents = await readSignedReceiptLog(log.file, { identityKey: log.#identityKey });
    const handle = await open(log.file, 'a', 0o600);
    // A crash mid-append leaves a line without its newline; end it so the next line stands alone.
    const size = (await stat(log.file)).size;
    if (size > 0) {
      const last = Buffer.alloc(1);
      const reader = await open(log.file, 'r');
      try {
        await reader.read(last, 0, 1, size - 1);
      } finally {
        await reader.close();
      }
      if (last[0] !== 0x0a) await handle.write('\n');
    }
    log.#handle = handle;
    return log;
  }

  /** Receipts in the log, oldest first. */
  get receipts(): readonly SignedReceipt[] {
    return this.#contents.receipts;
  }

  /** Lines that were not valid receipts when the log was opened. */
  get rejectedLines(): number {
    return this.#contents.rejectedLines;
  }

  /** Appends a receipt and fsyncs. Appends are serialised in call order. */
  append(receipt: SignedReceipt): Promise<void> {
    return this.#append(JSON.stringify(receipt), () => this.#contents.receipts.push(receipt));
  }

  /** Receipts marked undelivered and not acknowledged or given up since, oldest first. */
  undelivered(): readonly SignedReceipt[] {
    return undeliveredReceipts(this.#contents);
  }

  /** Appends a mark: this receipt (already appended) did not reach the gateway. */
  markUndelivered(receipt: SignedReceipt, at: number): Promise<void> {
    return this.#mark({ jobId: receipt.receipt.jobId, attempt: receipt.receipt.attempt, state: 'undelivered', at });
  }

  /** Appends a mark: the gateway answered for this receipt (or the agent gave up on it). */
  markDelivered(jobId: string, attempt: number, state: Exclude<DeliveryState, 'undelivered'>, at: number): Promise<void> {
    return this.#mark({ jobId, attempt, state, at });
  }

  #mark(mark: DeliveryMark): Promise<void> {
    return this.#append(JSON.stringify({ delivery: mark }), () => (this.#contents.marks ??= []).push(mark));
  }

  #append(line: string, done: () => void): Promise<void> {
    const run = this.#queue.then(async () => {
      if (this.#closed || !this.#handle) throw new Error('the receipt log is closed');
      await this.#handle.write(line + '\n');
      await this.#handle.datasync();
      done();
    });
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /** Waits for pending appends and closes the file. */
  async dispose(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#queue;
    await this.#handle?.close();
    this.#handle = null;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }
}

/** A model's price: micro-credits per million tokens, as decimal strings. */
export interface ModelPrice {
  promptPerMTok: string;
  completionPerMTok: string;
}

/** What {@link summarizeEarnings} needs. */
export interface EarningsOptions {
  receipts: readonly SignedReceipt[];
  rejectedLines: number;
  /** Days are counted in this time zone. */
  timeZone: string;
  /** Prices per model id (from config). */
  prices: Readonly<Record<string, ModelPrice>>;
  /** The operator's share, 0–1. */
  operatorShare: number;
  /** Only receipts that ended within the last `days` days of `now`. Defaults to all. */
  days?: number;
  /** Defaults to Date.now(). */
  now?: number;
}

const dayFormatters = new Map<string, Intl.DateTimeFormat>();

/** YYYY-MM-DD of `ms` in `timeZone`. */
export function localDate(ms: number, timeZone: string): string {
  let f = dayFormatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-CA', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit' });
    dayFormatters.set(timeZone, f);
  }
  return f.format(ms);
}

/**
 * Micro-credits the operator earns for these tokens: (prompt × price + completion × price) / 10^6
 * × share, rounded down, in exact integer arithmetic. An estimate: the gateway's ledger settles
 * each job and is the authority.
 */
export function operatorMicroCredits(promptTokens: number, completionTokens: number, price: ModelPrice, operatorShare: number): bigint {
  const gross = BigInt(promptTokens) * BigInt(price.promptPerMTok) + BigInt(completionTokens) * BigInt(price.completionPerMTok);
  const shareBasisPoints = BigInt(Math.round(operatorShare * 10_000));
  return (gross * shareBasisPoints) / 10_000_000_000n;
}

/** Tokens (and, where priced, credits) per day and model. Rows newest day first. */
export function summarizeEarnings(options: EarningsOptions): EarningsSummary {
  const now = options.now ?? Date.now();
  const from = options.days === undefined ? -Infinity : now - options.days * 86_400_000;
  const rows = new Map<string, EarningsRow>();
  for (const { receipt } of options.receipts) {
    if (receipt.endedAt < from) continue;
    const date = localDate(receipt.endedAt, options.timeZone);
    const key = `${date} ${receipt.model}`;
    const row = rows.get(key) ?? { date, model: receipt.model, jobs: 0, promptTokens: 0, completionTokens: 0, microCredits: null };
    row.jobs++;
    row.promptTokens += receipt.promptTokens;
    row.completionTokens += receipt.completionTokens;
    rows.set(key, row);
  }
  const list = [...rows.values()].sort((a, b) => b.date.localeCompare(a.date) || a.model.localeCompare(b.model));
  let totalCredits: bigint | null = 0n;
  for (const row of list) {
    const price = options.prices[row.model];
    const credits = price ? operatorMicroCredits(row.promptTokens, row.completionTokens, price, options.operatorShare) : null;
    row.microCredits = credits === null ? null : credits.toString();
    totalCredits = credits === null || totalCredits === null ? null : totalCredits + credits;
  }
  return {
    v: CONTROL_API_VERSION,
    timeZone: options.timeZone,
    priceSource: Object.keys(options.prices).length > 0 ? 'config' : 'none',
    rows: list,
    totals: {
      jobs: list.reduce((n, r) => n + r.jobs, 0),
      promptTokens: list.reduce((n, r) => n + r.promptTokens, 0),
      completionTokens: list.reduce((n, r) => n + r.completionTokens, 0),
      microCredits: totalCredits === null ? null : totalCredits.toString(),
    },
    rejectedLines: options.rejectedLines,
  };
}
