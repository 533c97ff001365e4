/**
 * The client's receipt log: one JSON line per receipt the client verified, in its data folder
 * (mode 0600). Receipts hold digests and token counts only — never prompt or reply text. (The
 * agent keeps its own log of the receipts it signed: SignedReceiptLog in src/main/agent.)
 */
import { appendFile, chmod, mkdir, readFile, rename, stat } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import {
  agentIdSchema,
  b64,
  modelIdSchema,
  signedReceiptSchema,
  trustSchema,
  withDefaults,
  type SignedReceipt,
  type Trust,
} from '../../shared/index.js';
import type { ChatResult } from '../sdk/index.js';

/** The log's file name inside the data folder. */
export const RECEIPT_LOG_NAME = 'receipts.jsonl';

const entrySchema = z.strictObject({
  v: z.literal(1),
  savedAt: z.int().min(0),
  gateway: z.string().max(2048),
  model: modelIdSchema,
  agentId: agentIdSchema,
  trust: trustSchema,
  /** The agent identity key that signed the receipt (base64url), so it can be checked again. */
  identityKey: b64(32),
  receipt: signedReceiptSchema,
});

/** One line of the receipt log. */
export interface VerifiedReceiptLogEntry {
  v: 1;
  /** When the client verified and saved it, ms since the epoch. */
  savedAt: number;
  /** The gateway the job went through. */
  gateway: string;
  model: string;
  agentId: string;
  trust: Trust;
  identityKey: string;
  receipt: SignedReceipt;
}

/** What reading the log found. */
export interface VerifiedReceiptLogContents {
  /** Entries, oldest first. */
  entries: VerifiedReceiptLogEntry[];
  /** Lines that could not be read as entries (a torn write, an edit). */
  unreadable: number;
}

/** Options of {@link VerifiedReceiptLog}. */
export interface VerifiedReceiptLogOptions {
  /** The log file. Required; usually `<client data dir>/receipts.jsonl`. */
  file: string;
  /** Milliseconds since the epoch, for savedAt. Defaults to Date.now. */
  now?: () => number;
  /**
   * Size past which the log is moved to `<file>.1` (replacing an older one) before the next
   * append. Defaults to 16 MiB.
   */
  maxBytes?: number;
}

/** The defaults of {@link VerifiedReceiptLogOptions}. */
export const RECEIPT_LOG_DEFAULTS: Readonly<Required<Omit<VerifiedReceiptLogOptions, 'file'>>> = {
  now: () => Date.now(),
  maxBytes: 16 * 1024 * 1024,
};

/** An append-only log of the receipts this client verified. Holds no file open between appends. */
export class VerifiedReceiptLog {
  readonly #o: Readonly<Required<VerifiedReceiptLogOptions>>;
  #tail: Promise<void> = Promise.resolve();

  constructor(options: VerifiedReceiptLogOptions) {
    this.#o = withDefaults(RECEIPT_LOG_DEFAULTS, options);
  }

  /** The log file's path. */
  get file(): string {
    return this.#o.file;
  }

  /** Appends the receipt of a verified result. */
  append(result: ChatResult, gateway: string): Promise<void> {
    const entry: VerifiedReceiptLogEntry = {
      v: 1,
      savedAt: this.#o.now(),
      gateway,
      model: result.model,
      agentId: result.agentId,
      trust: result.trust,
      identityKey: result.identityKey,
      receipt: result.signedReceipt,
    };
    const write = this.#tail.then(() => this.#write(JSON.stringify(entry) + '\n'));
    this.#tail = write.catch(() => undefined);
    return write;
  }

  /** Reads every entry. A missing log reads as empty. */
  async read(): Promise<VerifiedReceiptLogContents> {
    let text: string;
    try {
      text = await readFile(this.#o.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { entries: [], unreadable: 0 };
      throw err;
    }
    const entries: VerifiedReceiptLogEntry[] = [];
    let unreadable = 0;
    for (const line of text.split('\n')) {
      if (line.trim() === '') continue;
      try {
        const checked = entrySchema.safeParse(JSON.parse(line));
        if (checked.success) entries.push(checked.data);
        else unreadable++;
      } catch {
        unreadable++;
      }
    }
    return { entries, unreadable };
  }

  async #write(line: string): Promise<void> {
    const file = this.#o.file;
    await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
    const size = await stat(file).then(
      (s) => s.size,
      () => -1,
    );
    if (size >= this.#o.maxBytes) await rename(file, `${file}.1`);
    await appendFile(file, line, { mode: 0o600 });
    if (size <= 0) await chmod(file, 0o600);
  }
}
