/**
 * A gateway a test scripts by hand, on a real WebSocket (port 0): it runs the handshake
 * (hello → challenge → auth → welcome) with the real verifiers, records every frame the agent
 * sends, and lets the test send jobs it seals itself and read the replies — what the agent does
 * frame by frame, without the real gateway's routing in the way.
 */
import { WebSocketServer, type WebSocket } from 'ws';
import {
  Emitter,
  PROTOCOL_VERSION,
  nextEvent,
  ReplyOpener,
  agentFrameSchema,
  decodeMessage,
  deriveReplyKeys,
  fromBase64Url,
  randomBytes,
  sealRequest,
  toBase64Url,
  verifyBundle,
  verifyChallenge,
  type AgentFrame,
  type ChatMessage,
  type FinishReason,
  type GatewayFrame,
  type Sampling,
  type SignedReceipt,
  type Usage,
  type VerifiedBundle,
  type Event,
} from '../../../src/shared/index.js';

/** What one job produced. */
export interface JobOutcome {
  jobId: string;
  accepted: boolean;
  declined: { code: string; message: string } | null;
  failed: { code: string; message: string } | null;
  text: string;
  chunks: number;
  final: { finishReason: FinishReason; usage: Usage } | null;
  receipt: SignedReceipt | null;
}

export interface ScriptedJob {
  readonly jobId: string;
  readonly outcome: JobOutcome;
  /** Resolves when the job ended (declined, failed or done). */
  readonly ended: Promise<JobOutcome>;
  /** Resolves once at least `n` reply chunks have arrived. */
  chunks(n: number): Promise<void>;
}

export interface ScriptedGateway {
  readonly url: string;
  readonly port: number;
  /** Every frame received, across connections. */
  readonly frames: AgentFrame[];
  /** Authenticated connections so far. */
  readonly connections: number;
  /** True while an authenticated agent is connected. */
  readonly connected: boolean;
  /** The latest verified bundle. */
  readonly bundle: VerifiedBundle | null;
  /** Fires with every frame received. */
  readonly onFrame: Event<AgentFrame>;
  /** Fires true when an agent authenticates, false when its socket closes. */
  readonly onConnection: Event<boolean>;
  /** The first frame matching `predicate` received after index `from`: one already here, or the next to come. */
  waitForFrame(predicate: (f: AgentFrame) => boolean, what: string, from?: number): Promise<AgentFrame>;
  /** The latest verified bundle once `accept` holds for it (at once if it holds now). */
  whenBundle(accept: (b: VerifiedBundle) => boolean): Promise<VerifiedBundle>;
  /** Resolves once an agent is connected (or, with false, once none is). */
  whenConnected(connected?: boolean): Promise<void>;
  /** Seals a job for the connected agent (its latest bundle, or `bundle`) and sends it. */
  submit(messages: ChatMessage[], sampling: Sampling, options?: { bundle?: VerifiedBundle; created?: number }): Promise<ScriptedJob>;
  cancel(jobId: string, reason?: string): void;
  send(frame: GatewayFrame): void;
  /** Drops the agent's socket without a close handshake. */
  terminate(): void;
  close(): Promise<void>;
}

