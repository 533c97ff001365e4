/**
 * Issue 17: "Random weights can be sold". A model id is priced and routed only for the files the
 * gateway's signed catalog lists for it (by sha256); a file the catalog does not list is served
 * free (serveUncatalogued) or not at all, whatever its own `synthetic` flag says. Real gateways on
 * SQLite files, real agents (fake engine) and scripted ones, real sockets on port 0.
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  NightjarError,
  PROTOCOL_VERSION,
  decodeDirectoryAnswer,
  decodeSignedCatalog,
  decodeSignedReleases,
  fromBase64Url,
  toBase64Url,
  gatewayKeyResponseSchema,
  modelsResponseSchema,
  sealRequest,
  verifyBundle,
} from '../../src/shared/index.js';
import { NightjarClient, type NightjarClientOptions } from '../../src/client/index.js';
import { ACCOUNTS, Gateway, openSqliteStore, type GatewayOptions } from '../../src/gateway/index.js';
import type { Agent, ServedModel } from '../../src/main/agent/index.js';
import { FakeEngine } from '../helpers/fake-engine.js';
import { perTestFetch } from '../helpers/http-client.js';
import { onceTrue } from '../helpers/events.js';
import { agentServing } from '../helpers/network.js';
import { REAL_FILE, REAL_MODEL, REAL_PRICE, billed, startAgent, startBilledNetwork, tempDir, type BilledNetwork } from './support/net.js';
import { RawAgent } from './support/raw-agent.js';

const http = perTestFetch();
/** The attack: a random-weight file that claims the priced id and says it is not synthetic. */
const FAKE_FILE: ServedModel = { ...REAL_MODEL, sha256: 'ee'.repeat(32), synthetic: false };
const ask = { model: REAL_MODEL.id, messages: [{ role: 'user' as const, content: 'hi' }], maxTokens: 16 };

let tmp: Awaited<ReturnType<typeof tempDir>> | null = null;
let net: BilledNetwork | null = null;
const agents: Agent[] = [];
const raws: RawAgent[] = [];

afterEach(async () => {
  await Promise.all(agents.splice(0).map((a) => a.dispose()));
  await Promise.all(raws.splice(0).map((r) => r.close()));
  await net?.close();
  await tmp?.remove();
  net = null;
  tmp = null;
});

/**
 * A billed network (REAL_MODEL catalogued and priced); strict (serveUncatalogued false) unless
 * told; NJ_MODEL_UNKNOWN answered as final from the start (no agentReturnMs window to wait out).
 */
async function network(options: GatewayOptions = {}): Promise<BilledNetwork> {
  tmp = await tempDir();
  net = await startBilledNetwork(tmp.dir, { serveUncatalogued: false, agentReturnMs: 0, ...options });
  return net;
}

async function agent(n: BilledNetwork, model: ServedModel, engine = new FakeEngine(), enrolled = true): Promise<Agent> {
  const a = await startAgent(n.gateway, { engine, model, ...(enrolled ? { enrollToken: await n.enrollToken() } : {}) });
  agents.push(a);
  return a;
}

/** A client of `gateway` that does not retry (NJ_MODEL_UNKNOWN would otherwise be retried for 6 s). */
function client(gateway: Gateway, apiKey: string, extra: Pick<NightjarClientOptions, 'candidates'> = {}): NightjarClient {
  return new NightjarClient({
    gatewayUrl: gateway.url,
    trust: { allowSynthetic: true },
    fetch: http.fetch,
    apiKey,
    retry: false,
    ...extra,
  });
}

async function errorOf(p: Promise<unknown>): Promise<NightjarError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(NightjarError);
  return err as NightjarError;
}

async function models(n: BilledNetwork): Promise<unknown[]> {
  const res = await http.fetch(`${n.gateway.url}/v1/models`, { headers: { authorization: `Bearer ${n.key.key}` } });
  return modelsResponseSchema.parse(await res.json()).models;
}

/** Nobody was paid and the client holds all it had: the ledger never moved. */
async function expectNothingBilled(n: BilledNetwork): Promise<void> {
  expect(await n.store.ledger.clientBalance(n.key.id)).toEqual({ balance: 10_000_000n, held: 0n });
  expect(await n.store.ledger.balance(ACCOUNTS.operator(n.operator.id))).toBe(0n);
  expect(await n.store.ledger.balance(ACCOUNTS.platform)).toBe(0n);
  expect(await n.store.ledger.checkInvariants()).toEqual([]);
}

