/**
 * A cheap bound on how deeply a JSON text nests, checked BEFORE JSON.parse: parsing a body of
 * millions of `[` costs seconds of event-loop time and memory before any schema could refuse it,
 * while this scan is one pass over the bytes with no allocation.
 *
 * The scan counts `[` and `{` outside string literals (a `"` opens and closes one; a backslash
 * escapes the next character), so for valid JSON the depth it finds is the value's real depth: a
 * scalar is 0, `[]` and `{}` are 1, `[[1]]` is 2. For text that is not JSON it still returns
 * a number and never throws; JSON.parse, which runs only on text within the bound, refuses it.
 * Bytes are scanned as they are: UTF-8 never puts `"`, `\`, brackets or braces inside a
 * multi-byte character, so a Uint8Array of UTF-8 and its decoded string scan alike.
 */

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_SQUARE = 0x5b;
const CLOSE_SQUARE = 0x5d;
const OPEN_CURLY = 0x7b;
const CLOSE_CURLY = 0x7d;

/**
 * The deepest nesting of `data` (a JSON text, as a string or UTF-8 bytes), or `stopAbove + 1`
 * as soon as the scan passes `stopAbove` (the rest is not read). Defaults to scanning it all.
 */
export function jsonDepth(data: string | Uint8Array, stopAbove: number = Number.POSITIVE_INFINITY): number {
  const text = typeof data === 'string';
  const length = text ? data.length : data.byteLength;
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < length; i++) {
    const c = text ? data.charCodeAt(i) : data[i]!;
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
    } else if (c === QUOTE) {
      inString = true;
    } else if (c === OPEN_SQUARE || c === OPEN_CURLY) {
      depth++;
      if (depth > max) {
        max = depth;
        if (max > stopAbove) return max;
      }
    } else if ((c === CLOSE_SQUARE || c === CLOSE_CURLY) && depth > 0) {
      depth--;
    }
  }
  return max;
}

/** True if `data` nests deeper than `maxDepth` levels; stops reading at the first level too many. */
export function jsonTooDeep(data: string | Uint8Array, maxDepth: number): boolean {
  return jsonDepth(data, maxDepth) > maxDepth;
}
