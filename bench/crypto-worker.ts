/**
 * One backend's crypto operations, in a worker thread (each worker has its own module instances,
 * so its own choice of backend), each run on request so the parent can interleave backends.
 *
 * How the tweetnacl backend is forced without touching src/: `cryptoBackend()` picks tweetnacl
 * when the runtime has no `crypto.subtle` — the portable path it takes in a runtime without
 * WebCrypto. Before anything here asks for the backend, this worker replaces its own
 * `globalThis.crypto` with an object that keeps `getRandomValues` but has no `subtle`. Every
 * operation then runs exactly as in production, and the worker checks the backend it got.
 */
import { parentPort, workerData } from 'node:worker_threads';
import {
  PROTOCOL_VERSION,
  ReplyOpener,
  ReplySealer,
  cryptoBackend,
  deriveReplyKeys,
  openRequest,
  randomBytes,
  sealRequest,
  signReceipt,
  toBase64Url,
  verifyReceipt,
  type ChatMessage,
  type Envelope,
  type Receipt,
} from '../src/shared/index.js';
import { BENCH_MODEL, benchAgentKeys } from './identities.js';
import { opsPerSecond } from './stats.js';

/** How a worker is started. */
export interface CryptoWorkerInput {
  backend: 'webcrypto' | 'tweetnacl';
  durationMs: number;
  /** Distinct envelopes to open, per recipient count, for all the runs of that operation. */
  openPool: number;
  /** Runs of each operation the parent will ask for (each open run gets its share of the pool). */
  runsPerOperation: number;
}

/** What a worker says: once ready, the operations it can run; then one result per request. */
export type CryptoWorkerMessage =
  { type: 'ready'; backend: string; operations: string[] } | { type: 'result'; operation: string; opsPerSecond: number };

/** What the parent asks: run one operation once. */
export interface CryptoWorkerRequest {
  operation: string;
}

const input = workerData as CryptoWorkerInput;
if (input.backend === 'tweetnacl') {
  const real = globalThis.crypto;
  Object.defineProperty(globalThis, 'crypto', {
    value: { getRandomValues: real.getRandomValues.bind(real) },
    configurable: true,
    writable: true,
  });
}

const PROMPT: ChatMessage[] = [{ role: 'user', content: 'n'.repeat(1024) }];

async function main(): Promise<void> {
  const backend = await cryptoBackend();
  if (backend.name !== input.backend) throw new Error(`asked for ${input.backend}, got ${backend.name}`);
  const agents = [await benchAgentKeys(), await benchAgentKeys(), await benchAgentKeys()];
  const me = agents[0]!;
  const seal = (n: number): Promise<{ envelope: Envelope }> =>
    sealRequest({
      model: BENCH_MODEL.id,
      messages: PROMPT,
      sampling: { maxTokens: 256 },
      recipients: agents.slice(0, n).map((a) => a.verified),
      now: Date.now(),
    });

  /** Each operation: the call to time, and how many calls it may make per run (a pool's share). */
  const operations = new Map<string, { op: () => unknown; maxCalls?: number }>();
  operations.set('seal request, 1 recipient', { op: () => seal(1) });
  operations.set('seal request, 3 recipients', { op: () => seal(3) });

  // Each real request brings a new ephemeral key, and the WebCrypto backend caches imported
  // public keys: opening one envelope over and over would measure cache hits. So every open takes
  // a fresh envelope from a pool, and a run ends early when its share of the pool runs out.
  for (const n of [1, 3]) {
    const pool: Envelope[] = [];
    for (let i = 0; i < input.openPool; i++) pool.push((await seal(n)).envelope);
    let next = 0;
    operations.set(`open request, ${n === 1 ? '1 recipient' : `${n} recipients`}`, {
      op: () => openRequest(pool[next++ % pool.length]!, { agentId: me.identity.agentId, boxKeys: [me.boxKey], now: Date.now() }),
      maxCalls: Math.floor(pool.length / input.runsPerOperation),
    });
  }

  const keys = deriveReplyKeys(randomBytes(32), randomBytes(16), me.identity.agentId);
  let sealer = new ReplySealer(keys);
  operations.set('seal reply chunk (5-character delta)', {
    op: () => {
      if (sealer.finished) sealer = new ReplySealer(keys);
      return sealer.seal('night');
    },
  });
  const chunks: Uint8Array[] = [];
  const source = new ReplySealer(keys);
  for (let i = 0; i < 20_000; i++) chunks.push(source.seal('night').data);
  let opener = new ReplyOpener(keys);
  let seq = 0;
  operations.set('open reply chunk', {
    op: () => {
      if (seq === chunks.length) {
        opener = new ReplyOpener(keys);
        seq = 0;
      }
      const data = chunks[seq]!;
      return opener.open(seq++, data);
    },
  });

  const receipt: Receipt = {
    v: PROTOCOL_VERSION,
    jobId: toBase64Url(randomBytes(16)),
    attempt: 0,
    agentId: me.identity.agentId,
    model: BENCH_MODEL.id,
    modelSha256: BENCH_MODEL.sha256,
    promptTokens: 312,
    completionTokens: 256,
    requestDigest: toBase64Url(randomBytes(32)),
    replyDigest: toBase64Url(randomBytes(32)),
    startedAt: Date.now(),
    endedAt: Date.now() + 1000,
    finishReason: 'length',
  };
  const signed = await signReceipt(receipt, me.identity);
  operations.set('sign receipt', { op: () => signReceipt(receipt, me.identity) });
  operations.set('verify receipt', {
    op: () => verifyReceipt(signed, { identityKey: me.identity.publicKey, agentId: me.identity.agentId, jobId: receipt.jobId }),
  });

  const message = randomBytes(200);
  const signature = await backend.sign(me.identity.seed, message);
  operations.set('primitive: Ed25519 sign', { op: () => backend.sign(me.identity.seed, message) });
  operations.set('primitive: Ed25519 verify', { op: () => backend.verify(me.identity.publicKey, message, signature) });
  operations.set('primitive: X25519 + HSalsa20 box key (fresh secret each time)', {
    op: () => backend.boxKey(me.boxKey.publicKey, randomBytes(32)),
  });

  const port = parentPort!;
  port.on('message', (request: CryptoWorkerRequest) => {
    const entry = operations.get(request.operation);
    if (!entry) throw new Error(`no operation "${request.operation}"`);
    void opsPerSecond(entry.op, input.durationMs, undefined, entry.maxCalls).then((r) => {
      port.postMessage({ type: 'result', operation: request.operation, opsPerSecond: r.opsPerSecond } satisfies CryptoWorkerMessage);
    });
  });
  port.postMessage({ type: 'ready', backend: backend.name, operations: [...operations.keys()] } satisfies CryptoWorkerMessage);
}

main().catch((error: unknown) => {
  throw error;
});
