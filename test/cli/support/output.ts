/**
 * What a command writes, and a way to await a pattern in it: each write wakes the waiters, so a
 * test awaits the output event instead of re-checking a condition on a timer.
 */

interface Waiter {
  test(text: string): boolean;
  resolve(text: string): void;
}

/** Text written to one stream (a command's stdout or stderr, a child's pipe). */
export class Output {
  #text = '';
  readonly #waiters = new Set<Waiter>();
  #ended: string | null = null;

  /** The stream to hand a command: `{ write }`. */
  readonly stream = {
    write: (text: string | Uint8Array): boolean => {
      this.#text += typeof text === 'string' ? text : Buffer.from(text).toString();
      for (const w of [...this.#waiters]) {
        if (w.test(this.#text)) {
          this.#waiters.delete(w);
          w.resolve(this.#text);
        }
      }
      return true;
    },
  };

  /** An Output fed by `readable` (a child's stdout, a PassThrough standing for a terminal). */
  static of(readable: NodeJS.ReadableStream): Output {
    const output = new Output();
    readable.on('data', (chunk: string | Uint8Array) => output.stream.write(chunk));
    readable.on('end', () => output.end('the stream ended'));
    return output;
  }

  /** Everything written so far. */
  get text(): string {
    return this.#text;
  }

  /** No more writes will come (the process exited): waiters still pending fail, saying `why`. */
  end(why: string): void {
    this.#ended = why;
    for (const w of [...this.#waiters]) w.resolve(this.#text);
  }

  /**
   * Resolves with the text once `pattern` matches it (now or after a later write); rejects, naming
   * `what` and showing the text, after `timeoutMs` or when the stream ends without it.
   */
  written(pattern: RegExp | ((text: string) => boolean), what: string, timeoutMs = 10_000): Promise<string> {
    const test = typeof pattern === 'function' ? pattern : (text: string) => pattern.test(text);
    if (test(this.#text)) return Promise.resolve(this.#text);
    return new Promise((resolve, reject) => {
      const fail = (why: string): void => {
        clearTimeout(timer);
        this.#waiters.delete(waiter);
        reject(new Error(`waiting for ${what}: ${why}; the output was:\n${this.#text}`));
      };
      const timer = setTimeout(() => fail(`nothing after ${timeoutMs} ms`), timeoutMs);
      const waiter: Waiter = {
        test,
        resolve: (text) => {
          clearTimeout(timer);
          if (test(text)) resolve(text);
          else fail(this.#ended ?? 'it ended');
        },
      };
      if (this.#ended !== null) fail(this.#ended);
      else this.#waiters.add(waiter);
    });
  }
}
