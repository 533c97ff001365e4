/**
 * `nightjar proxy`: runs the OpenAI/Anthropic-compatible proxy on loopback until stopped.
 */
import { parseArgs } from 'node:util';
import { createLogger } from '../../node/index.js';
import { NightjarError, type Logger } from '../../shared/index.js';
import { CompatProxy } from '../../client/index.js';
import { CLIENT_FLAGS, CLIENT_FLAGS_USAGE, commandClient, numberFlag, reportError, type ClientCommandIo } from './common.js';

/** Usage text of `nightjar proxy`. */
export const PROXY_USAGE = `Usage: nightjar proxy [options]

Serves the OpenAI Chat Completions API (/v1/chat/completions, /v1/models) and the Anthropic
Messages API (/v1/messages) on a loopback port, for any unmodified client. Every request is
sealed end to end here, for agents this machine verified; replies are opened and their receipts
checked here. The gateway sees ciphertext only.

  OPENAI_BASE_URL=http://127.0.0.1:8788/v1      ANTHROPIC_BASE_URL=http://127.0.0.1:8788

Options:
  --port N             port to listen on (default 8788; 0 picks a free one)
  --host ADDR          address to listen on (default 127.0.0.1; anything else needs --token)
  --token TOKEN        require this token from callers, as their API key (env NIGHTJAR_PROXY_TOKEN)
  --allow-origin URL   let web pages from this origin call the proxy (repeatable)
  --default-max-tokens N  max tokens when an OpenAI request names none (default 1024)
  --log-level LEVEL    debug, info, warn or error (default info); no prompt or reply is ever logged
${CLIENT_FLAGS_USAGE}  -h, --help           show this help
`;

/** What `nightjar proxy` needs besides the client io. */
export interface ProxyCommandIo extends ClientCommandIo {
  /** Makes the logger for request lines. Defaults to JSON lines on stderr. */
  logger?: (level: string | undefined) => Logger;
  /** Told the proxy's URL once it listens (tests). Defaults to none. */
  onListening?: (url: string) => void;
}

/** Runs `nightjar proxy` until io.signal aborts; resolves with the exit code. */
export async function proxyCommand(argv: string[], io: ProxyCommandIo): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        ...CLIENT_FLAGS,
        port: { type: 'string' },
        host: { type: 'string' },
        token: { type: 'string' },
        'allow-origin': { type: 'string', multiple: true },
        'default-max-tokens': { type: 'string' },
        'log-level': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    io.stderr.write(`error NJ_USAGE: ${(err as Error).message}\n\n${PROXY_USAGE}`);
    return 2;
  }
  if (values.help) {
    io.stdout.write(PROXY_USAGE);
    return 0;
  }
  try {
    const port = numberFlag(values.port, 'port', true) ?? 8788;
    if (port < 0 || port > 65535) throw new NightjarError('NJ_USAGE', '--port must be from 0 to 65535');
    const defaultMaxTokens = numberFlag(values['default-max-tokens'], 'default-max-tokens', true);
    const level = values['log-level'];
    if (level !== undefined && !['debug', 'info', 'warn', 'error'].includes(level)) {
      throw new NightjarError('NJ_USAGE', '--log-level must be one of debug, info, warn, error');
    }
    const { client, gatewayUrl, allowSynthetic, dataDir } = commandClient(values, io);
    const token = values.token ?? io.env.NIGHTJAR_PROXY_TOKEN;
    const logger =
      io.logger?.(level) ??
      createLogger({
        level: (level as 'debug' | 'info' | 'warn' | 'error' | undefined) ?? 'info',
        write: (line) => io.stderr.write(line + '\n'),
      });
    const proxy = await CompatProxy.start({
      client,
      port,
      ...(values.host ? { host: values.host } : {}),
      ...(token ? { token } : {}),
      ...(values['allow-origin'] ? { allowOrigins: values['allow-origin'] } : {}),
      ...(defaultMaxTokens === undefined ? {} : { defaultMaxTokens }),
      listSynthetic: allowSynthetic,
      logger,
    });
    io.stdout.write(
      `Nightjar proxy on ${proxy.url}, sealing requests for agents behind ${gatewayUrl}\n` +
        `  OpenAI clients:    OPENAI_BASE_URL=${proxy.url}/v1\n` +
        `  Anthropic clients: ANTHROPIC_BASE_URL=${proxy.url}\n` +
        (token
          ? '  API key: the token you gave (--token / NIGHTJAR_PROXY_TOKEN)\n'
          : '  API key: any (no --token given; only programs on this machine can reach it)\n') +
        (dataDir ? `  pins and receipts: ${dataDir}\n` : '') +
        'Ctrl-C stops it.\n',
    );
    io.onListening?.(proxy.url);
    await new Promise<void>((resolve) => {
      if (!io.signal || io.signal.aborted) return resolve();
      io.signal.addEventListener('abort', () => resolve(), { once: true });
    });
    await proxy.dispose();
    return 0;
  } catch (err) {
    return reportError(io, err);
  }
}
