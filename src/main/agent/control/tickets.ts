/**
 * One-time dashboard tickets. The agent opens `http://127.0.0.1:PORT/#ticket=…` (see docs/app.md):
 * a fragment is never sent to a server, a ticket works once and for a minute, and redeeming it
 * needs this server's own Origin (checked by the route), so the URL left in a browser's history or
 * a process list is worthless. Tickets are kept as digests only.
 */
import { createHash, randomBytes } from 'node:crypto';
import { toBase64Url, type Clock } from '../../../shared/index.js';

/** Longest ticket looked up (a real one is 43 characters). */
const MAX_TICKET_LENGTH = 128;

function key(ticket: string): string {
  return createHash('sha256').update(ticket).digest('hex');
}

/** The tickets issued and not yet redeemed or lapsed. */
export class DashboardTickets {
  readonly #clock: Clock;
  readonly #ttlMs: number;
  /** Ticket digests and when they lapse. */
  readonly #lapse = new Map<string, number>();

  constructor(clock: Clock, ttlMs: number) {
    this.#clock = clock;
    this.#ttlMs = ttlMs;
  }

  /** A fresh ticket (32 random bytes, base64url), good once for the ticket lifetime. */
  issue(): string {
    const now = this.#clock.now();
    for (const [k, lapse] of this.#lapse) if (lapse <= now) this.#lapse.delete(k);
    const ticket = toBase64Url(randomBytes(32));
    this.#lapse.set(key(ticket), now + this.#ttlMs);
    return ticket;
  }

  /** True once for a ticket issued here within its lifetime; the ticket is gone afterwards either way. */
  redeem(ticket: unknown): boolean {
    if (typeof ticket !== 'string' || ticket.length > MAX_TICKET_LENGTH) return false;
    const k = key(ticket);
    const lapse = this.#lapse.get(k);
    this.#lapse.delete(k);
    return lapse !== undefined && lapse > this.#clock.now();
  }
}
