/**
 * A client verifies the gateway's word against a real gateway on port 0 with a real SQLite file:
 * it pins the gateway key on first use (kept in gateway-keys.json) and then refuses a directory
 * answer, a catalog or a released-versions list signed by another key, a directory answer replayed
 * from an earlier request and a stale one (fake clock), before anything is sealed; it follows a
 * rotation made with the store's rotateKey, and takes the key given (`gatewayKey`).
 *
 * The other key's documents are made by a fetch that stands between the client and the gateway (a
 * network attacker, or another server answering at the gateway's URL): it re-signs the gateway's
 * real answer with Mallory's key. Each "Fails without …" was shown once (the protection removed,
 * the test watched failing, put back) on 2026-12-01.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FileGatewayKeyStore, MemoryGatewayKeyStore, NightjarClient, type NightjarClientOptions } from '../../src/client/index.js';
import { openSqliteStore, type GatewayStore } from '../../src/gateway/index.js';
import {
  createDirectoryAnswer,
  createSignedCatalog,
  createSignedReleases,
  generateGatewayKey,
  gatewayKeyFingerprint,
  toBase64Url,
  type CandidatesResponse,
  type GatewayKeyPair,
  type SignedGatewayCatalog,
  type SignedReleasesList,
} from '../../src/shared/index.js';
import { FakeEngine } from '../helpers/fake-engine.js';
import { perTestFetch } from '../helpers/http-client.js';
import { FAKE_MODEL, ManualClock, startNet, type TestNet } from './support/net.js';

let net: TestNet | undefined;
let store: GatewayStore | undefined;
let dir: string | undefined;
afterEach(async () => {
  await net?.close();
  await store?.dispose();
  if (dir) await rm(dir, { recursive: true, force: true });
  net = store = dir = undefined;
});
const http = perTestFetch();

const ask = { model: FAKE_MODEL.id, messages: [{ role: 'user' as const, content: 'Say hello.' }], maxTokens: 16 };

/** A gateway on a SQLite file that re-reads its key and catalog at every request, and one agent. */
async function start(): Promise<{ n: TestNet; s: GatewayStore; keys: string }> {
  dir = await mkdtemp(path.join(tmpdir(), 'nightjar-gateway-word-'));
  store = await openSqliteStore({ path: path.join(dir, 'gateway.db') });
  net = await startNet({ store, catalogRefreshMs: 0, serveUncatalogued: true, allowAnonymous: true });
  await net.addAgent(new FakeEngine({ words: ['ok'] }));
  return { n: net, s: store, keys: path.join(dir, 'gateway-keys.json') };
}

type Rewrite = (path: string, body: unknown) => Promise<unknown>;

/** A fetch that counts job posts and lets `rewrite` replace a JSON answer's body. */
function between(rewrite: Rewrite): { fetch: typeof fetch; jobs: () => number } {
  let jobs = 0;
  const f: typeof fetch = async (input, init) => {
    const url = new URL(String(input instanceof Request ? input.url : input));
    if (url.pathname === '/v1/jobs') jobs++;
    const res = await http.fetch(input, init);
    if (url.pathname === '/v1/jobs' || !res.ok) return res;
    const body = await rewrite(url.pathname, await res.json());
    return new Response(JSON.stringify(body), { status: res.status, headers: { 'content-type': 'application/json' } });
  };
  return { fetch: f, jobs: () => jobs };
}

/** Re-signs every signed answer with `key`, as another server holding another key would. */
function resignWith(key: GatewayKeyPair): Rewrite {
  return async (p, body) => {
    if (p === '/v1/candidates') {
      const a = body as CandidatesResponse;
      return createDirectoryAnswer({ key, request: a.request, candidates: a.candidates, now: a.issuedAt });
    }
    if (p === '/v1/catalog') {
      const c = body as SignedGatewayCatalog;
      return createSignedCatalog({ key, models: c.catalog.models, now: c.catalog.issuedAt });
    }
    if (p === '/v1/releases') {
      const r = body as SignedReleasesList;
      return createSignedReleases({
        key,
        releases: [...r.releases.releases, { version: '6.6.6', appHash: 'ee'.repeat(32) }],
        now: r.releases.issuedAt,
      });
    }
    return body;
  };
}

function client(n: TestNet, options: Partial<NightjarClientOptions> = {}): NightjarClient {
  return new NightjarClient({
    gatewayUrl: n.gateway.url,
    trust: { allowSynthetic: true },
    fetch: http.fetch,
    candidatesTtlMs: 0,
    ...options,
  });
}

