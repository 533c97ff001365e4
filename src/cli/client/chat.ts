/**
 * `nightjar chat`: one prompt (argument or stdin) in, the verified reply streamed out; with no
 * prompt on a terminal (or with --interactive), a conversation that keeps its history.
 */
import { chmod, writeFile } from 'node:fs/promises';
import { NightjarError, type ChatMessage } from '../../shared/index.js';
import type { ChatRequest } from '../../client/index.js';
import type { CommandContext } from '../io.js';
import { commandClient, pickModel, reportReplyError, summaryLine, type ClientCommandIo, type ClientFlagValues } from './common.js';
import { runRepl } from './repl.js';

/** Flags of `nightjar chat`. */
export interface ChatFlags extends ClientFlagValues {
  model?: string;
  system?: string;
  maxTokens: number;
  temperature?: number;
  topP?: number;
  topK?: number;
  seed?: number;
  stop?: string[];
  interactive?: boolean;
  json?: boolean;
  quiet?: boolean;
  /** Write the job's evidence (it holds the conversation's key) to this file, mode 0600. */
  keepEvidence?: string;
}

async function readAll(stdin: AsyncIterable<string | Uint8Array>): Promise<string> {
  const decoder = new TextDecoder();
  let text = '';
  for await (const part of stdin) text += typeof part === 'string' ? part : decoder.decode(part, { stream: true });
  return text + decoder.decode();
}

/** Runs `nightjar chat [prompt...]`; resolves with the process exit code. */
export async function chatCommand(values: ChatFlags, positionals: readonly string[], ctx: CommandContext): Promise<number> {
  const io: ClientCommandIo = { ...ctx.io, signal: ctx.signal };
  let wroteText = false;
  try {
    let prompt = positionals.join(' ');
    const interactive = values.interactive === true || (prompt === '' && io.stdin.isTTY === true);
    if (interactive && prompt !== '') throw new NightjarError('NJ_USAGE', '--interactive takes no prompt argument');
    if (interactive && values.json) throw new NightjarError('NJ_USAGE', '--json is for one-shot replies, not --interactive');
    if (interactive && values.keepEvidence !== undefined) {
      throw new NightjarError('NJ_USAGE', '--keep-evidence is for one-shot replies, not --interactive');
    }

    const { client, allowSynthetic } = await commandClient(values, io);
    const model = await pickModel(client, values.model, allowSynthetic, io.signal);
    const sampling: Omit<ChatRequest, 'model' | 'messages'> = {
      maxTokens: values.maxTokens,
      temperature: values.temperature,
      topP: values.topP,
      topK: values.topK,
      seed: values.seed,
      stop: values.stop,
    };

    if (interactive) {
      return await runRepl({
        client,
        model,
        system: values.system || undefined,
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
      signal: io.signal,
      keepEvidence: values.keepEvidence !== undefined,
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
    const { evidence, ...result } = await stream.result;
    if (values.keepEvidence !== undefined && evidence) {
      await writeFile(values.keepEvidence, JSON.stringify(evidence) + '\n', { mode: 0o600 });
      // A file that existed keeps its mode through writeFile: make it private either way.
      await chmod(values.keepEvidence, 0o600);
      if (!values.quiet) {
        io.stderr.write(
          `[evidence of job ${result.jobId} written to ${values.keepEvidence}: it holds this conversation's key, so whoever ` +
            'reads it can read the prompt and the reply; `nightjar dispute FILE` reveals it to the gateway]\n',
        );
      }
    }
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
