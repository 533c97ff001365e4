/**
 * `nightjar proxy`: runs the OpenAI/Anthropic/Ollama-compatible proxy on loopback until stopped.
 */
import { CompatProxy } from '../../client/index.js';
import { untilAborted, type CommandContext } from '../io.js';
import { SECRETS, readSecret } from '../secrets.js';
import { commandClient, reportError, type ClientCommandIo, type ClientFlagValues } from './common.js';

/** Flags of `nightjar proxy`. */
export interface ProxyFlags extends ClientFlagValues {
  port: number;
  host?: string;
  /** The callers' token on the command line (warned about: other users can see it). */
  token?: string;
  /** A file holding the callers' token (mode 0600). */
  tokenFile?: string;
  allowOrigin?: string[];
  defaultMaxTokens?: number;
}

/** Runs `nightjar proxy` until the context's signal aborts; resolves with the exit code. */
export async function proxyCommand(values: ProxyFlags, ctx: CommandContext): Promise<number> {
  const io: ClientCommandIo = { ...ctx.io, signal: ctx.signal };
  try {
    const { port, defaultMaxTokens } = values;
    const { client, gatewayUrl, allowSynthetic, dataDir } = await commandClient(values, io);
    const token = await readSecret(SECRETS.proxyToken, { value: values.token, file: values.tokenFile }, io);
    const logger = ctx.logger('proxy');
    const proxy = await CompatProxy.start({
      client,
      port,
      host: values.host || undefined,
      token,
      allowOrigins: values.allowOrigin,
      defaultMaxTokens,
      listSynthetic: allowSynthetic,
      logger,
    });
    io.stdout.write(
      `Nightjar proxy on ${proxy.url}, sealing requests for agents behind ${gatewayUrl}\n` +
        `  OpenAI clients:    OPENAI_BASE_URL=${proxy.url}/v1\n` +
        `  Anthropic clients: ANTHROPIC_BASE_URL=${proxy.url}\n` +
        `  Ollama clients:    OLLAMA_HOST=${proxy.url}\n` +
        (token
          ? '  API key: the token you gave (--token-file, NIGHTJAR_PROXY_TOKEN or --token)\n'
          : '  API key: any (no token given; only programs on this machine can reach it)\n') +
        (dataDir ? `  pins and receipts: ${dataDir}\n` : '') +
        'Ctrl-C stops it.\n',
    );
    await untilAborted(ctx.signal);
    await proxy.dispose();
    return 0;
  } catch (err) {
    return reportError(io, err);
  }
}