describe('the issue’s attack: an uncatalogued file under a priced id', () => {
  // Fails without the catalog check in Directory.serves (matching the model id alone): the fake
  // file is offered, routed and billed at REAL_PRICE. Shown once with serves() matching the id
  // alone: both cases here, the mixed-fleet test and the two uncatalogued-id tests below failed.
  it.each([false, true])('is neither offered nor routed nor billed (serveUncatalogued %s)', async (serveUncatalogued) => {
    const n = await network({ serveUncatalogued });
    const engine = new FakeEngine();
    await agent(n, FAKE_FILE, engine);
    expect(await models(n)).toEqual([]);
    const err = await errorOf(client(n.gateway, n.key.key).complete(ask));
    expect({ code: err.code, message: err.message }).toEqual({
      code: 'NJ_MODEL_UNKNOWN',
      message: `no connected agent serves ${REAL_MODEL.id}`,
    });
    expect(engine.generated).toBe(0);
    await expectNothingBilled(n);
  });

  it('the same agent with the catalogued file bills at the price, and /v1/models says catalogued', async () => {
    const n = await network();
    const a = await agent(n, REAL_MODEL);
    expect(await models(n)).toEqual([
      {
        id: REAL_MODEL.id,
        synthetic: false,
        catalogued: true,
        agents: 1,
        freeSlots: 2,
        price: { promptPerMTok: '1000000', completionPerMTok: '2000000' },
      },
    ]);
    const isBilled = billed(n.gateway);
    const result = await client(n.gateway, n.key.key).complete(ask);
    await isBilled(result.jobId);
    const job = (await n.store.ledger.job(result.jobId))!;
    expect({ status: job.status, charged: job.charged, agentId: job.agentId }).toEqual({
      status: 'settled',
      charged: 18n,
      agentId: a.agentId,
    });
    expect(await n.store.ledger.balance(ACCOUNTS.operator(n.operator.id))).toBe(17n);
  });
});

describe('a mixed fleet under one priced id', () => {
  it('only the catalogued agent is a candidate and serves; a job sealed for the uncatalogued one is refused unrun', async () => {
    // Even where uncatalogued files are served free: the id is catalogued, so its other files are not offered.
    const n = await network({ serveUncatalogued: true });
    const good = await agent(n, REAL_MODEL);
    const fakeEngine = new FakeEngine();
    const fake = await agent(n, FAKE_FILE, fakeEngine);
    const c = client(n.gateway, n.key.key, { candidates: 8 });
    expect((await c.candidates(REAL_MODEL.id)).map((c) => c.verified.bundle.agentId)).toEqual([good.agentId]);
    expect(await models(n)).toMatchObject([{ id: REAL_MODEL.id, catalogued: true, agents: 1 }]);
    const isBilled = billed(n.gateway);
    for (let i = 0; i < 4; i++) {
      const result = await c.complete(ask);
      await isBilled(result.jobId);
      expect((await n.store.ledger.job(result.jobId))?.agentId).toBe(good.agentId);
    }

    // A client (or a colluding one) that seals for the uncatalogued agent directly, past the candidates.
    const session = n.gateway.directory.get(fake.agentId)!;
    const sealed = await sealRequest({
      model: REAL_MODEL.id,
      messages: [{ role: 'user', content: 'hi' }],
      sampling: { maxTokens: 16 },
      recipients: [await verifyBundle(session.bundle.signed, { now: Date.now() })],
      now: Date.now(),
    });
    const res = await http.fetch(`${n.gateway.url}/v1/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${n.key.key}` },
      body: JSON.stringify({ v: PROTOCOL_VERSION, envelope: sealed.envelope }),
    });
    expect({ status: res.status, body: await res.json() }).toEqual({
      status: 503,
      body: {
        error: {
          code: 'NJ_NO_CAPACITY',
          message: 'no agent this request was sealed for can take it now',
          retryAfterMs: expect.any(Number),
        },
      },
    });
    await isBilled(sealed.jobId);
    expect(fakeEngine.generated).toBe(0);
    expect(await n.store.ledger.job(sealed.jobId)).toMatchObject({ status: 'released', charged: null });
    // Four jobs at 18 micro-credits each, all to the catalogued agent's operator (95 %).
    expect(await n.store.ledger.clientBalance(n.key.id)).toEqual({ balance: 10_000_000n - 72n, held: 0n });
  });

  // Fails without the pricedFiles check in ClientJob's receipt verification: an agent whose bundle
  // lists the catalogued file and a fake one under the same id is routed (it has a catalogued
  // file) and would bill for the fake. Shown once with the check removed: the job settled at 18.
  it('a receipt naming the uncatalogued file of an agent that lists both bills nothing', async () => {
    const n = await network();
    const raw = await RawAgent.connect({
      url: n.gateway.agentUrl,
      model: REAL_MODEL,
      extraModels: [FAKE_FILE],
      enrollToken: await n.enrollToken(),
    });
    raws.push(raw);
    await agentServing(n.gateway, raw.agentId, 2000);
    const isBilled = billed(n.gateway);
    const stream = client(n.gateway, n.key.key).chat(ask);
    const served = await raw.serve(await raw.next('job'), ['Hello', ' there']);
    served.finish(await raw.sign({ ...served.receipt, modelSha256: FAKE_FILE.sha256 }));
    const err = await errorOf(stream.result);
    expect({ code: err.code, message: err.message }).toEqual({
      code: 'NJ_RECEIPT_INVALID',
      message: `the reply broke off after 11 characters: the receipt names a file the catalog does not list for ${REAL_MODEL.id}`,
    });
    await isBilled(await stream.jobId);
    expect(await n.store.ledger.job(await stream.jobId)).toMatchObject({ status: 'released', charged: null });
    await expectNothingBilled(n);
  });
});