describe('trust on first use', () => {
  // Fails without the pinned-key comparison in NightjarClient#checkGatewayKey: Mallory's answer is used and a job is sent.
  it('pins the key in gateway-keys.json, then refuses candidates, catalog and releases another key signed; seals nothing', async () => {
    const { n, s, keys } = await start();
    await s.catalog.addRelease({ version: '1.0.0', appHash: 'ab'.repeat(32) }, Date.now());
    const first = client(n, { gatewayKeys: new FileGatewayKeyStore({ file: keys }) });
    await first.complete(ask);
    const real = (await s.catalog.gatewayKeyInfo())!;
    const file = JSON.parse(await readFile(keys, 'utf8')) as { gateways: Record<string, { key: string; keyId: string; reason: string }> };
    expect(file.gateways[n.gateway.url]).toMatchObject({ key: real.publicKey, keyId: real.keyId, reason: 'first-use' });
    expect(first.trustedGatewayKey?.keyId).toBe(real.keyId);
    expect((await first.releases()).release('ab'.repeat(32))).toEqual({ version: '1.0.0', appHash: 'ab'.repeat(32) });
    expect((await first.catalog()).catalog.gatewayKey).toBe(real.publicKey);

    // A later run (a new client on the same file) meets another key at the same URL.
    const mallory = await generateGatewayKey();
    const mitm = between(resignWith(mallory));
    const later = client(n, { gatewayKeys: new FileGatewayKeyStore({ file: keys }), fetch: mitm.fetch });
    const mismatch = {
      code: 'NJ_GATEWAY_KEY_MISMATCH',
      message: expect.stringContaining(`not the pinned key ${real.keyId}: the gateway’s key changed without a rotation statement`),
    };
    await expect(later.complete(ask)).rejects.toMatchObject(mismatch);
    await expect(later.complete(ask)).rejects.toMatchObject({
      message: expect.stringContaining(`run \`nightjar trust reset --gateway ${n.gateway.url}\``),
    });
    await expect(later.catalog()).rejects.toMatchObject(mismatch);
    await expect(later.releases()).rejects.toMatchObject(mismatch);
    expect(mitm.jobs()).toBe(0);
    // The pin is unchanged: refusing never re-pins.
    expect((await new FileGatewayKeyStore({ file: keys }).list())[n.gateway.url]?.key).toBe(real.publicKey);

    // After `nightjar trust reset`, the next use pins what it meets (that is the reset's whole point).
    await new FileGatewayKeyStore({ file: keys }).remove(n.gateway.url);
    // The client that refused still holds the old pin in memory; a fresh one pins what it meets.
    await expect(later.releases()).rejects.toMatchObject(mismatch);
    const fresh = client(n, { gatewayKeys: new FileGatewayKeyStore({ file: keys }), fetch: mitm.fetch });
    expect((await fresh.releases()).list.gatewayKey).toBe(toBase64Url(mallory.publicKey));
  });
});

describe('directory answers', () => {
  // Fails without the nonce check in verifyDirectoryAnswer: the recorded answer is used again and a job is sent.
  it('one replayed from an earlier request (another nonce) is refused before anything is sealed', async () => {
    const { n } = await start();
    let recorded: unknown = null;
    const replay = between(async (p, body) => {
      if (p !== '/v1/candidates') return body;
      recorded ??= body;
      return recorded;
    });
    const c = client(n, { fetch: replay.fetch });
    await c.complete(ask);
    expect(replay.jobs()).toBe(1);
    await expect(c.complete(ask)).rejects.toMatchObject({
      code: 'NJ_DIRECTORY_INVALID',
      message: 'the directory answer answers another request (its nonce is not the one sent): a replay',
    });
    expect(replay.jobs()).toBe(1);
  });

  // Fails without the time check in verifyDirectoryAnswer: the client, 31 s ahead, would accept the answer.
  it('a stale one (the client’s clock 31 s past its issuedAt) is refused; within the window it is used', async () => {
    const { n } = await start();
    const clock = new ManualClock();
    const c = client(n, { clock });
    await c.complete(ask);
    clock.advance(31_000);
    await expect(c.complete(ask)).rejects.toMatchObject({
      code: 'NJ_DIRECTORY_INVALID',
      message: expect.stringMatching(/is stale: issued 3\d{4} ms ago/),
    });
    const wide = client(n, { clock, directoryWindowMs: 60_000 });
    await expect(wide.complete(ask)).resolves.toMatchObject({ text: 'ok' });
  });

  // Fails without the request-field check: the gateway would answer minTrust signed to a client that asked for attested.
  it('one for another minTrust than the client asked (the query rewritten on the way) is refused', async () => {
    const { n } = await start();
    const rewriting: typeof fetch = (input, init) => {
      const url = String(input instanceof Request ? input.url : input).replace('minTrust=attested', 'minTrust=signed');
      return http.fetch(url, init);
    };
    const c = client(n, { fetch: rewriting, trust: { allowSynthetic: true, minTrust: 'attested' } });
    await expect(c.candidates(FAKE_MODEL.id)).rejects.toMatchObject({
      code: 'NJ_DIRECTORY_INVALID',
      message: 'the directory answer answers another request (model, k or minTrust differ)',
    });
  });
});