export async function startScriptedGateway(
  options: { port?: number; heartbeatMs?: number; now?: () => number } = {},
): Promise<ScriptedGateway> {
  const now = options.now ?? Date.now;
  const wss = new WebSocketServer({ host: '127.0.0.1', port: options.port ?? 0, path: '/v1/agent' });
  await new Promise<void>((resolve, reject) => {
    wss.once('listening', resolve);
    wss.once('error', reject);
  });
  const port = (wss.address() as { port: number }).port;
  const frames: AgentFrame[] = [];
  const jobs = new Map<
    string,
    { outcome: JobOutcome; contentKey: Uint8Array; opener: ReplyOpener | null; resolve: (o: JobOutcome) => void; chunk: Emitter<number> }
  >();
  const frame$ = new Emitter<AgentFrame>();
  const bundle$ = new Emitter<VerifiedBundle>();
  const connection$ = new Emitter<boolean>();
  let socket: WebSocket | null = null;
  let connections = 0;
  let bundle: VerifiedBundle | null = null;

  wss.on('connection', (ws) => {
    let challenge: { nonce: string; time: number } | null = null;
    let ready = false;
    ws.on('message', (data) => {
      void (async () => {
        const frame = decodeMessage(agentFrameSchema, data as Buffer, 8 << 20, 'agent frame');
        frames.push(frame);
        frame$.fire(frame);
        if (frame.type === 'hello') {
          bundle = await verifyBundle(frame.bundle, { now: now() });
          bundle$.fire(bundle);
          challenge = { nonce: toBase64Url(randomBytes(32)), time: now() };
          ws.send(JSON.stringify({ v: PROTOCOL_VERSION, type: 'challenge', gatewayId: 'scripted', ...challenge }));
          return;
        }
        if (frame.type === 'auth' && challenge && bundle) {
          const ok = await verifyChallenge(
            { gatewayId: 'scripted', ...challenge, agentId: bundle.bundle.agentId },
            frame.signature,
            bundle.identityKey,
          );
          if (!ok) return ws.close(4401, 'NJ_AUTH_FAILED');
          ready = true;
          socket = ws;
          connections++;
          connection$.fire(true);
          ws.send(
            JSON.stringify({
              v: PROTOCOL_VERSION,
              type: 'welcome',
              agentId: bundle.bundle.agentId,
              trust: 'signed',
              heartbeatMs: options.heartbeatMs ?? 3_600_000,
              maxConcurrentJobs: bundle.bundle.capacity.slots,
              operator: null,
            }),
          );
          return;
        }
        if (!ready) return;
        if (frame.type === 'bundle') {
          bundle = await verifyBundle(frame.bundle, { now: now() });
          bundle$.fire(bundle);
        }
        if (
          frame.type === 'accepted' ||
          frame.type === 'declined' ||
          frame.type === 'chunk' ||
          frame.type === 'done' ||
          frame.type === 'failed'
        ) {
          const job = jobs.get(frame.jobId);
          if (!job) return;
          const o = job.outcome;
          if (frame.type === 'accepted') {
            o.accepted = true;
            job.opener = new ReplyOpener(deriveReplyKeys(job.contentKey, fromBase64Url(frame.replySalt), bundle!.bundle.agentId));
          } else if (frame.type === 'chunk') {
            const chunk = job.opener!.open(frame.seq, fromBase64Url(frame.data));
            o.text += chunk.delta;
            o.chunks++;
            if (chunk.final) o.final = chunk.final;
            job.chunk.fire(o.chunks);
          } else {
            if (frame.type === 'declined') o.declined = { code: frame.code, message: frame.message };
            if (frame.type === 'failed') o.failed = { code: frame.code, message: frame.message };
            if (frame.type === 'done') o.receipt = frame.receipt;
            job.resolve(o);
          }
        }
      })().catch(() => ws.close(4400, 'test gateway could not handle a frame'));
    });
    ws.on('close', () => {
      if (socket !== ws) return;
      socket = null;
      connection$.fire(false);
    });
  });

  const gw: ScriptedGateway = {
    url: `ws://127.0.0.1:${port}/v1/agent`,
    port,
    frames,
    get connections() {
      return connections;
    },
    get connected() {
      return socket !== null;
    },
    get bundle() {
      return bundle;
    },
    onFrame: frame$.event,
    onConnection: connection$.event,
    async waitForFrame(predicate, what, from = 0) {
      return frames.slice(from).find(predicate) ?? nextEvent(frame$.event, predicate, { what });
    },
    async whenBundle(accept) {
      return bundle && accept(bundle) ? bundle : nextEvent(bundle$.event, accept, { what: 'the bundle' });
    },
    async whenConnected(connected = true) {
      if ((socket !== null) !== connected) await nextEvent(connection$.event, (c) => c === connected);
    },
    async submit(messages, sampling, opts = {}) {
      const target = opts.bundle ?? bundle;
      if (!target) throw new Error('no agent bundle yet');
      const sealed = await sealRequest({
        model: target.bundle.models[0]!.id,
        messages,
        sampling,
        recipients: [target],
        now: opts.created ?? now(),
      });
      const outcome: JobOutcome = {
        jobId: sealed.jobId,
        accepted: false,
        declined: null,
        failed: null,
        text: '',
        chunks: 0,
        final: null,
        receipt: null,
      };
      let resolve!: (o: JobOutcome) => void;
      const ended = new Promise<JobOutcome>((r) => (resolve = r));
      const chunk = new Emitter<number>();
      jobs.set(sealed.jobId, { outcome, contentKey: sealed.contentKey, opener: null, resolve, chunk });
      gw.send({ v: PROTOCOL_VERSION, type: 'job', jobId: sealed.jobId, attempt: 0, envelope: sealed.envelope });
      const chunks = async (n: number): Promise<void> => {
        if (outcome.chunks < n) await nextEvent(chunk.event, (c) => c >= n, { what: `${n} chunks` });
      };
      return { jobId: sealed.jobId, outcome, ended, chunks };
    },
    cancel(jobId, reason = 'client went away') {
      gw.send({ v: PROTOCOL_VERSION, type: 'cancel', jobId, attempt: 0, reason });
    },
    send(frame) {
      if (!socket) throw new Error('no agent connected');
      socket.send(JSON.stringify(frame));
    },
    terminate() {
      socket?.terminate();
    },
    async close() {
      for (const client of wss.clients) client.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
  return gw;
}
