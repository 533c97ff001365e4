/**
 * `nightjar chat`: one prompt (argument or stdin) in, the verified reply streamed out; with no
 * prompt on a terminal (or with --interactive), a conversation that keeps its history.
 */
import { parseArgs } from 'node:util';
import { NightjarError, type ChatMessage } from '../../shared/index.js';
import type { ChatRequest } from '../../client/index.js';
import {
  CLIENT_FLAGS,
  CLIENT_FLAGS_USAGE,
  commandClient,
  numberFlag,
  pickModel,
  reportReplyError,
  summaryLine,
  type ClientCommandIo,
} from './common.js';
import { runRepl } from './repl.js';

/** Where `nightjar chat` reads and writes. */
export type ChatCommandIo = ClientCommandIo;

/** Usage text of `nightjar chat`. */
export const CHAT_USAGE = `Usage: nightjar chat [options] [prompt...]

Sends an end-to-end encrypted prompt through a Nightjar gateway and streams the reply.
With a prompt (or "-" for standard input), answers once. With no prompt on a terminal, or with
--interactive, holds a conversation: /reset starts over, /exit (or Ctrl-D) quits, Ctrl-C stops
the reply being written and a second Ctrl-C quits.

Options:
  --model ID           model to use (default: the first model the gateway offers)
  --system TEXT        a system message to send first
  --max-tokens N       most tokens to generate per reply (default 256)
  --temperature T      sampling temperature, 0 for greedy
  --top-p P, --top-k K, --seed N, --stop TEXT (repeatable)
  -i, --interactive    hold a conversation even when standard input is not a terminal
  --json               print the verified result as JSON instead of streaming text (one-shot)
  --quiet              do not print the summary line
${CLIENT_FLAGS_USAGE}  -h, --help           show this help
`;

async function readAll(stdin: AsyncIterable<string | Uint8Array>): Promise<string> {
  const decoder = new TextDecoder();
  let text = '';
  for await (const part of stdin) text += typeof part === 'string' ? part : decoder.decode(part, { stream: true });
  return text + decoder.decode();
}

/** Runs `nightjar chat`; resolves with the process exit code. */
export async function chatCommand(argv: string[], io: ChatCommandIo): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        ...CLIENT_FLAGS,
        model: { type: 'string' },
        system: { type: 'string' },
        'max-tokens': { type: 'string' },
        temperature: { type: 'string' },
        'top-p': { type: 'string' },
        'top-k': { type: 'string' },
        seed: { type: 'string' },
        stop: { type: 'string', multiple: true },
        interactive: { type: 'boolean', short: 'i' },
        json: { type: 'boolean' },
        quiet: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    io.stderr.write(`error NJ_USAGE: ${(err as Error).message}\n\n${CHAT_USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    io.stdout.write(CHAT_USAGE);
    return 0;
  }
  let wroteText = false;
  try {
    let prompt = positionals.join(' ');
    const interactive = values.interactive === true || (prompt === '' && io.stdin.isTTY === true);
    if (interactive && prompt !== '') throw new NightjarError('NJ_USAGE', '--interactive takes no prompt argument');
    if (interactive && values.json) throw new NightjarError('NJ_USAGE', '--json is for one-shot replies, not --interactive');

    const { client, allowSynthetic } = commandClient(values, io);
    const model = await pickModel(client, values.model, allowSynthetic, io.signal);
    const sampling: Omit<ChatRequest, 'model' | 'messages'> = {
      maxTokens: numberFlag(values['max-tokens'], 'max-tokens', true) ?? 256,
    };
    const temperature = numberFlag(values.temperature, 'temperature', false);
    const topP = numberFlag(values['top-p'], 'top-p', false);
    const topK = numberFlag(values['top-k'], 'top-k', true);
    const seed = numberFlag(values.seed, 'seed', true);
    if (temperature !== undefined) sampling.temperature = temperature;
    if (topP !== undefined) sampling.topP = topP;
    if (topK !== undefined) sampling.topK = topK;
    if (seed !== undefined) sampling.seed = seed;
    if (values.stop) sampling.stop = values.stop;

    if (interactive) {
      return await runRepl({
        client,
        model,
        ...(values.system ? { system: values.system } : {}),
        request: sampling,
        quiet: values.quiet ?? false,
        io,
      });
    }

    if (prompt === '' || prompt === '-') {
      if (io.stdin.isTTY) throw new NightjarError('NJ_USAGE', 'give a prompt as an argument or on standard input');
      prompt = (await readAll(io.stdin)).trimEnd();
    }
    if (prompt === '') throw new NightjarError('NJ_USAGE', 'the prompt is empty');
    const messages: ChatMessage[] = [];
    if (values.system) messages.push({ role: 'system', content: values.system });
    messages.push({ role: 'user', content: prompt });
    const stream = client.chat({
      model,
      messages,
      ...sampling,
      ...(io.signal ? { signal: io.signal } : {}),
      onRetry: ({ error, delayMs }) => {
        if (!values.quiet) io.stderr.write(`[${error.code}; sending again in ${(delayMs / 1000).toFixed(1)} s]\n`);
      },
    });
    if (!values.json) {
      for await (const delta of stream) {
        io.stdout.write(delta);
        wroteText = true;
      }
    }
    const result = await stream.result;
    if (values.json) {
      io.stdout.write(JSON.stringify(result, null, 2) + '\n');
    } else {
      io.stdout.write('\n');
      if (!values.quiet) io.stderr.write(summaryLine(result));
    }
    return 0;
  } catch (err) {
    if (wroteText) io.stdout.write('\n');
    return reportReplyError(io, err);
  }
}
