/**
 * The two ends of the relay benchmark, both in the measuring process so one clock times a chunk
 * from the moment it is sent to the moment it arrives:
 *
 * - {@link FakeAgent}: speaks the agent side of the protocol over a real WebSocket (hello with a
 *   signed bundle, challenge answer, status), accepts every job, and sends reply chunks when told
 *   to. A chunk's 80 bytes (the size of a real one-token chunk: 64 padded bytes plus the 16-byte
 *   tag) start with the time it was sent. At the end it signs a real receipt over the bytes it
 *   sent, which the gateway verifies.
 * - {@link RelayStream}: one client job over HTTP, POSTing a sealed envelope and reading the
 *   NDJSON reply as it streams, noting each chunk's latency.
 */
import http from 'node:http';
import WebSocket from 'ws';
import {
  LIMITS,
  PROTOCOL_VERSION,
  ReplyDigest,
  signChallenge,
  signReceipt,
  sha256,
  toBase64Url,
  randomBytes,
  sealRequest,
  type AgentFrame,
  type Envelope,
  type SealedRequest,
} from '../src/shared/index.js';
import type { BenchAgentKeys } from './identities.js';
import { BENCH_MODEL } from './identities.js';
import { now } from './stats.js';

/** Bytes of one reply chunk ciphertext for a one-token delta. */
export const CHUNK_BYTES = 80;

/** A job as the fake agent holds it. */
export interface ProducerJob {
  readonly jobId: string;
  readonly attempt: number;
  readonly requestDigest: Uint8Array;
  readonly digest: ReplyDigest;
  readonly startedAt: number;
  seq: number;
}

/** Options of {@link FakeAgent}. */
export interface FakeAgentOptions {
  /** Sent in the hello, to bind the agent to an operator. Defaults to none (an unbound agent). */
  enrollToken?: string;
  /** Send a status heartbeat every welcome.heartbeatMs, as a real agent does. Defaults to false (one status, then idle). */
  heartbeat?: boolean;
}

/** A request for {@link BENCH_MODEL} sealed to `agent` alone, asking for the most tokens a request may. */
export function sealTo(agent: FakeAgent, content: string): Promise<SealedRequest> {
  return sealRequest({
    model: BENCH_MODEL.id,
    messages: [{ role: 'user', content }],
    sampling: { maxTokens: LIMITS.maxTokens },
    recipients: [agent.keys.verified],
    now: Date.now(),
  });
}

/** An agent that accepts every job and sends chunks on demand. */
export class FakeAgent {
  readonly jobs = new Map<string, ProducerJob>();
  onJob: ((job: ProducerJob) => void) | null = null;
  #socket: WebSocket | null = null;
  #heartbeat: NodeJS.Timeout | null = null;
  readonly #keys: BenchAgentKeys;
  readonly #slots: number;
  readonly #options: FakeAgentOptions;

  constructor(keys: BenchAgentKeys, slots: number, options: FakeAgentOptions = {}) {
    this.#keys = keys;
    this.#slots = slots;
    this.#options = options;
  }

  get agentId(): string {
    return this.#keys.identity.agentId;
  }

  /** The agent's keys and bundle, for sealing requests to it. */
  get keys(): BenchAgentKeys {
    return this.#keys;
  }