describe('the trust the gateway judged', () => {
  // Fails without the judged-trust check in NightjarClient#checkCandidate: the refusal then comes from the client's own
  // trust check, with its other message (that check is the second line; today it grants only `signed`).
  it('a candidate the signed answer puts below minTrust is refused before sealing, even from the pinned key', async () => {
    const { n, s } = await start();
    const key = await s.catalog.gatewayKey(Date.now());
    // The gateway itself (its key) answers minTrust attested with an agent it judged only signed.
    const lenient = between(async (p, body) => {
      if (p !== '/v1/candidates') return body;
      const a = body as CandidatesResponse;
      return createDirectoryAnswer({ key, request: { ...a.request, minTrust: 'attested' }, candidates: a.candidates, now: a.issuedAt });
    });
    const rewriting: typeof fetch = (input, init) =>
      lenient.fetch(String(input instanceof Request ? input.url : input).replace('minTrust=attested', 'minTrust=signed'), init);
    const c = client(n, { fetch: rewriting, trust: { allowSynthetic: true, minTrust: 'attested' } });
    await expect(c.complete(ask)).rejects.toMatchObject({
      code: 'NJ_TRUST_POLICY',
      message: expect.stringMatching(/: the gateway judged agent [0-9a-f]{8} signed; the policy asks for attested$/),
    });
    expect(lenient.jobs()).toBe(0);
  });
});

describe('rotation', () => {
  // Fails without followRotations in NightjarClient#checkGatewayKey: the rotated gateway's answers are refused as a mismatch.
  it('a client that pinned the old key follows two rotations signed key by key, and its pin file moves with it', async () => {
    const { n, s, keys } = await start();
    const pins = new FileGatewayKeyStore({ file: keys });
    const c = client(n, { gatewayKeys: pins });
    await c.complete(ask);
    const old = (await s.catalog.gatewayKeyInfo())!;
    await s.catalog.rotateKey(Date.now(), 86_400_000);
    const { active } = await s.catalog.rotateKey(Date.now() + 1, 86_400_000);
    await expect(c.complete(ask)).resolves.toMatchObject({ text: 'ok' });
    expect(c.trustedGatewayKey?.keyId).toBe(active.keyId);
    expect((await pins.list())[n.gateway.url]).toMatchObject({ key: active.publicKey, reason: 'rotation' });
    expect(active.keyId).not.toBe(old.keyId);
    // The gateway lists both statements, and signs its catalog with the new key.
    const served = (await (await http.fetch(`${n.gateway.url}/v1/gateway-key`)).json()) as { keyId: string; rotations: unknown[] };
    expect(served.keyId).toBe(active.keyId);
    expect(served.rotations).toHaveLength(2);
    expect((await c.catalog()).catalog.gatewayKey).toBe(active.publicKey);
  });

  it('a pin no rotation statement leads from is refused, though the gateway has rotated', async () => {
    const { n, s } = await start();
    await s.catalog.rotateKey(Date.now(), 86_400_000);
    const stranger = await generateGatewayKey();
    const c = client(n, { gatewayKeys: new MemoryGatewayKeyStore({ [n.gateway.url]: toBase64Url(stranger.publicKey) }) });
    await expect(c.complete(ask)).rejects.toMatchObject({ code: 'NJ_GATEWAY_KEY_MISMATCH' });
  });
});

describe('a key given (gatewayKey, as --gateway-key passes it)', () => {
  it('as id, fingerprint or public key: the gateway’s answers are used; the key pinned on disk is not consulted', async () => {
    const { n, s } = await start();
    const info = (await s.catalog.gatewayKeyInfo())!;
    const elsewhere = await generateGatewayKey();
    const pins = new MemoryGatewayKeyStore({ [n.gateway.url]: toBase64Url(elsewhere.publicKey) });
    const fingerprint = gatewayKeyFingerprint(Buffer.from(info.publicKey, 'base64url'));
    for (const given of [info.keyId, fingerprint, info.publicKey]) {
      await expect(client(n, { gatewayKey: given, gatewayKeys: pins }).complete(ask)).resolves.toMatchObject({ text: 'ok' });
    }
  });

  // Fails without the given-key check: a client given the real key would accept Mallory's answers.
  it('another key than the one given is refused, naming --gateway-key, and nothing is sealed', async () => {
    const { n, s } = await start();
    const info = (await s.catalog.gatewayKeyInfo())!;
    const mitm = between(resignWith(await generateGatewayKey()));
    for (const given of [info.keyId, info.publicKey]) {
      await expect(client(n, { gatewayKey: given, fetch: mitm.fetch }).complete(ask)).rejects.toMatchObject({
        code: 'NJ_GATEWAY_KEY_MISMATCH',
        message: expect.stringContaining('check the key you gave (--gateway-key)'),
      });
    }
    expect(mitm.jobs()).toBe(0);
    expect(() => client(n, { gatewayKey: 'not-a-key' })).toThrow(expect.objectContaining({ code: 'NJ_CONFIG_INVALID' }));
  });
});