describe('a catalog change while a job waits', () => {
  // Fails without the `catalogued` need of a priced job (JobNeeds.catalogued, checked in
  // Directory.eligible): the waiting job, held at the price, would stay viable for the agent whose
  // file is now merely "uncatalogued, served free", and run there once its slot frees (shown once:
  // the job was not expired, and the test timed out waiting for its answer).
  it('a job held at the catalog price never goes to a file the catalog stopped listing; nothing is billed', async () => {
    const n = await network({ serveUncatalogued: true });
    const raw = await RawAgent.connect({ url: n.gateway.agentUrl, model: REAL_MODEL, slots: 1, enrollToken: await n.enrollToken() });
    raws.push(raw);
    await agentServing(n.gateway, raw.agentId, 2000);
    const c = client(n.gateway, n.key.key);
    const billedJobs = new Set<string>();
    n.gateway.onJobBilled(({ jobId }) => billedJobs.add(jobId));
    const first = c.chat(ask);
    const job = await raw.next('job');
    const queued = onceTrue(n.gateway.router.onDepthChanged, () => n.gateway.router.depth(REAL_MODEL.id) === 1, 'the second job to queue');
    const second = c.chat(ask);
    await queued;
    // The gateway operator takes the model out of the catalog: the file is now uncatalogued, and
    // this gateway serves uncatalogued files free, but not for a job already priced.
    expect(await n.store.catalog.removeFile(REAL_MODEL.id)).toBe(1);
    await n.gateway.catalog.reload();
    const err = await errorOf(second.result);
    expect({ code: err.code, message: err.message }).toEqual({
      code: 'NJ_NO_CAPACITY',
      message: 'the agents this request was sealed for went away; ask for new candidates',
    });
    // The job in flight when the file was removed finishes, and its receipt bills nothing.
    const served = await raw.serve(job, ['Hello']);
    served.finish();
    expect((await errorOf(first.result)).code).toBe('NJ_RECEIPT_INVALID');
    await onceTrue(n.gateway.onJobBilled, () => billedJobs.size === 2, 'both jobs to be billed');
    expect(await Promise.all([...billedJobs].map(async (id) => (await n.store.ledger.job(id))?.status))).toEqual(['released', 'released']);
    expect(raw.frames.filter((f) => f.type === 'job')).toHaveLength(1);
    await expectNothingBilled(n);
  });
});

