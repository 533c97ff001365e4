/**
 * What the client commands share: their io, the gateway/trust flags, and a client wired to the
 * pin file and the receipt log in the client's data folder.
 */
import path from 'node:path';
import { NightjarError, TRUST_LEVELS, type Trust } from '../../shared/index.js';
import {
  FilePinStore,
  IncompleteReplyError,
  NightjarClient,
  PIN_FILE_NAME,
  RECEIPT_LOG_NAME,
  VerifiedReceiptLog,
  clientDataDir,
  nodeFetch,
  type ChatResult,
  type NightjarClientOptions,
} from '../../client/index.js';

/** Where a client command reads and writes; handed in so tests can drive it in-process. */
export interface ClientCommandIo {
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
  stdin: AsyncIterable<string | Uint8Array> & { isTTY?: boolean };
  env: Readonly<Record<string, string | undefined>>;
  /** Aborted on Ctrl-C / SIGTERM. Defaults to never. */
  signal?: AbortSignal;
  /** fetch to use. Defaults to {@link nodeFetch} (node:http; faster than the global fetch). */
  fetch?: typeof fetch;
}

/** The default gateway address. */
export const DEFAULT_GATEWAY = 'http://127.0.0.1:8787';

/** parseArgs options every client command takes. */
export const CLIENT_FLAGS = {
  gateway: { type: 'string' },
  'api-key': { type: 'string' },
  'allow-synthetic': { type: 'boolean' },
  'min-trust': { type: 'string' },
  'only-pinned': { type: 'boolean' },
  'no-pin': { type: 'boolean' },
  'data-dir': { type: 'string' },
} as const;

/** Help text for {@link CLIENT_FLAGS}. */
export const CLIENT_FLAGS_USAGE = `  --gateway URL        gateway address (env NIGHTJAR_GATEWAY; default ${DEFAULT_GATEWAY})
  --api-key KEY        client API key for the gateway (env NIGHTJAR_API_KEY)
  --allow-synthetic    accept synthetic development models (random weights)
  --min-trust LEVEL    lowest agent trust accepted: ${TRUST_LEVELS.join(' or ')} (default signed)
  --only-pinned        use only agents pinned before (refuse agents never seen)
  --no-pin             neither read nor write pins and the receipt log
  --data-dir DIR       client data folder: pins.json, receipts.jsonl (env NIGHTJAR_CLIENT_DATA_DIR)
`;

/** Parsed values of {@link CLIENT_FLAGS}. */
export interface ClientFlagValues {
  gateway?: string | undefined;
  'api-key'?: string | undefined;
  'allow-synthetic'?: boolean | undefined;
  'min-trust'?: string | undefined;
  'only-pinned'?: boolean | undefined;
  'no-pin'?: boolean | undefined;
  'data-dir'?: string | undefined;
}

/** A client as a command uses it, with the files it keeps. */
export interface CommandClient {
  client: NightjarClient;
  gatewayUrl: string;
  allowSynthetic: boolean;
  /** The data folder, or null when nothing is kept (--no-pin, or no home folder). */
  dataDir: string | null;
  pins: FilePinStore | null;
  receipts: VerifiedReceiptLog | null;
}

/** The data folder the flags and environment name, or null. */
export function dataDirFrom(values: ClientFlagValues, io: Pick<ClientCommandIo, 'env'>): string | null {
  if (values['data-dir']) return path.resolve(values['data-dir']);
  return clientDataDir({ env: io.env });
}

