/**
 * `nightjar keys`: the agent's identity key — where it lives, its id and public key; create it,
 * or delete it.
 */
import { parseArgs } from 'node:util';
import { NightjarError, toBase64Url } from '../../shared/index.js';
import { loadIdentity, loadOrCreateIdentity } from '../../main/agent/index.js';
import { cliConfig, cliPaths, secretStore } from './agent-context.js';
import type { CliIo } from '../io.js';

/** Usage text of `nightjar keys`. */
export const KEYS_USAGE = `Usage:
  nightjar keys [show] [--key-file FILE]     where the identity key lives, the agent id and public key
  nightjar keys create [--key-file FILE]     create the identity now (serve does it on first start)
  nightjar keys delete --yes [--key-file FILE]
                                             delete the identity: the gateway knows and credits this
                                             agent by it, so a new one starts from nothing

The key lives in the OS keychain (service Nightjar, account agent-identity). --key-file FILE, or
keys.store "plaintext-file" in config.json, keeps it in a plaintext file (mode 0600) instead, for
machines without a keychain.
`;

/** Runs `nightjar keys …`. */
export async function keysCommand(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { 'key-file': { type: 'string' }, yes: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  const sub = positionals[0] ?? 'show';
  if (values.help || sub === 'help') {
    io.stdout.write(KEYS_USAGE);
    return 0;
  }
  const paths = cliPaths(io);
  const store = secretStore(io, paths, await cliConfig(paths), values['key-file']);
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
    default:
      throw new NightjarError('NJ_USAGE', `unknown keys command "${sub}"`);
  }
}