describe('uncatalogued ids', () => {
  const COMMUNITY: ServedModel = { id: 'community-7b', sha256: 'aa'.repeat(32), synthetic: false, contextLength: 4096 };

  // Fails if prices attached to the id rather than to catalogued files (priceOf reading the price
  // table for an id the catalog does not list; shown once): the job would be held and charged.
  it('are served free where serveUncatalogued is set, even when the id has a price, by an unbound agent too', async () => {
    const n = await network({ serveUncatalogued: true });
    await n.store.accounts.setPrice(COMMUNITY.id, REAL_PRICE, Date.now());
    await agent(n, COMMUNITY, new FakeEngine(), false);
    expect(await models(n)).toEqual([
      {
        id: COMMUNITY.id,
        synthetic: false,
        catalogued: false,
        agents: 1,
        freeSlots: 2,
        price: { promptPerMTok: '0', completionPerMTok: '0' },
      },
    ]);
    const isBilled = billed(n.gateway);
    const result = await client(n.gateway, n.key.key).complete({ ...ask, model: COMMUNITY.id });
    await isBilled(result.jobId);
    expect(await n.store.ledger.job(result.jobId)).toMatchObject({ status: 'settled', charged: 0n, holdAmount: 0n, operatorId: null });
    await expectNothingBilled(n);
  });

  it('are not offered at all where it is not (the default with a store), synthetic or not', async () => {
    tmp = await tempDir();
    const store = await openSqliteStore({ path: `${tmp.dir}/gateway.db` });
    const key = await store.accounts.createApiKey({ name: 'client', now: Date.now() });
    const gateway = await Gateway.start({ port: 0, store, agentReturnMs: 0 });
    try {
      expect(gateway.options.serveUncatalogued).toBe(false);
      const synthetic = { ...COMMUNITY, id: 'synthetic-tiny', sha256: 'bb'.repeat(32), synthetic: true };
      for (const model of [COMMUNITY, synthetic]) agents.push(await startAgent(gateway, { engine: new FakeEngine(), model }));
      const res = await http.fetch(`${gateway.url}/v1/models`, { headers: { authorization: `Bearer ${key.key}` } });
      expect(modelsResponseSchema.parse(await res.json()).models).toEqual([]);
      for (const model of [COMMUNITY.id, synthetic.id]) {
        const err = await errorOf(client(gateway, key.key).complete({ ...ask, model }));
        expect({ code: err.code, message: err.message }).toEqual({
          code: 'NJ_MODEL_UNKNOWN',
          message: `no connected agent serves ${model}`,
        });
      }
    } finally {
      await Promise.all(agents.splice(0).map((a) => a.dispose()));
      await gateway.dispose();
      await store.dispose();
    }
  });
});