  /** Connects and resolves once the relay has welcomed this agent and heard its status. */
  connect(url: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(url, { perMessageDeflate: false });
      this.#socket = socket;
      socket.once('error', reject);
      // A refused upgrade: reject with the gateway's retry hint (retryAfterMs of its JSON error).
      socket.once('unexpected-response', (req, res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => {
          let retryAfterMs: number | undefined;
          try {
            retryAfterMs = (JSON.parse(body) as { error?: { retryAfterMs?: number } }).error?.retryAfterMs;
          } catch {
            retryAfterMs = undefined;
          }
          reject(Object.assign(new Error(`the upgrade was refused (${res.statusCode})`), { status: res.statusCode, retryAfterMs }));
          req.destroy();
        });
      });
      const enrollToken = this.#options.enrollToken;
      let welcomed = false;
      socket.on('open', () =>
        this.#send({
          v: PROTOCOL_VERSION,
          type: 'hello',
          bundle: this.#keys.bundle,
          ...(enrollToken === undefined ? {} : { enrollToken }),
        }),
      );
      socket.on('close', () => {
        if (this.#heartbeat) clearInterval(this.#heartbeat);
        this.#heartbeat = null;
      });
      socket.on('message', (data) => {
        const frame = JSON.parse(String(data)) as { type: string; [k: string]: unknown };
        if (frame.type === 'challenge') {
          const fields = {
            gatewayId: String(frame['gatewayId']),
            nonce: String(frame['nonce']),
            time: Number(frame['time']),
            agentId: this.agentId,
          };
          // The handshake's challenge is answered with auth; a periodic one (after the welcome) with attest.
          const periodic = welcomed;
          void signChallenge(fields, this.#keys.identity).then((signature) =>
            this.#send(
              periodic
                ? { v: PROTOCOL_VERSION, type: 'attest', nonce: fields.nonce, signature }
                : { v: PROTOCOL_VERSION, type: 'auth', signature },
            ),
          );
        } else if (frame.type === 'welcome') {
          welcomed = true;
          this.#status();
          if (this.#options.heartbeat) this.#heartbeat = setInterval(() => this.#status(), Number(frame['heartbeatMs']));
          resolve();
        } else if (frame.type === 'job') {
          const envelope = frame['envelope'] as Envelope;
          const job: ProducerJob = {
            jobId: String(frame['jobId']),
            attempt: Number(frame['attempt']),
            requestDigest: sha256(Buffer.from(envelope.body, 'base64url')),
            digest: new ReplyDigest(),
            startedAt: Date.now(),
            seq: 0,
          };
          this.jobs.set(job.jobId, job);
          this.#send({
            v: PROTOCOL_VERSION,
            type: 'accepted',
            jobId: job.jobId,
            attempt: job.attempt,
            replySalt: toBase64Url(randomBytes(16)),
          });
          this.onJob?.(job);
        } else if (frame.type === 'reject') {
          reject(new Error(`the relay rejected the fake agent: ${String(frame['code'])}`));
        }
      });
    });
  }

  /** A status frame: serving, every slot free (the gateway counts the jobs it gave since). */
  #status(): void {
    this.#send({
      v: PROTOCOL_VERSION,
      type: 'status',
      state: 'serving',
      model: BENCH_MODEL.id,
      freeSlots: this.#slots,
      totalSlots: this.#slots,
      tokensPerSecond: 0,
      ttftMs: 0,
      memoryPressure: 'normal',
      thermal: 'nominal',
    });
  }

  /** Sends the next chunk of `job`, stamped with the time it leaves. */
  sendChunk(job: ProducerJob): void {
    const data = new Uint8Array(CHUNK_BYTES);
    new DataView(data.buffer).setFloat64(0, now(), true);
    job.digest.add(data);
    this.#send({ v: PROTOCOL_VERSION, type: 'chunk', jobId: job.jobId, attempt: job.attempt, seq: job.seq++, data: toBase64Url(data) });
  }

  /** Ends `job` with a signed receipt over every chunk sent. */
  async finish(job: ProducerJob): Promise<void> {
    const receipt = await signReceipt(
      {
        v: PROTOCOL_VERSION,
        jobId: job.jobId,
        attempt: job.attempt,
        agentId: this.agentId,
        model: BENCH_MODEL.id,
        modelSha256: BENCH_MODEL.sha256,
        promptTokens: 1,
        // A chunk stands for a token here; the gateway refuses a receipt claiming more tokens
        // than the request allowed, and a closed-loop phase sends more chunks than that.
        completionTokens: Math.min(job.seq, LIMITS.maxTokens),
        requestDigest: toBase64Url(job.requestDigest),
        replyDigest: toBase64Url(job.digest.digest()),
        startedAt: job.startedAt,
        endedAt: Math.max(job.startedAt, Date.now()),
        finishReason: 'stop',
      },
      this.#keys.identity,
    );
    this.#send({ v: PROTOCOL_VERSION, type: 'done', jobId: job.jobId, attempt: job.attempt, receipt });
    this.jobs.delete(job.jobId);
  }

  close(): void {
    if (this.#heartbeat) clearInterval(this.#heartbeat);
    this.#heartbeat = null;
    this.#socket?.terminate();
  }

  #send(frame: AgentFrame): void {
    if (this.#socket?.readyState === WebSocket.OPEN) this.#socket.send(JSON.stringify(frame));
  }
}

