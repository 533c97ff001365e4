/**
 * Where the agent's identity key lives. The OS keychain (macOS Keychain, libsecret on Linux)
 * through keytar is the default; a plaintext file is used only when the owner opts in (a machine
 * with no keychain), and is refused when anyone else could read it. There is no silent fallback:
 * if the keychain cannot be reached and no file was opted in to, the agent stops with
 * NJ_KEYCHAIN_UNAVAILABLE.
 */
import { lstat, mkdir, open, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { NightjarError, fromHex, generateIdentity, identityFromSeed, toHex, type IdentityKeyPair } from '../../../shared/index.js';
import { errnoCode } from '../fs-util.js';

/** A place that holds one secret string. */
export interface SecretStore {
  /** For people: where the secret lives ("the OS keychain (service Nightjar, account agent-identity)"). */
  readonly description: string;
  /** The secret, or null if none is stored. */
  get(): Promise<string | null>;
  /** Stores the secret, replacing any. */
  set(value: string): Promise<void>;
  /** Deletes the secret; false if there was none. */
  delete(): Promise<boolean>;
}

/** The part of keytar the store uses. */
export interface KeytarApi {
  getPassword(service: string, account: string): Promise<string | null>;
  setPassword(service: string, account: string, password: string): Promise<void>;
  deletePassword(service: string, account: string): Promise<boolean>;
}

/** Loads keytar (an optional dependency with a native part) with a dynamic import. */
export async function importKeytar(): Promise<KeytarApi> {
  // A variable specifier: keytar is optional, so nothing may require it at build time.
  const specifier = 'keytar';
  const mod = (await import(specifier)) as { default?: KeytarApi } & Partial<KeytarApi>;
  const api = mod.default ?? (mod as KeytarApi);
  if (typeof api.getPassword !== 'function') throw new Error('keytar has no getPassword');
  return api;
}

/** Options of {@link KeychainSecretStore}. */
export interface KeychainSecretStoreOptions {
  /** Keychain service name. Defaults to 'Nightjar'. */
  service?: string;
  /** Keychain account name. Defaults to 'agent-identity'. */
  account?: string;
  /** Loads keytar. Defaults to {@link importKeytar}. */
  load?: () => Promise<KeytarApi>;
}

const KEYCHAIN_ADVICE =
  'On a machine without a keychain, opt in to a plaintext key file: `nightjar serve --key-file FILE` ' +
  '(or keys.store "plaintext-file" in config.json).';

/** The OS keychain through keytar. */
export class KeychainSecretStore implements SecretStore {
  readonly service: string;
  readonly account: string;
  readonly #load: () => Promise<KeytarApi>;
  #api: Promise<KeytarApi> | null = null;

  constructor(options: KeychainSecretStoreOptions = {}) {
    this.service = options.service ?? 'Nightjar';
    this.account = options.account ?? 'agent-identity';
    this.#load = options.load ?? importKeytar;
  }

  get description(): string {
    return `the OS keychain (service ${this.service}, account ${this.account})`;
  }

  #keytar(): Promise<KeytarApi> {
    this.#api ??= this.#load().catch((cause: unknown) => {
      this.#api = null;
      throw new NightjarError(
        'NJ_KEYCHAIN_UNAVAILABLE',
        `The keychain module (keytar) could not be loaded: ${(cause as Error).message}. ${KEYCHAIN_ADVICE}`,
        { cause },
      );
    });
    return this.#api;
  }

  async #call<T>(what: string, fn: (api: KeytarApi) => Promise<T>): Promise<T> {
    const api = await this.#keytar();
    try {
      return await fn(api);
    } catch (cause) {
      throw new NightjarError(
        'NJ_KEYCHAIN_UNAVAILABLE',
        `The OS keychain refused to ${what}: ${(cause as Error).message}. Is a keychain service running and unlocked? ${KEYCHAIN_ADVICE}`,
        { cause },
      );
    }
  }

  get(): Promise<string | null> {
    return this.#call('read the identity key', (k) => k.getPassword(this.service, this.account));
  }

  set(value: string): Promise<void> {
    return this.#call('store the identity key', (k) => k.setPassword(this.service, this.account, value));
  }

  delete(): Promise<boolean> {
    return this.#call('delete the identity key', (k) => k.deletePassword(this.service, this.account));
  }
}

