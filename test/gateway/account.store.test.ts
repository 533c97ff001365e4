/**
 * Accounts on a real SQLite file: secrets are shown once and stored only as their SHA-256;
 * revoked keys and rotated tokens stop working; prices are bounded.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NightjarError, sha256, toHex, utf8 } from '../../src/shared/index.js';
import { openSqliteStore, secretId, type GatewayStore } from '../../src/gateway/index.js';
import { tempDir } from './support/net.js';

let tmp: Awaited<ReturnType<typeof tempDir>>;
let store: GatewayStore;
let file: string;
beforeEach(async () => {
  tmp = await tempDir();
  file = path.join(tmp.dir, 'accounts.db');
  store = await openSqliteStore({ path: file });
});
afterEach(async () => {
  await store.dispose();
  await tmp.remove();
});

describe('secrets', () => {
  // Fails if a secret were stored as given instead of hashed: the file would contain it.
  it('stores API keys, operator tokens and enrollment tokens only as their SHA-256', async () => {
    const key = await store.accounts.createApiKey({ name: 'k', now: 1 });
    const op = await store.accounts.createOperator({ name: 'o', now: 1 });
    const en = await store.accounts.createEnrollmentToken({ operatorId: op.id, now: 1, ttlMs: 3600_000 });
    expect(key.key).toMatch(/^njk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/);
    expect(secretId('njk', key.key)).toBe(key.id);
    const row = await store.driver.get('SELECT key_hash FROM api_keys WHERE id = ?', [key.id]);
    expect(row?.key_hash).toBe(toHex(sha256(utf8(key.key))));
    await store.dispose();
    const bytes =
      (await readFile(file)).toString('latin1') + (await readFile(`${file}-wal`).catch(() => Buffer.alloc(0))).toString('latin1');
    for (const secret of [key.key, op.token, en.token]) {
      // The random part is the last 43 characters (it may itself contain "_").
      const random = secret.slice(-43);
      expect(bytes.includes(random.slice(0, 20)) || bytes.includes(random.slice(-20))).toBe(false);
    }
    store = await openSqliteStore({ path: file });
    expect((await store.accounts.authenticateApiKey(key.key))?.id).toBe(key.id);
  });

  it('refuses a revoked key, a wrong secret for a real id, and a malformed key', async () => {
    const key = await store.accounts.createApiKey({ name: 'k', now: 1 });
    const wrong = key.key.slice(0, -4) + (key.key.endsWith('AAAA') ? 'BBBB' : 'AAAA');
    expect(await store.accounts.authenticateApiKey(wrong)).toBeNull();
    expect(await store.accounts.authenticateApiKey('nope')).toBeNull();
    expect(await store.accounts.authenticateApiKey(key.key.replace('njk_', 'njop_'))).toBeNull();
    expect(await store.accounts.revokeApiKey(key.id, 2)).toBe(true);
    expect(await store.accounts.authenticateApiKey(key.key)).toBeNull();
    expect(await store.accounts.revokeApiKey('000000000000', 2)).toBe(false);
  });

  it('rotates an operator token: the old one stops working', async () => {
    const op = await store.accounts.createOperator({ name: 'o', now: 1 });
    const next = await store.accounts.rotateOperatorToken(op.id);
    expect(secretId('njop', next)).toBe(op.id);
    expect(await store.accounts.authenticateOperator(op.token)).toBeNull();
    expect((await store.accounts.authenticateOperator(next))?.name).toBe('o');
  });

  it('bounds names and prices', async () => {
    for (const name of ['', ' ', 'x'.repeat(129), 'a\nb']) {
      const err = await store.accounts.createApiKey({ name, now: 1 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(NightjarError);
      expect((err as NightjarError).code).toBe('NJ_USAGE');
    }
    const err = await store.accounts
      .setPrice('m', { promptPerMTok: 1_000_000_000_001n, completionPerMTok: 0n }, 1)
      .catch((e: unknown) => e);
    expect((err as NightjarError).message).toBe('a price must be 0 to 1000000000000 micro-credits per million tokens');
    await store.accounts.setPrice('m', { promptPerMTok: 5n, completionPerMTok: 7n }, 1);
    await store.accounts.setPrice('m', { promptPerMTok: 6n, completionPerMTok: 8n }, 2);
    expect(await store.accounts.listPrices()).toEqual([{ model: 'm', promptPerMTok: 6n, completionPerMTok: 8n, updatedAt: 2 }]);
  });
});
