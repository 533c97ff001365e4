/**
 * A GatewayKeyStore backed by a JSON file (mode 0600) in the client's data folder: each gateway's
 * key, pinned on first use and moved only by a verified rotation statement, kept across runs and
 * shared by `nightjar chat`, `nightjar proxy` and `nightjar models offered`. `nightjar trust reset
 * --gateway URL` forgets one.
 */
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { NightjarError, b64, fromBase64Url, gatewayKeyIdFor, toBase64Url, withDefaults } from '../../shared/index.js';
import type { GatewayKeyStore, GatewayPinReason } from '../sdk/index.js';

/** The gateway key file's name inside the data folder. */
export const GATEWAY_KEY_FILE_NAME = 'gateway-keys.json';

const entrySchema = z.strictObject({
  key: b64(32),
  keyId: z.string().regex(/^[0-9a-f]{16}$/),
  pinnedAt: z.int().min(0),
  reason: z.enum(['first-use', 'rotation']),
});
const fileSchema = z.strictObject({ v: z.literal(1), gateways: z.record(z.string().max(2048), entrySchema) });

/** One pinned gateway key, as the file holds it. */
export type GatewayKeyFileEntry = z.infer<typeof entrySchema>;

/** Options of {@link FileGatewayKeyStore}. */
export interface FileGatewayKeyStoreOptions {
  /** The file. Required; usually `<client data dir>/gateway-keys.json`. */
  file: string;
  /** Milliseconds since the epoch, for pinnedAt. Defaults to Date.now. */
  now?: () => number;
}

/** The defaults of {@link FileGatewayKeyStoreOptions}. */
export const GATEWAY_KEY_FILE_DEFAULTS: Readonly<Required<Omit<FileGatewayKeyStoreOptions, 'file'>>> = { now: () => Date.now() };

/**
 * Gateway keys kept in a file, read on each use (a rotation followed by another process is seen)
 * and replaced atomically (a temporary file, then rename). A first-use pin never replaces one.
 */
export class FileGatewayKeyStore implements GatewayKeyStore {
  readonly #o: Readonly<Required<FileGatewayKeyStoreOptions>>;
  #writing: Promise<void> = Promise.resolve();

  constructor(options: FileGatewayKeyStoreOptions) {
    this.#o = withDefaults(GATEWAY_KEY_FILE_DEFAULTS, options);
  }

  /** The file's path. */
  get file(): string {
    return this.#o.file;
  }

  /** {@inheritDoc GatewayKeyStore.get} */
  async get(gatewayUrl: string): Promise<Uint8Array | undefined> {
    const entry = (await readGatewayKeyFile(this.#o.file))[gatewayUrl];
    return entry ? fromBase64Url(entry.key) : undefined;
  }

  /** {@inheritDoc GatewayKeyStore.set} */
  set(gatewayUrl: string, key: Uint8Array, reason: GatewayPinReason): Promise<void> {
    const entry: GatewayKeyFileEntry = { key: toBase64Url(key), keyId: gatewayKeyIdFor(key), pinnedAt: this.#o.now(), reason };
    return this.#update((all) => {
      if (reason === 'first-use' && all[gatewayUrl]) return false;
      all[gatewayUrl] = entry;
      return true;
    });
  }

  /** Forgets the key of `gatewayUrl` (`nightjar trust reset --gateway`); resolves with whether there was one. */
  async remove(gatewayUrl: string): Promise<boolean> {
    let had = false;
    await this.#update((all) => {
      had = gatewayUrl in all;
      const kept = Object.entries(all).filter(([url]) => url !== gatewayUrl);
      for (const key of Object.keys(all)) Reflect.deleteProperty(all, key);
      Object.assign(all, Object.fromEntries(kept));
      return had;
    });
    return had;
  }

  /** Every pinned gateway, as the file holds it now. */
  list(): Promise<Record<string, GatewayKeyFileEntry>> {
    return readGatewayKeyFile(this.#o.file);
  }

  #update(change: (all: Record<string, GatewayKeyFileEntry>) => boolean): Promise<void> {
    const write = this.#writing.then(async () => {
      const all = await readGatewayKeyFile(this.#o.file);
      if (change(all)) await writeGatewayKeyFile(this.#o.file, all);
    });
    this.#writing = write.catch(() => undefined);
    return write;
  }
}

async function readGatewayKeyFile(file: string): Promise<Record<string, GatewayKeyFileEntry>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new NightjarError('NJ_CONFIG_INVALID', `cannot read the gateway key file ${file}`, { cause: err });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  const checked = fileSchema.safeParse(parsed);
  if (!checked.success) {
    throw new NightjarError(
      'NJ_CONFIG_INVALID',
      `the gateway key file ${file} is not a valid Nightjar gateway key file; fix it, or remove it to forget every pinned gateway`,
    );
  }
  return checked.data.gateways;
}

async function writeGatewayKeyFile(file: string, gateways: Record<string, GatewayKeyFileEntry>): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const temp = `${file}.${process.pid}.${Date.now()}.tmp`;
  await writeFile(temp, JSON.stringify({ v: 1, gateways }, null, 2) + '\n', { mode: 0o600 });
  // writeFile's mode applies only when it creates the file, and the umask may narrow it: be exact.
  await chmod(temp, 0o600);
  await rename(temp, file);
}
