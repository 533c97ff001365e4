/**
 * Reads newline-delimited JSON from a fetch body, one line at a time, with a bound on line size.
 */
import { NightjarError } from '../../shared/index.js';

/** Yields each non-empty line of `body`; throws NJ_FRAME_TOO_LARGE past `maxLineLength` chars. */
export async function* readNdjson(body: ReadableStream<Uint8Array>, maxLineLength: number): AsyncGenerator<string> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let newline: number;
      while ((newline = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
        if (line.length > 0) yield line;
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