/** One client job, read as it streams. */
export class RelayStream {
  received = 0;
  /** When {@link RelayStream.start} sent the request (the bench's clock, ms). */
  startedAt = Number.NaN;
  /** Called with the latency (ms) of each chunk as it arrives. */
  onChunk: ((stream: RelayStream, sentAt: number, latencyMs: number) => void) | null = null;
  readonly ended: Promise<{ done: boolean; error: string | null }>;
  #end!: (v: { done: boolean; error: string | null }) => void;
  #request: http.ClientRequest | null = null;

  constructor(
    readonly jobId: string,
    readonly agent: FakeAgent,
  ) {
    this.ended = new Promise((resolve) => (this.#end = resolve));
  }

  /** POSTs the envelope to `baseUrl`/v1/jobs (with `apiKey` as its bearer, if given) and starts reading the reply. */
  start(baseUrl: string, envelope: Envelope, pool: http.Agent, apiKey?: string): void {
    const body = JSON.stringify({ v: PROTOCOL_VERSION, envelope });
    const url = new URL('/v1/jobs', baseUrl);
    this.startedAt = now();
    const req = http.request(
      {
        host: url.hostname,
        port: url.port,
        path: url.pathname,
        method: 'POST',
        agent: pool,
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
          ...(apiKey === undefined ? {} : { authorization: `Bearer ${apiKey}` }),
        },
      },
      (res) => {
        if (res.statusCode !== 200) {
          // The refusal's code (its JSON error), so a run can say why jobs failed.
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (text: string) => (body = (body + text).slice(0, 4096)));
          res.on('end', () => {
            let code: string;
            try {
              code = (JSON.parse(body) as { error?: { code?: string } }).error?.code ?? '';
            } catch {
              code = '';
            }
            this.#end({ done: false, error: `HTTP ${res.statusCode}${code ? ` ${code}` : ''}` });
          });
          res.on('error', () => this.#end({ done: false, error: `HTTP ${res.statusCode}` }));
          return;
        }
        res.setEncoding('utf8');
        let buffer = '';
        let done = false;
        let error: string | null = null;
        res.on('data', (text: string) => {
          buffer += text;
          let nl: number;
          while ((nl = buffer.indexOf('\n')) >= 0) {
            const line = buffer.slice(0, nl);
            buffer = buffer.slice(nl + 1);
            // A blank line is the gateway's keepalive (docs/api.md): nothing to read.
            if (line === '') continue;
            const event = JSON.parse(line) as { type: string; data?: string; code?: string };
            if (event.type === 'chunk') {
              const arrived = now();
              const bytes = Buffer.from(event.data!, 'base64url');
              const sentAt = bytes.readDoubleLE(0);
              this.received++;
              this.onChunk?.(this, sentAt, arrived - sentAt);
            } else if (event.type === 'done') done = true;
            else if (event.type === 'error') error = event.code ?? 'error';
          }
        });
        res.on('end', () => this.#end({ done, error }));
        res.on('error', (e) => this.#end({ done, error: e.message }));
      },
    );
    req.on('error', (e) => this.#end({ done: false, error: e.message }));
    req.end(body);
    this.#request = req;
  }

  abort(): void {
    this.#request?.destroy();
  }
}
