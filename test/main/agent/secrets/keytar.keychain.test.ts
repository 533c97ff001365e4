/**
 * The keychain store against a real OS keychain through keytar: on Linux, gnome-keyring's Secret
 * Service on a private D-Bus session. Not part of `npm test` (it needs that session); run it with
 * `npm run test:keychain`, which starts one:
 *
 *   dbus-run-session -- sh -c 'printf pw | gnome-keyring-daemon --unlock --components=secrets >/dev/null; \
 *     vitest run --config vitest.keychain.config.ts'
 *
 * Each run uses its own account name and deletes it, so it never touches a real agent's key.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { KeychainSecretStore, importKeytar, loadIdentity, loadOrCreateIdentity } from '../../../../src/main/agent/secrets/secret-store.js';

const account = `agent-identity-test-${randomBytes(6).toString('hex')}`;
const store = new KeychainSecretStore({ service: 'NightjarTest', account });

afterAll(async () => {
  await store.delete().catch(() => undefined);
});

describe('the keychain store on a real keychain', () => {
  it('loads keytar and reaches the keychain service', async () => {
    const keytar = await importKeytar();
    expect(await keytar.getPassword('NightjarTest', account)).toBeNull();
  });

  it('creates the identity in the keychain, then finds the same one from a new store object', async () => {
    const created = await loadOrCreateIdentity(store);
    expect(created.created).toBe(true);
    const again = await loadOrCreateIdentity(new KeychainSecretStore({ service: 'NightjarTest', account }));
    expect(again).toMatchObject({ created: false });
    expect(again.identity.agentId).toBe(created.identity.agentId);
    expect(Buffer.from(again.identity.seed).equals(Buffer.from(created.identity.seed))).toBe(true);
    // What the keychain holds is the seed in hex, nothing else.
    expect(await (await importKeytar()).getPassword('NightjarTest', account)).toMatch(/^[0-9a-f]{64}$/);
  });

  it('deletes the identity', async () => {
    expect(await store.delete()).toBe(true);
    expect(await loadIdentity(store)).toBeNull();
    expect(await store.delete()).toBe(false);
  });

  it('keeps accounts apart', async () => {
    const other = new KeychainSecretStore({ service: 'NightjarTest', account: `${account}-other` });
    try {
      await other.set('11'.repeat(32));
      expect(await store.get()).toBeNull();
      expect(await other.get()).toBe('11'.repeat(32));
    } finally {
      await other.delete();
    }
  });
});