/**
 * A plaintext file holding the secret, for machines without a keychain, used only when the owner
 * opts in. Created with mode 0600 in a 0700 directory; refused (NJ_KEY_FILE_INSECURE) if it is a
 * symlink, not a regular file, readable or writable by group or others, or owned by another user.
 */
export class PlaintextFileSecretStore implements SecretStore {
  readonly file: string;

  constructor(file: string) {
    this.file = path.resolve(file);
  }

  get description(): string {
    return `the plaintext key file ${this.file}`;
  }

  async #check(): Promise<boolean> {
    let info;
    try {
      info = await lstat(this.file);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return false;
      throw err;
    }
    const insecure = (why: string): never => {
      throw new NightjarError('NJ_KEY_FILE_INSECURE', `The key file ${this.file} ${why}; it was not used.`);
    };
    if (info.isSymbolicLink()) insecure('is a symbolic link');
    if (!info.isFile()) insecure('is not a regular file');
    if (process.platform !== 'win32') {
      if ((info.mode & 0o077) !== 0) insecure(`has mode ${(info.mode & 0o777).toString(8)}: others could read it (chmod 600 it)`);
      const uid = process.getuid?.();
      if (uid !== undefined && info.uid !== uid) insecure(`belongs to user ${info.uid}, not to this user (${uid})`);
    }
    return true;
  }

  async get(): Promise<string | null> {
    if (!(await this.#check())) return null;
    return (await readFile(this.file, 'utf8')).trim();
  }

  async set(value: string): Promise<void> {
    await mkdir(path.dirname(this.file), { recursive: true, mode: 0o700 });
    await rm(this.file, { force: true });
    // 'wx': never write through a file (or a symlink) that appeared meanwhile.
    const handle = await open(this.file, 'wx', 0o600);
    try {
      await handle.writeFile(value + '\n');
      await handle.sync();
    } finally {
      await handle.close();
    }
  }

  async delete(): Promise<boolean> {
    try {
      await rm(this.file);
      return true;
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return false;
      throw err;
    }
  }
}

/** An identity and whether it was made just now. */
export interface StoredIdentity {
  identity: IdentityKeyPair;
  created: boolean;
}

/**
 * The identity kept in `store`, created (and stored) on first use. A stored value that is not a
 * 32-byte hex seed is NJ_CONFIG_INVALID: it is never silently replaced, since the identity is
 * what the gateway credits.
 */
export async function loadOrCreateIdentity(store: SecretStore): Promise<StoredIdentity> {
  const stored = await store.get();
  if (stored !== null) {
    if (!/^[0-9a-f]{64}$/.test(stored)) {
      throw new NightjarError(
        'NJ_CONFIG_INVALID',
        `${store.description} does not hold a 32-byte hex identity seed; fix or delete it (\`nightjar keys delete\`).`,
      );
    }
    return { identity: await identityFromSeed(fromHex(stored)), created: false };
  }
  const identity = await generateIdentity();
  await store.set(toHex(identity.seed));
  return { identity, created: true };
}

/** The identity kept in `store`, or null if there is none. */
export async function loadIdentity(store: SecretStore): Promise<IdentityKeyPair | null> {
  const stored = await store.get();
  if (stored === null) return null;
  if (!/^[0-9a-f]{64}$/.test(stored))
    throw new NightjarError('NJ_CONFIG_INVALID', `${store.description} does not hold a 32-byte hex identity seed.`);
  return identityFromSeed(fromHex(stored));
}
