/**
 * A billed test network: a gateway on port 0 with its ledger in a real SQLite file in a temp
 * dir, keys required (no anonymous clients), a priced real (non-synthetic) model whose file the
 * catalog lists, an operator, and helpers to start agents and clients against it.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach } from 'vitest';
import { NightjarClient, type NightjarClientOptions } from '../../../src/client/index.js';
import { Agent, type InferenceEngine, type ServedModel } from '../../../src/main/agent/index.js';
import { Gateway, openSqliteStore, type GatewayOptions, type GatewayStore } from '../../../src/gateway/index.js';
import { generateIdentity, type IdentityKeyPair, type Logger } from '../../../src/shared/index.js';
import { agentServing } from '../../helpers/network.js';
import { onceTrue } from '../../helpers/events.js';

/** A model the gateway treats as real (prices apply). */
export const REAL_MODEL: ServedModel = { id: 'fake-real-1b', sha256: 'cd'.repeat(32), synthetic: false, contextLength: 4096 };
/** The catalog's entry for REAL_MODEL's file: what makes its id priced and routed for that file. */
export const REAL_FILE = {
  sha256: REAL_MODEL.sha256,
  bytes: 1_117_320_736,
  name: 'fake-real-1b-q4_k_m.gguf',
  quantization: 'Q4_K_M',
  contextLength: 4096,
};
/** 1 credit per million prompt tokens, 2 per million completion tokens. */
export const REAL_PRICE = { promptPerMTok: 1_000_000n, completionPerMTok: 2_000_000n };

export async function tempDir(prefix = 'nightjar-gw-'): Promise<{ dir: string; remove(): Promise<void> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

export interface BilledNetwork {
  gateway: Gateway;
  store: GatewayStore;
  file: string;
  operator: { id: string; token: string };
  /** A client key holding 10 credits. */
  key: { id: string; key: string };
  /** A fresh single-use enrollment token for the operator. */
  enrollToken(): Promise<string>;
  /** Stops the gateway and closes the store. */
  close(): Promise<void>;
}

/** Starts a gateway on a SQLite file (created in `dir`), catalogues and prices REAL_MODEL, makes an operator and a funded key. */
export async function startBilledNetwork(
  dir: string,
  options: GatewayOptions = {},
  file = path.join(dir, 'gateway.db'),
): Promise<BilledNetwork> {
  const store = await openSqliteStore({ path: file });
  const now = Date.now();
  await store.catalog.addFile(REAL_MODEL.id, REAL_FILE, now);
  await store.accounts.setPrice(REAL_MODEL.id, REAL_PRICE, now);
  const operator = await store.accounts.createOperator({ name: 'Ada', now });
  const key = await store.accounts.createApiKey({ name: 'client', now });
  await store.ledger.topUp(key.id, 10_000_000n, now);
  const gateway = await Gateway.start({ port: 0, allowSynthetic: true, store, ...options });
  return {
    gateway,
    store,
    file,
    operator: { id: operator.id, token: operator.token },
    key: { id: key.id, key: key.key },
    enrollToken: async () =>
      (await store.accounts.createEnrollmentToken({ operatorId: operator.id, now: Date.now(), ttlMs: 3600_000 })).token,
    async close() {
      await gateway.dispose();
      await store.dispose();
    },
  };
}

export interface AgentOptions {
  engine: InferenceEngine;
  model?: ServedModel;
  enrollToken?: string;
  identity?: IdentityKeyPair;
  logger?: Logger;
}

/** Starts a real agent and waits until the gateway lists it as serving. */
export async function startAgent(gateway: Gateway, options: AgentOptions): Promise<Agent> {
  const agent = await Agent.create({
    gatewayUrl: gateway.agentUrl,
    identity: options.identity ?? (await generateIdentity()),
    engine: options.engine,
    model: options.model ?? REAL_MODEL,
    backoff: { initialMs: 50, maxMs: 200 },
    stopGraceMs: 100,
    ...(options.enrollToken ? { enrollToken: options.enrollToken } : {}),
    ...(options.logger ? { logger: options.logger } : {}),
  });
  agent.start();
  await agentServing(gateway, agent.agentId);
  return agent;
}

/** A client of `gateway` with `apiKey`, through `fetch`. */
export function clientOf(
  gateway: Gateway,
  fetchImpl: typeof fetch,
  apiKey?: string,
  extra: Pick<NightjarClientOptions, 'candidates' | 'seal'> = {},
): NightjarClient {
  return new NightjarClient({
    gatewayUrl: gateway.url,
    trust: { allowSynthetic: true },
    fetch: fetchImpl,
    ...(apiKey ? { apiKey } : {}),
    ...extra,
  });
}

/**
 * Starts listening for billed jobs now; the function returned resolves once the gateway has
 * billed `jobId` (settled or released), even if that happened before it was called.
 */
export function billed(gateway: Gateway): (jobId: string) => Promise<void> {
  const done = new Set<string>();
  gateway.onJobBilled(({ jobId }) => done.add(jobId));
  return (jobId) => onceTrue(gateway.onJobBilled, () => done.has(jobId), `job ${jobId} to be billed`, 10_000);
}

/** What {@link billedNetworkPerTest} hands a test file. */
export interface BilledNetworkFixture {
  /** This test's network. */
  readonly net: BilledNetwork;
  /** Agents to stop after the test. */
  readonly agents: Agent[];
  /** Scripted agents (RawAgent) to close after the test. */
  readonly raws: { close(): Promise<unknown> }[];
}

/**
 * A fresh billed network in a temp folder for every test of the file (vitest hooks); after each
 * test its agents are stopped, its raw agents closed, the network closed and the folder removed.
 */
export function billedNetworkPerTest(): BilledNetworkFixture {
  let tmp: Awaited<ReturnType<typeof tempDir>> | null = null;
  let net: BilledNetwork | null = null;
  const agents: Agent[] = [];
  const raws: { close(): Promise<unknown> }[] = [];
  beforeEach(async () => {
    tmp = await tempDir();
    net = await startBilledNetwork(tmp.dir);
  });
  afterEach(async () => {
    await Promise.all(agents.splice(0).map((a) => a.dispose()));
    await Promise.all(raws.splice(0).map((r) => r.close()));
    await net?.close();
    await tmp?.remove();
    net = null;
    tmp = null;
  });
  return {
    get net(): BilledNetwork {
      if (!net) throw new Error('the billed network exists only inside a test');
      return net;
    },
    agents,
    raws,
  };
}
