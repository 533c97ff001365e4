/** Awaiting what the gateway's events say, instead of polling for it. */
import { nextEvent, systemClock, type Event } from '../../../src/shared/index.js';

/**
 * Resolves once `holds()` is true: at once if it already is, else at the first value of `event`
 * after which it is. Rejects with NJ_TIMEOUT naming `what` after `timeoutMs` of real time.
 */
export async function whenEvent<T>(event: Event<T>, holds: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  if (holds()) return;
  await nextEvent(event, () => holds(), { clock: systemClock, timeoutMs, what });
}
