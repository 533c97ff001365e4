/**
 * What the client commands share: their io, the gateway/trust flags, and a client wired to the
 * pin file and the receipt log in the client's data folder.
 */
import path from 'node:path';
import { NightjarError, type Trust } from '../../shared/index.js';
import {
  FileGatewayKeyStore,
  FilePinStore,
  GATEWAY_KEY_FILE_NAME,
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
import { asNightjarError, errorText } from '../errors.js';
import { DEFAULT_GATEWAY } from '../flags.js';
import type { CommandIo } from '../io.js';
import { SECRETS, readSecret } from '../secrets.js';

/**
 * Where a client command reads and writes: the command context's io and its stop signal, as the
 * conversation (runRepl) takes them.
 */
export interface ClientCommandIo extends CommandIo {
  /** Aborted on Ctrl-C / SIGTERM. Defaults to never. */
  signal?: AbortSignal;
}

/** The flags every client command takes (see the command table's clientOptions). */
export interface ClientFlagValues {
  gateway?: string | undefined;
  /** The API key on the command line (warned about: other users can see it). */
  apiKey?: string | undefined;
  /** A file holding the API key (mode 0600). */
  apiKeyFile?: string | undefined;
  allowSynthetic?: boolean | undefined;
  minTrust?: Trust | undefined;
  onlyPinned?: boolean | undefined;
  /** --gateway-key: the gateway's key (base64url, fingerprint or id) given instead of pinned on first use. */
  gatewayKey?: string | undefined;
  /** False under --no-pin: neither read nor write pins (agents' and the gateway's) and the receipt log. */
  pin?: boolean | undefined;
  dataDir?: string | undefined;
}

/** A client as a command uses it, with the files it keeps. */
export interface CommandClient {
  client: NightjarClient;
  gatewayUrl: string;
  allowSynthetic: boolean;
  /** The data folder, or null when nothing is kept (--no-pin, or no home folder). */
  dataDir: string | null;
  pins: FilePinStore | null;
  /** The pinned gateway keys, or null when nothing is kept (then the client pins in memory only). */
  gatewayKeys: FileGatewayKeyStore | null;
  receipts: VerifiedReceiptLog | null;
}

/** The data folder the flags and environment name, or null. */
export function dataDirFrom(values: ClientFlagValues, io: Pick<ClientCommandIo, 'env' | 'cwd'>): string | null {
  if (values.dataDir) return path.resolve(io.cwd, values.dataDir);
  return clientDataDir({ env: io.env });
}

/** Builds the client a command uses from its flags (the API key from --api-key-file, NIGHTJAR_API_KEY or --api-key). */
export async function commandClient(
  values: ClientFlagValues,
  io: ClientCommandIo,
  extra: Partial<NightjarClientOptions> = {},
): Promise<CommandClient> {
  const gatewayUrl = values.gateway ?? io.env.NIGHTJAR_GATEWAY ?? DEFAULT_GATEWAY;
  let url: URL;
  try {
    url = new URL(gatewayUrl);
  } catch {
    throw new NightjarError('NJ_USAGE', `--gateway must be a URL such as ${DEFAULT_GATEWAY}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new NightjarError('NJ_USAGE', '--gateway must be an http or https URL');
  const minTrust = values.minTrust ?? 'signed';
  const keep = values.pin !== false;
  if (!keep && values.onlyPinned) throw new NightjarError('NJ_USAGE', '--only-pinned needs the pin file; drop --no-pin');
  const dataDir = keep ? dataDirFrom(values, io) : null;
  if (values.onlyPinned && !dataDir) {
    throw new NightjarError('NJ_USAGE', '--only-pinned needs a data folder; pass --data-dir');
  }
  const pins = dataDir ? new FilePinStore({ file: path.join(dataDir, PIN_FILE_NAME) }) : null;
  const gatewayKeys = dataDir ? new FileGatewayKeyStore({ file: path.join(dataDir, GATEWAY_KEY_FILE_NAME) }) : null;
  const receipts = dataDir ? new VerifiedReceiptLog({ file: path.join(dataDir, RECEIPT_LOG_NAME) }) : null;
  const apiKey = await readSecret(SECRETS.apiKey, { value: values.apiKey, file: values.apiKeyFile }, io);
  const allowSynthetic = values.allowSynthetic ?? false;
  const client = new NightjarClient({
    gatewayUrl,
    apiKey,
    trust: {
      allowSynthetic,
      minTrust,
      pins: pins ?? undefined,
      onlyPinned: values.onlyPinned ?? false,
    },
    gatewayKey: values.gatewayKey,
    gatewayKeys: gatewayKeys ?? undefined,
    fetch: io.fetch ?? nodeFetch,
    onReceipt: receipts
      ? (result) =>
          receipts.append(result, gatewayUrl).catch((err: unknown) => {
            io.stderr.write(`warning: could not save the receipt to ${receipts.file}: ${(err as Error).message}\n`);
          })
      : undefined,
    ...extra,
  });
  return { client, gatewayUrl, allowSynthetic, dataDir, pins, gatewayKeys, receipts };
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

/** Writes an error the way every client command does; returns its exit code. */
export function reportError(io: Pick<ClientCommandIo, 'stderr'>, err: unknown): number {
  const e = asNightjarError(err);
  io.stderr.write(errorText(e));
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
