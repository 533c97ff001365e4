/**
 * The interactive side of `nightjar chat`: a conversation whose history stays in memory (and
 * nowhere else), line editing and input history on a terminal, and Ctrl-C that stops the reply
 * being written — a second Ctrl-C quits. Each conversation has its own cache key (a new one on
 * /reset), so the agent that served a turn keeps it warm for the next.
 */
import readline from 'node:readline';
import { Readable, type Writable } from 'node:stream';
import { NightjarError, type ChatMessage } from '../../shared/index.js';
import { IncompleteReplyError, newCacheKey, type ChatRequest, type ChatStream, type NightjarClient } from '../../client/index.js';
import { reportReplyError, summaryLine, type ClientCommandIo } from './common.js';

/** Options of {@link runRepl}. */
export interface ReplOptions {
  client: NightjarClient;
  model: string;
  /** A system message kept at the head of the conversation. Defaults to none. */
  system?: string;
  /** Sampling parameters of every reply. Defaults to the SDK's. */
  request?: Omit<ChatRequest, 'model' | 'messages' | 'signal'>;
  /** Leave out the summary line after each reply. Defaults to false. */
  quiet?: boolean;
  /**
   * Most messages (user and assistant, the system message aside) kept; older turns are dropped
   * first. Defaults to 200.
   */
  maxMessages?: number;
  /** Lines of input history on a terminal. Defaults to 100. */
  historySize?: number;
  io: ClientCommandIo;
}

/** Help shown by /help. */
export const REPL_HELP = `Commands: /reset starts a new conversation, /exit quits (so does Ctrl-D).
Ctrl-C stops the reply being written; Ctrl-C at an empty prompt, twice, quits.
`;

function isStream(value: unknown): value is Writable & { isTTY?: boolean } {
  return typeof value === 'object' && value !== null && typeof (value as { on?: unknown }).on === 'function';
}

/** Runs the conversation until /exit, end of input or the command's signal; resolves with the exit code. */
export async function runRepl(options: ReplOptions): Promise<number> {
  const { client, model, io } = options;
  const maxMessages = options.maxMessages ?? 200;
  const input = (isStream(io.stdin) ? io.stdin : Readable.from(io.stdin)) as NodeJS.ReadableStream;
  const terminal = io.stdin.isTTY === true && isStream(io.stdout) && io.stdout.isTTY === true;
  const rl = readline.createInterface({
    input,
    output: terminal ? (io.stdout as Writable) : undefined,
    terminal,
    historySize: options.historySize ?? 100,
    prompt: 'you› ',
  });
  const head: ChatMessage[] = options.system ? [{ role: 'system', content: options.system }] : [];
  let turns: ChatMessage[] = [];
  let cacheKey = newCacheKey();
  let current: ChatStream | null = null;
  // A Ctrl-C that stopped a reply, or hit an empty prompt, arms the next one to quit.
  let armed = false;
  // Set when the person quits (Ctrl-C twice, the signal): lines still buffered are dropped. The
  // end of piped input is not quitting: every line read before it is answered.
  let quitting = false;

  const onAbort = (): void => {
    quitting = true;
    current?.cancel();
    rl.close();
  };
  io.signal?.addEventListener('abort', onAbort, { once: true });

  rl.on('SIGINT', () => {
    if (current) {
      current.cancel();
      armed = true;
      return;
    }
    if (rl.line.length > 0) {
      // Like a shell: Ctrl-C drops the line being typed.
      rl.write(null, { ctrl: true, name: 'u' });
      armed = false;
      return;
    }
    if (armed) {
      quitting = true;
      rl.close();
      return;
    }
    armed = true;
    io.stderr.write('\n(Ctrl-C again or /exit to quit)\n');
    rl.prompt();
  });

  if (terminal) {
    io.stderr.write(`Chatting with ${model} through ${client.gatewayUrl}, end to end encrypted. /help for commands.\n`);
    rl.prompt();
  }
  try {
    for await (const line of rl) {
      if (quitting) break;
      armed = false;
      const text = line.trim();
      if (text === '') {
        if (terminal) rl.prompt();
        continue;
      }
      if (text.startsWith('/')) {
        const command = text.split(/\s+/)[0];
        if (command === '/exit' || command === '/quit') break;
        if (command === '/reset') {
          turns = [];
          cacheKey = newCacheKey();
          io.stderr.write('[new conversation]\n');
        } else {
          io.stderr.write(REPL_HELP);
        }
        if (terminal) rl.prompt();
        continue;
      }
      turns.push({ role: 'user', content: line });
      while (turns.length > maxMessages) turns.splice(0, turns[1]?.role === 'assistant' ? 2 : 1);
      const reply = await replyTo(options, [...head, ...turns], cacheKey, (s) => (current = s));
      current = null;
      if (reply === null) turns.pop();
      else turns.push({ role: 'assistant', content: reply });
      if (quitting) break;
      if (terminal) rl.prompt();
    }
  } finally {
    io.signal?.removeEventListener('abort', onAbort);
    rl.close();
  }
  if (terminal) io.stderr.write('\n');
  return io.signal?.aborted ? 130 : 0;
}

/** Streams one reply; resolves with its text, or null when it did not complete. */
async function replyTo(
  options: ReplOptions,
  messages: ChatMessage[],
  cacheKey: string,
  setCurrent: (s: ChatStream) => void,
): Promise<string | null> {
  const { client, model, io } = options;
  const stream = client.chat({
    model,
    messages,
    cacheKey,
    ...options.request,
    onRetry: ({ error, delayMs }) => {
      if (!options.quiet) io.stderr.write(`[${error.code}; sending again in ${(delayMs / 1000).toFixed(1)} s]\n`);
    },
  });
  setCurrent(stream);
  let wrote = false;
  try {
    for await (const delta of stream) {
      io.stdout.write(delta);
      wrote = true;
    }
    const result = await stream.result;
    io.stdout.write('\n');
    if (!options.quiet) io.stderr.write(summaryLine(result));
    return result.text;
  } catch (err) {
    if (wrote) io.stdout.write('\n');
    if (err instanceof NightjarError && err.code === 'NJ_CANCELLED' && !(err instanceof IncompleteReplyError)) {
      io.stderr.write('[reply stopped; it is not part of the conversation]\n');
    } else {
      reportReplyError(io, err);
    }
    return null;
  }
}
