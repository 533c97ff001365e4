/**
 * `nightjar keys`: the agent's identity key — where it lives, its id and public key; create it,
 * or delete it.
 */
import { NightjarError, toBase64Url } from '../../shared/index.js';
import { loadIdentity, loadOrCreateIdentity } from '../../main/agent/index.js';
import { cliConfig, cliPaths, secretStore } from './agent-context.js';
import type { CommandContext } from '../io.js';

/** Flags of `nightjar keys show|create|delete`. */
export interface KeysFlags {
  /** Keep the identity in this plaintext file instead of the OS keychain. */
  keyFile?: string;
  /** `delete` only: yes, delete the identity. */
  yes?: boolean;
}

/** Runs `nightjar keys …`. */
export async function keysCommand(sub: 'show' | 'create' | 'delete', values: KeysFlags, { io }: CommandContext): Promise<number> {
  const paths = cliPaths(io);
  const store = secretStore(io, paths, await cliConfig(paths), values.keyFile);
  switch (sub) {
    case 'show': {
      const identity = await loadIdentity(store);
      if (!identity) {
        io.stdout.write(`No identity yet in ${store.description}; \`nightjar serve\` (or \`nightjar keys create\`) creates it.\n`);
        return 0;
      }
      io.stdout.write(
        `agent id      ${identity.agentId}\npublic key    ${toBase64Url(identity.publicKey)}\nkept in       ${store.description}\n`,
      );
      return 0;
    }
    case 'create': {
      const { identity, created } = await loadOrCreateIdentity(store);
      io.stdout.write(`${created ? 'Created' : 'Already there:'} agent ${identity.agentId} in ${store.description}.\n`);
      return 0;
    }
    case 'delete': {
      if (!values.yes)
        throw new NightjarError('NJ_USAGE', 'keys delete removes the identity the gateway credits; add --yes if you mean it');
      io.stdout.write(
        (await store.delete()) ? `Deleted the identity in ${store.description}.\n` : `There was no identity in ${store.description}.\n`,
      );
      return 0;
    }
  }
}
