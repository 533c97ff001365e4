/**
 * The secrets commands take (API keys, tokens), kept off the command line: every user of a machine
 * can read every process's arguments (`ps`, /proc/PID/cmdline), but not another user's
 * environment or private files. Each secret comes from a file (`--x-file PATH`, refused unless
 * only its owner can read it, as the plaintext key file is) or an environment variable; the old
 * argv flag still works, with a warning on stderr.
 */
import { open } from 'node:fs/promises';
import path from 'node:path';
import { NightjarError } from '../shared/index.js';
import type { CommandIo } from './io.js';

/** Where one secret may come from. */
export interface SecretSource {
  /** What it is, for messages: "API key". */
  readonly what: string;
  /** The argv flag that takes it (visible to other users, so warned about), or null if there is none. */
  readonly flag: string | null;
  /** The flag that names a file holding it. */
  readonly fileFlag: string;
  /** The environment variable holding it. */
  readonly env: string;
}

/** The secrets of Nightjar's commands. */
export const SECRETS = {
  apiKey: { what: 'API key', flag: '--api-key', fileFlag: '--api-key-file', env: 'NIGHTJAR_API_KEY' },
  proxyToken: { what: 'proxy token', flag: '--token', fileFlag: '--token-file', env: 'NIGHTJAR_PROXY_TOKEN' },
  enrollToken: { what: 'enrollment token', flag: '--enroll-token', fileFlag: '--enroll-token-file', env: 'NIGHTJAR_ENROLL_TOKEN' },
  metricsToken: { what: 'metrics token', flag: null, fileFlag: '--metrics-token-file', env: 'NIGHTJAR_METRICS_TOKEN' },
  natsToken: { what: 'NATS token', flag: null, fileFlag: '--nats-token-file', env: 'NIGHTJAR_NATS_TOKEN' },
} as const satisfies Record<string, SecretSource>;

/** The largest secret file read; a secret is one short line. */
export const MAX_SECRET_FILE_BYTES = 4096;

/** A secret as a command's flags give it: the argv value and the file, either or neither. */
export interface SecretFlagValues {
  value?: string | undefined;
  file?: string | undefined;
}

/**
 * The secret `source` names: the argv flag's value (with a warning on stderr that other users
 * can see it), else the file's one line, else the environment variable; undefined if none is
 * given (an empty value counts as none). Both the flag and the file is a usage error.
 */
export async function readSecret(
  source: SecretSource,
  given: SecretFlagValues,
  io: Pick<CommandIo, 'env' | 'cwd' | 'stderr'>,
): Promise<string | undefined> {
  if (given.value !== undefined && given.file !== undefined) {
    throw new NightjarError('NJ_USAGE', `give the ${source.what} once: ${source.flag} or ${source.fileFlag}, not both`);
  }
  if (given.value !== undefined) {
    io.stderr.write(
      `warning: ${source.flag} puts the ${source.what} on the command line, where other users of this machine can read it ` +
        `(ps); use ${source.fileFlag} FILE or the ${source.env} environment variable instead.\n`,
    );
    return given.value || undefined;
  }
  if (given.file !== undefined) return readSecretFile(path.resolve(io.cwd, given.file), source);
  return io.env[source.env] || undefined;
}

/**
 * Reads a secret from `file`: a regular file (a symbolic link is followed to one) owned by this
 * user and closed to group and others, at most {@link MAX_SECRET_FILE_BYTES}, holding one line
 * (its line ending is dropped). Refused with NJ_KEY_FILE_INSECURE when others could read or
 * change it, NJ_USAGE when it is missing, unreadable, empty or not one line.
 */
export async function readSecretFile(file: string, source: SecretSource): Promise<string> {
  const usage = (why: string): NightjarError => new NightjarError('NJ_USAGE', `${source.fileFlag}: ${file} ${why}`);
  let handle;
  try {
    handle = await open(file, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw usage(code === 'ENOENT' ? 'does not exist' : `cannot be read (${code ?? 'error'})`);
  }
  try {
    // The opened file's own status: nothing can swap the file between this check and the read.
    const info = await handle.stat();
    if (!info.isFile()) throw usage('is not a regular file');
    if (process.platform !== 'win32') {
      const insecure = (why: string): never => {
        throw new NightjarError(
          'NJ_KEY_FILE_INSECURE',
          `${source.fileFlag}: ${file} ${why}; it was not used. Make it yours and private (chmod 600 ${file}), ` +
            `or give the ${source.what} in ${source.env}.`,
        );
      };
      if ((info.mode & 0o077) !== 0) insecure(`has mode ${(info.mode & 0o777).toString(8)}, so other users could read it`);
      const uid = process.getuid?.();
      if (uid !== undefined && info.uid !== uid) insecure(`belongs to user ${info.uid}, not to this user (${uid})`);
    }
    if (info.size > MAX_SECRET_FILE_BYTES)
      throw usage(`is larger than ${MAX_SECRET_FILE_BYTES} bytes; it should hold the ${source.what} alone`);
    const buffer = Buffer.alloc(MAX_SECRET_FILE_BYTES + 1);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    if (bytesRead > MAX_SECRET_FILE_BYTES) throw usage(`is larger than ${MAX_SECRET_FILE_BYTES} bytes`);
    const text = buffer
      .subarray(0, bytesRead)
      .toString('utf8')
      .replace(/\r?\n$/, '');
    if (text === '') throw usage(`is empty; it should hold the ${source.what}`);
    if (/[\r\n]/.test(text)) throw usage(`holds more than one line; it should hold the ${source.what} alone`);
    return text;
  } finally {
    await handle.close();
  }
}
