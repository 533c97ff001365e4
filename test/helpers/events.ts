/**
 * Awaiting a condition the code announces with an event, instead of polling for it.
 */
import { nextEvent, systemClock, type Event } from '../../src/shared/index.js';

/**
 * Resolves once `holds()` is true: at once if it is, else after the first event of `event` that
 * finds it true. Rejects with NJ_TIMEOUT naming `what` after `timeoutMs` (real time).
 */
export async function onceTrue<T>(event: Event<T>, holds: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  if (holds()) return;
  await nextEvent(event, () => holds(), { clock: systemClock, timeoutMs, what });
}