/** Builds the client a command uses from its flags. */
export function commandClient(values: ClientFlagValues, io: ClientCommandIo, extra: Partial<NightjarClientOptions> = {}): CommandClient {
  const gatewayUrl = values.gateway ?? io.env.NIGHTJAR_GATEWAY ?? DEFAULT_GATEWAY;
  let url: URL;
  try {
    url = new URL(gatewayUrl);
  } catch {
    throw new NightjarError('NJ_USAGE', `--gateway must be a URL such as ${DEFAULT_GATEWAY}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new NightjarError('NJ_USAGE', '--gateway must be an http or https URL');
  const minTrust = values['min-trust'] ?? 'signed';
  if (!(TRUST_LEVELS as readonly string[]).includes(minTrust)) {
    throw new NightjarError('NJ_USAGE', `--min-trust must be one of ${TRUST_LEVELS.join(', ')}`);
  }
  const keep = !values['no-pin'];
  if (!keep && values['only-pinned']) throw new NightjarError('NJ_USAGE', '--only-pinned needs the pin file; drop --no-pin');
  const dataDir = keep ? dataDirFrom(values, io) : null;
  if (values['only-pinned'] && !dataDir) {
    throw new NightjarError('NJ_USAGE', '--only-pinned needs a data folder; pass --data-dir');
  }
  const pins = dataDir ? new FilePinStore({ file: path.join(dataDir, PIN_FILE_NAME) }) : null;
  const receipts = dataDir ? new VerifiedReceiptLog({ file: path.join(dataDir, RECEIPT_LOG_NAME) }) : null;
  const apiKey = values['api-key'] ?? io.env.NIGHTJAR_API_KEY;
  const allowSynthetic = values['allow-synthetic'] ?? false;
  const client = new NightjarClient({
    gatewayUrl,
    ...(apiKey ? { apiKey } : {}),
    trust: {
      allowSynthetic,
      minTrust: minTrust as Trust,
      ...(pins ? { pins } : {}),
      onlyPinned: values['only-pinned'] ?? false,
    },
    fetch: io.fetch ?? nodeFetch,
    ...(receipts
      ? {
          onReceipt: (result) =>
            receipts.append(result, gatewayUrl).catch((err: unknown) => {
              io.stderr.write(`warning: could not save the receipt to ${receipts.file}: ${(err as Error).message}\n`);
            }),
        }
      : {}),
    ...extra,
  });
  return { client, gatewayUrl, allowSynthetic, dataDir, pins, receipts };
}

/** Picks `wanted`, or the first model the gateway offers that the trust policy allows. */
export async function pickModel(
  client: NightjarClient,
  wanted: string | undefined,
  allowSynthetic: boolean,
  signal?: AbortSignal,
): Promise<string> {
  if (wanted) return wanted;
  const models = await client.models(signal);
  const usable = models.filter((m) => allowSynthetic || !m.synthetic);
  if (usable.length === 0) {
    throw new NightjarError(
      'NJ_MODEL_UNKNOWN',
      models.length
        ? `the gateway offers only synthetic models (${models.map((m) => m.id).join(', ')}); pass --allow-synthetic to use them`
        : 'the gateway offers no models yet; is an agent connected?',
    );
  }
  return usable[0]!.id;
}

/** Parses a number flag; throws NJ_USAGE naming the flag. */
export function numberFlag(value: string | undefined, name: string, integer: boolean): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || (integer && !Number.isInteger(n))) {
    throw new NightjarError('NJ_USAGE', `--${name} must be ${integer ? 'an integer' : 'a number'}, not "${value}"`);
  }
  return n;
}

/** Writes an error the way every client command does; returns its exit code. */
export function reportError(io: Pick<ClientCommandIo, 'stderr'>, err: unknown): number {
  const e = err instanceof NightjarError ? err : new NightjarError('NJ_INTERNAL', err instanceof Error ? err.message : String(err));
  io.stderr.write(`error ${e.code}: ${e.message}\n  ${e.hint}\n`);
  return e.code === 'NJ_USAGE' ? 2 : e.code === 'NJ_CANCELLED' ? 130 : 1;
}

/** The line printed to stderr after a verified reply. */
export function summaryLine(result: ChatResult): string {
  const retried = result.sends > 1 ? ` · sent ${result.sends}×` : '';
  return (
    `[${result.model} · agent ${result.agentId.slice(0, 8)} (${result.trust}) · ${result.usage.promptTokens} prompt + ` +
    `${result.usage.completionTokens} completion tokens · finish: ${result.finishReason}${retried} · receipt verified]\n`
  );
}

/** Writes the error that ended a reply; says plainly when the text above it is incomplete. */
export function reportReplyError(io: Pick<ClientCommandIo, 'stderr'>, err: unknown): number {
  if (err instanceof IncompleteReplyError) {
    io.stderr.write('[the reply above is incomplete: no receipt covers it]\n');
  }
  return reportError(io, err);
}
