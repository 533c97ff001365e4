/**
 * This machine's memory read bandwidth: the ceiling for token generation, which streams every
 * weight through the CPU once per token.
 *
 * How: `Buffer.equals` on two equal buffers far larger than the last-level cache is glibc's
 * `memcmp`, a vectorised loop that only reads, front to back — the closest thing to a streaming
 * read Node can run without a native addon. (A JavaScript loop summing a Float64Array tops out
 * far below memory bandwidth, and a copy also writes.) Bytes read = both buffers. Measured on
 * one thread, and on every available core at once with worker threads.
 */
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { now } from './stats.js';

/** Read bandwidth, in bytes per second. */
export interface Bandwidth {
  /** Best pass on one thread. */
  singleThread: number;
  /** Best pass with `threads` threads reading at once (sum over threads). */
  allThreads: number;
  threads: number;
  /** Every pass, bytes/s. */
  singleThreadPasses: number[];
  allThreadsPasses: number[];
  /** Bytes each thread compares per pass (two buffers). */
  bytesPerPass: number;
}

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const a = Buffer.alloc(workerData.bytes, 0x5a);
const b = Buffer.alloc(workerData.bytes, 0x5a);
a.equals(b);
parentPort.on('message', () => {
  const t = performance.now();
  if (!a.equals(b)) throw new Error('buffers differ');
  parentPort.postMessage(performance.now() - t);
});
parentPort.postMessage('ready');
`;

function startWorker(bytes: number): Promise<Worker> {
  return new Promise((resolve, reject) => {
    const w = new Worker(WORKER_SOURCE, { eval: true, workerData: { bytes } });
    w.once('message', () => resolve(w));
    w.once('error', reject);
  });
}

function pass(w: Worker): Promise<number> {
  return new Promise((resolve) => w.once('message', (ms: number) => resolve(ms)));
}

/**
 * Measures read bandwidth with buffers of `bufferBytes` each (default 128 MiB, four times a
 * 32 MiB L3), `passes` times per configuration.
 */
export async function measureBandwidth(passes = 5, bufferBytes = 128 << 20): Promise<Bandwidth> {
  const threads = Math.max(1, os.availableParallelism());
  const bytesPerPass = 2 * bufferBytes;
  const single: number[] = [];
  const a = Buffer.alloc(bufferBytes, 0x5a);
  const b = Buffer.alloc(bufferBytes, 0x5a);
  a.equals(b);
  for (let i = 0; i < passes; i++) {
    const t = now();
    if (!a.equals(b)) throw new Error('buffers differ');
    single.push(bytesPerPass / ((now() - t) / 1000));
  }
  const all: number[] = [];
  if (threads > 1) {
    const workers = await Promise.all(Array.from({ length: threads }, () => startWorker(bufferBytes)));
    try {
      for (let i = 0; i < passes; i++) {
        const done = workers.map(pass);
        for (const w of workers) w.postMessage('go');
        const ms = await Promise.all(done);
        all.push((threads * bytesPerPass) / (Math.max(...ms) / 1000));
      }
    } finally {
      await Promise.all(workers.map((w) => w.terminate()));
    }
  } else {
    all.push(...single);
  }
  return {
    singleThread: Math.max(...single),
    allThreads: Math.max(...all),
    threads,
    singleThreadPasses: single,
    allThreadsPasses: all,
    bytesPerPass,
  };
}
