/**
 * `nightjar trust reset --gateway URL`: forgets the gateway key this client pinned for one gateway.
 */
import path from 'node:path';
import { NightjarError } from '../../shared/index.js';
import { FileGatewayKeyStore, GATEWAY_KEY_FILE_NAME } from '../../client/index.js';
import type { CommandContext } from '../io.js';
import { dataDirFrom, reportError, type ClientCommandIo } from './common.js';

/** Flags of `nightjar trust reset`. */
export interface TrustResetFlags {
  gateway: string;
  dataDir?: string;
}

/** Runs `nightjar trust reset`; resolves with the exit code. */
export async function trustResetCommand(values: TrustResetFlags, ctx: CommandContext): Promise<number> {
  const io: ClientCommandIo = { ...ctx.io, signal: ctx.signal };
  try {
    // The SDK keys pins by the gateway URL without trailing slashes.
    const url = values.gateway.replace(/\/+$/, '');
    const dir = dataDirFrom(values, io);
    if (!dir) throw new NightjarError('NJ_USAGE', 'no client data folder (no home folder); pass --data-dir');
    const store = new FileGatewayKeyStore({ file: path.join(dir, GATEWAY_KEY_FILE_NAME) });
    const entry = (await store.list())[url];
    if (!(await store.remove(url))) {
      io.stdout.write(`No key is pinned for ${url}; the next use pins the key it signs with.\n`);
      return 0;
    }
    io.stdout.write(
      `Forgot gateway key ${entry!.keyId} of ${url}. The next use pins the key the gateway signs with then: ` +
        'compare its fingerprint with `nightjar gateway key` on the gateway, or pass --gateway-key.\n',
    );
    return 0;
  } catch (err) {
    return reportError(io, err);
  }
}
