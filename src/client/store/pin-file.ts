/**
 * A PinStore backed by a JSON file (mode 0600) in the client's data folder: trust on first use,
 * kept across runs, shared by `nightjar chat` and `nightjar proxy`.
 */
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { NightjarError, agentIdSchema, b64, fromBase64Url, toBase64Url, withDefaults } from '../../shared/index.js';
import type { PinStore } from '../sdk/index.js';

/** The pin file's name inside the data folder. */
export const PIN_FILE_NAME = 'pins.json';

const pinFileSchema = z.strictObject({
  v: z.literal(1),
  pins: z.record(agentIdSchema, z.strictObject({ identityKey: b64(32), firstSeen: z.int().min(0) })),
});

/** The pin file's content. */
export type PinFile = z.infer<typeof pinFileSchema>;

/** Options of {@link FilePinStore}. */
export interface FilePinStoreOptions {
  /** The file. Required; usually `<client data dir>/pins.json`. */
  file: string;
  /** Milliseconds since the epoch, for firstSeen. Defaults to Date.now. */
  now?: () => number;
  /** Most agents pinned; further agents are used but not pinned. Defaults to 10 000. */
  maxPins?: number;
}

/** The defaults of {@link FilePinStoreOptions}. */
export const PIN_FILE_DEFAULTS: Readonly<Required<Omit<FilePinStoreOptions, 'file'>>> = {
  now: () => Date.now(),
  maxPins: 10_000,
};

/**
 * Pins kept in a file. The file is read once, on first use; each new pin re-reads it, merges
 * and replaces it atomically (write to a temporary file, rename), so two processes sharing it
 * lose nothing but a race on the very same agent. Existing pins are never replaced.
 */
export class FilePinStore implements PinStore {
  readonly #o: Readonly<Required<FilePinStoreOptions>>;
  #pins: PinFile['pins'] | null = null;
  #writing: Promise<void> = Promise.resolve();

  constructor(options: FilePinStoreOptions) {
    this.#o = withDefaults(PIN_FILE_DEFAULTS, options);
  }

  /** The file's path. */
  get file(): string {
    return this.#o.file;
  }

  /** {@inheritDoc PinStore.get} */
  async get(agentId: string): Promise<Uint8Array | undefined> {
    const pins = await this.#load();
    const pin = pins[agentId];
    return pin ? fromBase64Url(pin.identityKey) : undefined;
  }

  /** {@inheritDoc PinStore.set} */
  async set(agentId: string, identityKey: Uint8Array): Promise<void> {
    const pins = await this.#load();
    if (pins[agentId]) return;
    if (Object.keys(pins).length >= this.#o.maxPins) return;
    const entry = { identityKey: toBase64Url(identityKey), firstSeen: this.#o.now() };
    pins[agentId] = entry;
    const write = this.#writing.then(async () => {
      const current = await readPinFile(this.#o.file);
      if (!current[agentId]) current[agentId] = entry;
      await writePinFile(this.#o.file, current);
    });
    this.#writing = write.catch(() => undefined);
    await write;
  }

  /** Every pin, as the file holds it now. */
  async list(): Promise<PinFile['pins']> {
    return readPinFile(this.#o.file);
  }

  async #load(): Promise<PinFile['pins']> {
    this.#pins ??= await readPinFile(this.#o.file);
    return this.#pins;
  }
}

async function readPinFile(file: string): Promise<PinFile['pins']> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new NightjarError('NJ_CONFIG_INVALID', `cannot read the pin file ${file}`, { cause: err });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  const checked = pinFileSchema.safeParse(parsed);
  if (!checked.success) {
    throw new NightjarError(
      'NJ_CONFIG_INVALID',
      `the pin file ${file} is not a valid Nightjar pin file; fix it, or remove it to forget every pinned agent`,
    );
  }
  return checked.data.pins;
}

async function writePinFile(file: string, pins: PinFile['pins']): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const body: PinFile = { v: 1, pins };
  const temp = `${file}.${process.pid}.${Date.now()}.tmp`;
  await writeFile(temp, JSON.stringify(body, null, 2) + '\n', { mode: 0o600 });
  // writeFile's mode applies only when it creates the file, and the umask may narrow it: be exact.
  await chmod(temp, 0o600);
  await rename(temp, file);
}
