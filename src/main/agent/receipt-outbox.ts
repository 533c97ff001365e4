/**
 * Receipts the gateway has not acknowledged yet. A job whose link to the gateway dropped while it
 * ran is stopped within a token (JobRunner.linkLost) and still ends with a signed receipt for the
 * tokens it produced; its `done` could not be sent, so the receipt is kept here (and marked
 * undelivered in the receipt log, which survives a restart of the agent). After every welcome —
 * from the same gateway or a restarted one — each is sent as a `receipt` frame; the gateway
 * answers with a `receipt-ack` carrying what it did. Only that answer settles a receipt here:
 * no answer before the link drops leaves it for the next connection; `retry` sends it again after
 * `retryMs` on the same connection (a gateway in a cluster may be waiting for another node to let
 * the job go), and on the next connection if the link drops first. A receipt older
 * than `maxAgeMs` is given up, with a log line, and marked so in the log.
 *
 * A receipt sent in a `done` frame is not delivered yet either: the gateway may die before it
 * reads the frame. The gateway answers each `done` with a `receipt-ack` once it has billed it;
 * until then the receipt waits here ({@link ReceiptOutbox.sent}), in memory only (a job that
 * ended normally costs no extra write). When the link drops with such a receipt unanswered, it is
 * kept as undelivered (marked in the log) and sent again as a `receipt` after the next welcome,
 * where the gateway's idempotent late settlement settles it once or answers `duplicate`.
 *
 * An older gateway does not know the `receipt` frame and closes the link as a bad frame
 * (NJ_FRAME_INVALID). The outbox then stops delivering for the life of the process (a log line
 * says so), so the agent is not disconnected again at every welcome; the receipts stay in the log.
 */
import {
  PROTOCOL_VERSION,
  TimerSlot,
  type Disposable,
  silentLogger,
  systemClock,
  withDefaults,
  type AgentFrame,
  type Clock,
  type GatewayFrame,
  type Logger,
  type ReceiptOutcome,
  type SignedReceipt,
} from '../../shared/index.js';

/** Where the delivery state of receipts is kept (the agent's receipt log). */
export interface ReceiptDeliveryLog {
  /** Receipts marked undelivered and not acknowledged or given up since, oldest first. */
  undelivered(): readonly SignedReceipt[];
  /** Marks a receipt (already recorded) as not delivered to the gateway. */
  markUndelivered(receipt: SignedReceipt, at: number): Promise<void>;
  /** Marks an undelivered receipt as done with: what the gateway answered, or 'expired'. */
  markDelivered(jobId: string, attempt: number, outcome: Exclude<ReceiptOutcome, 'retry'> | 'expired', at: number): Promise<void>;
}

/** A delivery log that keeps nothing across restarts (the default when no receipt log is handed in). */
export class MemoryDeliveryLog implements ReceiptDeliveryLog {
  readonly #pending = new Map<string, SignedReceipt>();

  undelivered(): readonly SignedReceipt[] {
    return [...this.#pending.values()];
  }

  async markUndelivered(receipt: SignedReceipt): Promise<void> {
    this.#pending.set(keyOf(receipt.receipt.jobId, receipt.receipt.attempt), receipt);
  }

  async markDelivered(jobId: string, attempt: number): Promise<void> {
    this.#pending.delete(keyOf(jobId, attempt));
  }
}

/** Options of {@link ReceiptOutbox}. */
export interface ReceiptOutboxOptions {
  /** Sends a frame to the gateway; false if the link is down. Required. */
  send: (frame: AgentFrame) => boolean;
  /** Where the delivery state is kept. Defaults to a {@link MemoryDeliveryLog}. */
  log?: ReceiptDeliveryLog;
  /** Age (from the receipt's end) after which an undelivered receipt is given up. Defaults to 24 hours. */
  maxAgeMs?: number;
  /** How long after a `retry` answer a receipt is sent again on the same connection. Defaults to 60 000 ms. */
  retryMs?: number;
  /** Defaults to the system clock. */
  clock?: Clock;
  /** Defaults to a silent logger. */
  logger?: Logger;
}

const OUTBOX_DEFAULTS: Required<Omit<ReceiptOutboxOptions, 'send' | 'log'>> = {
  maxAgeMs: 24 * 3600_000,
  retryMs: 60_000,
  clock: systemClock,
  logger: silentLogger,
};

/** Undelivered receipts, sent after each welcome until the gateway acknowledges them. */
export class ReceiptOutbox implements Disposable {
  readonly #o: typeof OUTBOX_DEFAULTS & ReceiptOutboxOptions;
  readonly #log: ReceiptDeliveryLog;
  readonly #pending = new Map<string, SignedReceipt>();
  /** Sent on the current connection, waiting for their acknowledgement. */
  readonly #inFlight = new Set<string>();
  /** Sent in a `done` frame on the current connection, waiting for the gateway's acknowledgement. */
  readonly #awaiting = new Map<string, SignedReceipt>();
  /** Answered `retry` on the current connection: sent again when {@link ReceiptOutbox.#retry} fires. */
  readonly #retryLater = new Set<string>();
  readonly #retry: TimerSlot;
  #connected = false;
  #unsupported = false;