describe('the catalog served and administered', () => {
  it('GET /v1/catalog is signed by the key GET /v1/gateway-key names, and follows the store', async () => {
    const n = await network();
    const keyRes = await http.fetch(`${n.gateway.url}/v1/gateway-key`);
    const key = gatewayKeyResponseSchema.parse(await keyRes.json());
    const info = (await n.store.catalog.gatewayKeyInfo())!;
    expect(key).toEqual({ v: 1, key: info.publicKey, keyId: info.keyId });
    const fetchCatalog = async () => {
      const res = await http.fetch(`${n.gateway.url}/v1/catalog`);
      expect(res.headers.get('content-type')).toMatch(/^application\/json/);
      return decodeSignedCatalog(await res.text(), { gatewayKey: fromBase64Url(key.key), now: Date.now() });
    };
    const first = await fetchCatalog();
    expect(first.catalog.models).toEqual([{ id: REAL_MODEL.id, files: [REAL_FILE] }]);
    const q8 = {
      ...REAL_FILE,
      sha256: '0c'.repeat(32),
      name: 'fake-real-1b-q8_0.gguf',
      quantization: 'Q8_0',
      url: 'https://example.com/q8.gguf',
    };
    await n.store.catalog.addFile(REAL_MODEL.id, q8, Date.now());
    await n.gateway.catalog.reload();
    const second = await fetchCatalog();
    expect(second.catalog.models).toEqual([{ id: REAL_MODEL.id, files: [q8, REAL_FILE] }]);
    expect(second.catalog.issuedAt).toBeGreaterThanOrEqual(first.catalog.issuedAt);
    expect(second.file(REAL_MODEL.id, q8.sha256)).toEqual(q8);
  });

  it('the key is made once and kept: a restarted gateway on the same database signs with the same key', async () => {
    const n = await network();
    const before = (await n.store.catalog.gatewayKeyInfo())!;
    const file = n.file;
    await n.close();
    net = null;
    const store = await openSqliteStore({ path: file });
    const gateway = await Gateway.start({ port: 0, store });
    try {
      expect(gateway.catalog.gatewayKey).toEqual({ key: before.publicKey, keyId: before.keyId });
      expect(await store.catalog.gatewayKeyInfo()).toEqual(before);
    } finally {
      await gateway.dispose();
      await store.dispose();
    }
  });

  it('an admin change in the store reaches routing without a restart, once the copy is older than catalogRefreshMs', async () => {
    const n = await network({ catalogRefreshMs: 0 });
    await agent(n, FAKE_FILE);
    const c = client(n.gateway, n.key.key);
    expect((await errorOf(c.complete(ask))).code).toBe('NJ_MODEL_UNKNOWN');
    // The gateway operator vouches for this file: it is now that model, priced and routed.
    await n.store.catalog.addFile(REAL_MODEL.id, { ...REAL_FILE, sha256: FAKE_FILE.sha256 }, Date.now());
    const isBilled = billed(n.gateway);
    const result = await c.complete(ask);
    await isBilled(result.jobId);
    expect(await n.store.ledger.job(result.jobId)).toMatchObject({ status: 'settled', charged: 18n });
    expect(await n.store.catalog.removeFile(REAL_MODEL.id, FAKE_FILE.sha256)).toBe(1);
    expect((await errorOf(c.complete(ask))).code).toBe('NJ_MODEL_UNKNOWN');
  });

  it('GET /v1/releases and every GET /v1/candidates answer are signed by that key; a rotation moves all three to the new key', async () => {
    const n = await network({ catalogRefreshMs: 0 });
    await agent(n, REAL_MODEL);
    const key = async () => gatewayKeyResponseSchema.parse(await (await http.fetch(`${n.gateway.url}/v1/gateway-key`)).json());
    const releases = async (gatewayKey: Uint8Array) =>
      decodeSignedReleases(await (await http.fetch(`${n.gateway.url}/v1/releases`)).text(), { gatewayKey, now: Date.now() });
    const nonce = toBase64Url(new Uint8Array(16).fill(7));
    const request = { nonce, model: REAL_MODEL.id, k: 2, minTrust: 'signed' as const };
    const candidates = async (gatewayKey: Uint8Array, query = `model=${REAL_MODEL.id}&k=2&nonce=${nonce}`) => {
      const res = await http.fetch(`${n.gateway.url}/v1/candidates?${query}`, { headers: { authorization: `Bearer ${n.key.key}` } });
      return decodeDirectoryAnswer(await res.text(), { gatewayKey, request, now: Date.now() });
    };
    const before = await key();
    expect(before.rotations).toBeUndefined(); // absent until a rotation: an older parser still reads the answer
    const k1 = fromBase64Url(before.key);
    await n.store.catalog.addRelease({ version: '1.0.0', appHash: 'ab'.repeat(32) }, Date.now());
    expect((await releases(k1)).list.releases).toEqual([{ version: '1.0.0', appHash: 'ab'.repeat(32) }]);
    const answer = await candidates(k1);
    expect(answer.request).toEqual(request);
    expect(answer.candidates).toHaveLength(1);
    expect(answer.candidates[0]!.trust).toBe('signed');
    // Without a nonce the answer says so (null), and a client that sent one refuses it.
    await expect(candidates(k1, `model=${REAL_MODEL.id}&k=2`)).rejects.toMatchObject({ code: 'NJ_DIRECTORY_INVALID' });
    const bad = await http.fetch(`${n.gateway.url}/v1/candidates?model=${REAL_MODEL.id}&nonce=short`, {
      headers: { authorization: `Bearer ${n.key.key}` },
    });
    expect({ status: bad.status, body: await bad.json() }).toEqual({
      status: 400,
      body: { error: { code: 'NJ_BAD_REQUEST', message: 'nonce must be 16 random bytes in base64url' } },
    });

    const { active } = await n.store.catalog.rotateKey(Date.now(), 60_000);
    const after = await key();
    expect({ key: after.key, keyId: after.keyId, rotations: after.rotations?.length }).toEqual({
      key: active.publicKey,
      keyId: active.keyId,
      rotations: 1,
    });
    const k2 = fromBase64Url(after.key);
    await expect(releases(k1)).rejects.toMatchObject({ code: 'NJ_GATEWAY_KEY_MISMATCH' });
    await expect(candidates(k1)).rejects.toMatchObject({ code: 'NJ_GATEWAY_KEY_MISMATCH' });
    expect((await releases(k2)).list.gatewayKey).toBe(after.key);
    expect((await candidates(k2)).gatewayKey).toBe(after.key);
  });
});
