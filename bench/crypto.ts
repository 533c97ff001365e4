/**
 * Crypto: envelope seal/open, reply chunk seal/open and receipt sign/verify per second, on the
 * WebCrypto path (what runs by default in Node, Electron and browsers) against tweetnacl alone.
 */
import { Worker } from 'node:worker_threads';
import type { CryptoWorkerInput, CryptoWorkerMessage, CryptoWorkerRequest } from './crypto-worker.js';
import type { AreaReport, BenchContext } from './report.js';
import { fmt, fmtRatio } from './stats.js';

type Backend = CryptoWorkerInput['backend'];

/** A worker holding one backend, answering one operation at a time. */
class BackendWorker {
  readonly #worker: Worker;
  readonly #ready: Promise<string[]>;
  #pending: { resolve: (opsPerSecond: number) => void; reject: (error: Error) => void } | null = null;
  #failed: Error | null = null;

  constructor(input: CryptoWorkerInput) {
    this.#worker = new Worker(new URL('./crypto-worker.js', import.meta.url), { workerData: input });
    this.#ready = new Promise((resolve, reject) => {
      this.#worker.on('message', (m: CryptoWorkerMessage) => {
        if (m.type === 'ready') resolve(m.operations);
        else this.#pending?.resolve(m.opsPerSecond);
      });
      this.#worker.on('error', (e) => {
        this.#failed = e;
        reject(e);
        this.#pending?.reject(e);
      });
    });
  }

  ready(): Promise<string[]> {
    return this.#ready;
  }

  run(operation: string): Promise<number> {
    if (this.#failed) return Promise.reject(this.#failed);
    return new Promise((resolve, reject) => {
      this.#pending = { resolve, reject };
      this.#worker.postMessage({ operation } satisfies CryptoWorkerRequest);
    });
  }

  terminate(): Promise<number> {
    return this.#worker.terminate();
  }
}

/** Runs the crypto area: each operation on the WebCrypto path and on tweetnacl alone. */
export async function run(ctx: BenchContext): Promise<AreaReport> {
  const durationMs = ctx.quick ? 250 : 400;
  // Per operation, A-B-B-A (or A-B when quick): the two backends' runs of one operation sit next
  // to each other in time, and a trend in the machine's load favours neither.
  const order: Backend[] = ctx.quick ? ['webcrypto', 'tweetnacl'] : ['webcrypto', 'tweetnacl', 'tweetnacl', 'webcrypto'];
  const runsPerOperation = order.length / 2;
  ctx.log('starting one worker per backend (sealing the envelopes to open)');
  const workers: Record<Backend, BackendWorker> = {
    webcrypto: new BackendWorker({ backend: 'webcrypto', durationMs, openPool: ctx.quick ? 600 : 2000, runsPerOperation }),
    tweetnacl: new BackendWorker({ backend: 'tweetnacl', durationMs, openPool: ctx.quick ? 200 : 600, runsPerOperation }),
  };
  const runs: Record<string, Record<Backend, number[]>> = {};
  try {
    const [ops] = await Promise.all([workers.webcrypto.ready(), workers.tweetnacl.ready()]);
    for (const op of ops) {
      runs[op] = { webcrypto: [], tweetnacl: [] };
      for (const backend of order) runs[op]![backend].push(await workers[backend].run(op));
      ctx.log(`${op}: ${fmt(Math.max(...runs[op]!.webcrypto))} vs ${fmt(Math.max(...runs[op]!.tweetnacl))} ops/s`);
    }
  } finally {
    await Promise.all([workers.webcrypto.terminate(), workers.tweetnacl.terminate()]);
  }
  const rows = Object.entries(runs).map(([op, r]) => {
    const web = Math.max(...r.webcrypto);
    const nacl = Math.max(...r.tweetnacl);
    return [op, fmt(web), fmt(nacl), fmtRatio(web / nacl)];
  });
  return {
    title: 'Crypto: operations per second, WebCrypto path against tweetnacl alone',
    method: [
      'Each backend runs in its own worker thread (its own copy of src/shared). ' +
        'The WebCrypto worker uses the backend `cryptoBackend()` picks in Node (WebCrypto Ed25519/X25519). ' +
        'The tweetnacl worker hides `crypto.subtle` from itself before the first crypto call, so `cryptoBackend()` takes its portable ' +
        'tweetnacl path (the path of a runtime without WebCrypto); each worker checks which backend it got. No src/ change is involved.',
      `Each operation runs back to back, one at a time (each awaited), for ${durationMs} ms after a warm-up. ` +
        `Both workers are set up first; then, operation by operation, the backends take turns (${order.join(', ')}), ` +
        'so each pair of figures was measured seconds apart; the best run of each backend is shown. ' +
        "One core does the work (WebCrypto's work may run on libuv's pool, but one operation is in flight at a time).",
      'Requests: a 1 KiB user message, maxTokens 256, sealed for 1 or 3 agents (`sealRequest`: ' +
        'a fresh ephemeral X25519 key, one NaCl box per recipient, secretbox of the padded body). ' +
        'Opening (`openRequest`, as the agent): every open takes a fresh envelope from a pool sealed beforehand, ' +
        'because a real request always brings a new ephemeral key and the WebCrypto backend caches imported public keys; ' +
        'the measurement ends early if the pool runs out (it then covers fewer operations, never a reused envelope).',
      'Reply chunks: `ReplySealer.seal` / `ReplyOpener.open` of a 5-character delta (64-byte padded plaintext, 80-byte chunk), ' +
        'in sequence. Receipts: `signReceipt` / `verifyReceipt` of a full receipt (the key import is cached on both, ' +
        'as for an agent signing many receipts and a gateway verifying many from one agent). ' +
        "Primitives: the backend's own Ed25519 sign/verify of 200 bytes and its X25519 + HSalsa20 box key with a fresh secret.",
    ],
    tables: [{ columns: ['operation', 'WebCrypto path ops/s', 'tweetnacl ops/s', 'WebCrypto ÷ tweetnacl'], rows }],
    targets: [],
    notes: [
      'Reply chunks are secretbox (XSalsa20-Poly1305) from tweetnacl on both paths — WebCrypto has no XSalsa20 — ' +
        "so the two run the very same code and any difference in their ratio is measurement noise (other processes, each worker's JIT); " +
        'they show what a stream costs per chunk.',
      'Sealing a request draws a fresh ephemeral key and imports it into WebCrypto each time, ' +
        'so the WebCrypto path gains less there than on signatures; opening pays one X25519 agreement whatever the number of recipients.',
    ],
    data: { durationMs, order, runs },
  };
}