  constructor(options: ReceiptOutboxOptions) {
    this.#o = withDefaults(OUTBOX_DEFAULTS, options);
    this.#retry = new TimerSlot(this.#o.clock);
    this.#log = options.log ?? new MemoryDeliveryLog();
    for (const r of this.#log.undelivered()) this.#pending.set(keyOf(r.receipt.jobId, r.receipt.attempt), r);
  }

  /** Receipts not acknowledged yet. */
  get size(): number {
    return this.#pending.size;
  }

  /** Receipts sent in a `done` frame on this connection that the gateway has not acknowledged yet. */
  get awaitingAck(): number {
    return this.#awaiting.size;
  }

  /** Keeps a receipt whose `done` could not be delivered, and sends it at once if the link is up again. */
  async add(receipt: SignedReceipt): Promise<void> {
    const key = keyOf(receipt.receipt.jobId, receipt.receipt.attempt);
    this.#awaiting.delete(key);
    this.#pending.set(key, receipt);
    this.#o.logger.info('receipt kept for delivery on the next connection', { jobId: receipt.receipt.jobId });
    try {
      await this.#log.markUndelivered(receipt, this.#o.clock.now());
    } catch (err) {
      this.#o.logger.error('could not mark a receipt undelivered in the receipt log', { jobId: receipt.receipt.jobId, err: String(err) });
    }
    if (this.#connected) this.#deliver(key, receipt);
  }

  /** The link was welcomed: sends every receipt still pending (giving up those too old). */
  connected(): void {
    this.#connected = true;
    this.#inFlight.clear();
    this.#retryLater.clear();
    this.#retry.clear();
    const now = this.#o.clock.now();
    for (const [key, signed] of [...this.#pending]) {
      if (now - signed.receipt.endedAt > this.#o.maxAgeMs) {
        this.#pending.delete(key);
        this.#o.logger.warn('giving up on an undelivered receipt: too old for the gateway to settle', {
          jobId: signed.receipt.jobId,
          ageMs: now - signed.receipt.endedAt,
          maxAgeMs: this.#o.maxAgeMs,
        });
        void this.#mark(signed.receipt.jobId, signed.receipt.attempt, 'expired');
        continue;
      }
      this.#deliver(key, signed);
    }
  }

  /**
   * A receipt went out in a `done` frame: it waits for the gateway's acknowledgement. Receipts
   * waiting longer than `maxAgeMs` (a gateway that never acknowledges, over a link that stays
   * up) are let go, so the wait is bounded.
   */
  sent(receipt: SignedReceipt): void {
    if (this.#unsupported) return;
    const now = this.#o.clock.now();
    for (const [key, waiting] of this.#awaiting) {
      if (now - waiting.receipt.endedAt <= this.#o.maxAgeMs) break;
      this.#awaiting.delete(key);
    }
    this.#awaiting.set(keyOf(receipt.receipt.jobId, receipt.receipt.attempt), receipt);
  }

  /**
   * The link dropped: what was sent and not acknowledged — late receipts, and receipts sent in
   * `done` frames — goes again on the next connection.
   */
  disconnected(): void {
    this.#connected = false;
    this.#inFlight.clear();
    this.#retryLater.clear();
    this.#retry.clear();
    const unanswered = [...this.#awaiting.values()];
    this.#awaiting.clear();
    if (unanswered.length > 0) {
      this.#o.logger.info('the link dropped before the gateway acknowledged these done receipts', { receipts: unanswered.length });
    }
    for (const receipt of unanswered) void this.add(receipt);
  }

  /**
   * The gateway refused this link (a reject frame). A bad-frame refusal while receipts were in
   * flight means a gateway that does not know the `receipt` frame: stop sending them.
   */
  rejected(code: string): void {
    if (this.#inFlight.size === 0 || (code !== 'NJ_FRAME_INVALID' && code !== 'NJ_FRAME_UNEXPECTED')) return;
    this.#unsupported = true;
    this.#o.logger.warn('the gateway does not take late receipts (an older version); they stay undelivered in the receipt log', {
      receipts: this.#pending.size,
    });
  }

  /** The gateway's answer to a delivered receipt. */
  acknowledged(frame: Extract<GatewayFrame, { type: 'receipt-ack' }>): void {
    const key = keyOf(frame.jobId, frame.attempt);
    const done = this.#awaiting.get(key);
    if (done) {
      this.#awaiting.delete(key);
      this.#answeredDone(done, frame);
      return;
    }
    this.#inFlight.delete(key);
    if (!this.#pending.has(key)) return;
    const line = { jobId: frame.jobId, attempt: frame.attempt, outcome: frame.outcome, code: frame.code ?? null };
    if (frame.outcome === 'retry') {
      this.#o.logger.info('the gateway will take this receipt later; sending it again', { ...line, afterMs: this.#o.retryMs });
      this.#later(key);
      return;
    }
    this.#pending.delete(key);
    if (frame.outcome === 'settled' || frame.outcome === 'duplicate') this.#o.logger.info('late receipt settled', line);
    else this.#o.logger.warn('the gateway will not settle this receipt', { ...line, reason: frame.message ?? null });
    void this.#mark(frame.jobId, frame.attempt, frame.outcome);
  }

  /** The gateway's answer to a receipt sent in `done`: final, or (retry) kept for the next connection. */
  #answeredDone(signed: SignedReceipt, frame: Extract<GatewayFrame, { type: 'receipt-ack' }>): void {
    const line = { jobId: frame.jobId, attempt: frame.attempt, outcome: frame.outcome, code: frame.code ?? null };
    if (frame.outcome === 'retry') {
      const key = keyOf(frame.jobId, frame.attempt);
      // Not again at once: the gateway asked for later.
      if (this.#connected) this.#inFlight.add(key);
      void this.add(signed);
      if (this.#connected) this.#later(key);
      return;
    }
    if (frame.outcome === 'refused' || frame.outcome === 'unknown') {
      this.#o.logger.warn('the gateway will not settle this receipt', { ...line, reason: frame.message ?? null });
    } else {
      this.#o.logger.debug('receipt acknowledged', line);
    }
  }

  /** Sends `key` again after retryMs, if the link stays up (one timer for every such receipt). */
  #later(key: string): void {
    this.#inFlight.add(key);
    this.#retryLater.add(key);
    if (this.#retry.pending) return;
    this.#retry.set(this.#o.retryMs, () => {
      const keys = [...this.#retryLater];
      this.#retryLater.clear();
      for (const k of keys) {
        this.#inFlight.delete(k);
        const signed = this.#pending.get(k);
        if (signed && this.#connected) this.#deliver(k, signed);
      }
    });
  }

  /** Cancels the retry timer. */
  dispose(): void {
    this.#retry.dispose();
  }

  #deliver(key: string, signed: SignedReceipt): void {
    if (this.#unsupported || this.#inFlight.has(key)) return;
    const sent = this.#o.send({
      v: PROTOCOL_VERSION,
      type: 'receipt',
      jobId: signed.receipt.jobId,
      attempt: signed.receipt.attempt,
      receipt: signed,
    });
    if (sent) this.#inFlight.add(key);
  }

  async #mark(jobId: string, attempt: number, outcome: Exclude<ReceiptOutcome, 'retry'> | 'expired'): Promise<void> {
    try {
      await this.#log.markDelivered(jobId, attempt, outcome, this.#o.clock.now());
    } catch (err) {
      this.#o.logger.error('could not record a receipt delivery in the receipt log', { jobId, err: String(err) });
    }
  }
}

function keyOf(jobId: string, attempt: number): string {
  return `${jobId}:${attempt}`;
}
