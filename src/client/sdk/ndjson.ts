/**
 * Reads newline-delimited JSON from a fetch body, one line at a time, with a bound on line size.
 *
 * Keepalives: a gateway that streams keepalives writes an empty line when it has had nothing else
 * to write for a moment (docs/api.md). Once one has arrived, the stream is known to be kept alive,
 * and silence for `idleMs` means the connection is gone (a gateway killed behind a proxy, a cut
 * network): the read ends with NJ_STREAM_BROKEN instead of hanging until TCP gives up. A gateway
 * that sends no keepalives is never timed out this way.
 */
import { NightjarError, raceClock, systemClock, type Clock } from '../../shared/index.js';

/** Options of {@link readNdjson}. */
export interface NdjsonOptions {
  /** Silence (after a first keepalive) that ends the stream with NJ_STREAM_BROKEN; 0 never. Defaults to 0. */
  idleMs?: number;
  /** The clock the silence is timed on. Defaults to the system clock. */
  clock?: Clock;
  /** Names the peer in the error. Defaults to 'the gateway'. */
  peer?: string;
}

/** Yields each non-empty line of `body`; throws NJ_FRAME_TOO_LARGE past `maxLineLength` chars. */
export async function* readNdjson(
  body: ReadableStream<Uint8Array>,
  maxLineLength: number,
  options: NdjsonOptions = {},
): AsyncGenerator<string> {
  const idleMs = options.idleMs ?? 0;
  const clock = options.clock ?? systemClock;
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let keptAlive = false;
  try {
    for (;;) {
      const read = reader.read();
      let next: ReadableStreamReadResult<Uint8Array>;
      if (keptAlive && idleMs > 0) {
        const raced = await raceClock(clock, idleMs, read);
        if (!raced.done) {
          read.catch(() => undefined);
          throw new NightjarError(
            'NJ_STREAM_BROKEN',
            `${options.peer ?? 'the gateway'} went silent for ${idleMs} ms mid-reply, though it sends keepalives; the connection is gone`,
          );
        }
        next = raced.value;
      } else {
        next = await read;
      }
      const { value, done } = next;
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let newline: number;
      while ((newline = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
        if (line.length > 0) yield line;
        else keptAlive = true;
      }
      if (buffer.length > maxLineLength) {
        throw new NightjarError('NJ_FRAME_TOO_LARGE', `a reply line exceeds ${maxLineLength} characters`);
      }
    }
    buffer += decoder.decode();
    if (buffer.trim().length > 0) yield buffer;
  } finally {
    await reader.cancel().catch(() => undefined);
    reader.releaseLock();
  }
}
