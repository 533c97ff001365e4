/**
 * ClientJob against a small fake JobTransport (no sockets): the job depends only on the
 * transport's contract (transport.ts), so another transport — a cluster's, over NATS — can carry
 * it. Failover to the next recipient before the first chunk (with a fresh attempt number), none
 * after it, and a cancel that reaches the agent and is billed on the receipt that follows (or
 * released when none comes within cancelReceiptMs). The receipt is verified by the job itself.
 */
import { describe, expect, it } from 'vitest';
import {
  PROTOCOL_VERSION,
  ReplyDigest,
  createBundle,
  fromBase64Url,
  generateBoxKey,
  generateIdentity,
  randomBytes,
  sealRequest,
  sha256,
  signReceipt,
  silentLogger,
  toBase64Url,
  verifyBundle,
  type Envelope,
  type Event,
  type IdentityKeyPair,
  type JobEvent,
  type VerifiedBundle,
} from '../../src/shared/index.js';
import {
  ClientJob,
  Router,
  type AgentChannel,
  type AttemptListener,
  type AttemptReport,
  type JobCandidate,
  type JobNeeds,
  type JobTransport,
  type Settlement,
} from '../../src/gateway/index.js';
import { FakeClock } from './support/fake-clock.js';

const MODEL = { id: 'fake-real-1b', sha256: 'cd'.repeat(32), synthetic: false, contextLength: 4096 };

/** One agent as the fake transport reaches it: records what the job asks of it. */
class FakeChannel implements AgentChannel {
  readonly dispatched: { jobId: string; attempt: number; listener: AttemptListener }[] = [];
  readonly cancelled: { attempt: number; reason: string }[] = [];
  readonly forgotten: number[] = [];
  free = true;
  operatorId = 'op-1';

  constructor(
    readonly identity: IdentityKeyPair,
    readonly bundle: VerifiedBundle,
  ) {}

  get agentId(): string {
    return this.identity.agentId;
  }

  dispatch(jobId: string, attempt: number, _envelope: Envelope, listener: AttemptListener): void {
    this.dispatched.push({ jobId, attempt, listener });
  }

  cancel(_jobId: string, attempt: number, reason: string): void {
    this.cancelled.push({ attempt, reason });
  }

  forget(_jobId: string, attempt: number): void {
    this.forgotten.push(attempt);
  }

  /** The listener of the latest attempt. */
  get listener(): AttemptListener {
    return this.dispatched.at(-1)!.listener;
  }
}

/** A transport over a fixed set of channels, in the order given. */
class FakeTransport implements JobTransport {
  readonly reports: { agentId: string; report: AttemptReport }[] = [];
  readonly onCapacity: Event<void> = () => ({ dispose: () => undefined });

  constructor(readonly channels: FakeChannel[]) {}

  candidates(agentIds: readonly string[], _needs: JobNeeds): JobCandidate[] {
    const known = this.channels.filter((c) => agentIds.includes(c.agentId));
    return [...known.filter((c) => c.free), ...known.filter((c) => !c.free)].map((channel) => ({ channel, free: channel.free }));
  }

  knows(): boolean {
    return this.channels.length > 0;
  }

  report(channel: AgentChannel, report: AttemptReport): void {
    this.reports.push({ agentId: channel.agentId, report });
  }
}

async function agent(): Promise<FakeChannel> {
  const identity = await generateIdentity();
  const signed = await createBundle({
    identity,
    boxKey: await generateBoxKey(),
    models: [MODEL],
    slots: 1,
    platform: { os: 'test', osVersion: '1', arch: 'x64', chip: 'test', memoryBytes: 1 },
    posture: { sip: null, hardenedRuntime: null, debuggerDenied: null, secureEnclave: false, appVersion: 'fake', appHash: null },
    now: Date.now(),
  });
  return new FakeChannel(identity, await verifyBundle(signed, { now: Date.now() }));
}

/** A job sealed for `channels`, run by a ClientJob over a FakeTransport. */
async function jobFor(channels: FakeChannel[]) {
  const clock = new FakeClock();
  const sealed = await sealRequest({
    model: MODEL.id,
    messages: [{ role: 'user', content: 'hi' }],
    sampling: { maxTokens: 16 },
    recipients: channels.map((c) => c.bundle),
    now: Date.now(),
  });
  const events: JobEvent[] = [];
  const settled: Settlement[] = [];
  const released: string[] = [];
  /** Every billing call in order: who accepted, and each release with its completion bound. */
  const calls: string[] = [];
  const transport = new FakeTransport(channels);
  const job = new ClientJob({
    envelope: sealed.envelope,
    requestDigest: sha256(fromBase64Url(sealed.envelope.body)),
    transport,
    router: new Router({ clock }),
    clock,
    logger: silentLogger,
    sink: { send: (e) => events.push(e) },
    paid: true,
    billing: {
      settle: async (s) => {
        settled.push(s);
        return 'settled';
      },
      release: async (outcome, bound) => {
        released.push(outcome);
        calls.push(`release ${outcome} ${bound ?? 'none'}`);
      },
      assigned: async (agentId, attempt) => void calls.push(`assigned ${agentId.slice(0, 4)} ${attempt}`),
    },
  });
  return { job, clock, events, settled, released, calls, transport, jobId: sealed.jobId, body: fromBase64Url(sealed.envelope.body) };
}

/** Plays an attempt on `channel`: accepted, then `chunks` chunks of random ciphertext. */
function stream(channel: FakeChannel, jobId: string, chunks: number): ReplyDigest {
  const { attempt, listener } = channel.dispatched.at(-1)!;
  const digest = new ReplyDigest();
  listener.accepted({ v: PROTOCOL_VERSION, type: 'accepted', jobId, attempt, replySalt: toBase64Url(randomBytes(16)) });
  for (let seq = 0; seq < chunks; seq++) {
    const data = randomBytes(48);
    digest.add(data);
    listener.chunk({ v: PROTOCOL_VERSION, type: 'chunk', jobId, attempt, seq, data: toBase64Url(data) }, Date.now());
  }
  return digest;
}

/** Ends the attempt with a receipt the agent signs over what it streamed. */
async function finish(channel: FakeChannel, jobId: string, body: Uint8Array, digest: ReplyDigest, completionTokens: number) {
  const { attempt, listener } = channel.dispatched.at(-1)!;
  const now = Date.now();
  const receipt = await signReceipt(
    {
      v: PROTOCOL_VERSION,
      jobId,
      attempt,
      agentId: channel.agentId,
      model: MODEL.id,
      modelSha256: MODEL.sha256,
      promptTokens: 5,
      completionTokens,
      requestDigest: toBase64Url(sha256(body)),
      replyDigest: toBase64Url(digest.digest()),
      startedAt: now,
      endedAt: now,
      finishReason: 'stop',
    },
    channel.identity,
  );
  listener.done({ v: PROTOCOL_VERSION, type: 'done', jobId, attempt, receipt });
}

describe('ClientJob over a JobTransport', () => {
  it('fails over to the next recipient before the first chunk, with a fresh attempt, and verifies the receipt itself', async () => {
    const [a, b] = [await agent(), await agent()];
    const t = await jobFor([a, b]);
    t.job.start();
    expect(a.dispatched.map((d) => d.attempt)).toEqual([0]);
    a.listener.declined({ v: PROTOCOL_VERSION, type: 'declined', jobId: t.jobId, attempt: 0, code: 'NJ_ENGINE_BUSY', message: 'busy' });
    expect(b.dispatched.map((d) => d.attempt)).toEqual([1]);
    const digest = stream(b, t.jobId, 3);
    await finish(b, t.jobId, t.body, digest, 3);
    expect(await t.job.finished).toMatchObject({ status: 'done', agentId: b.agentId, attempt: 1 });
    await t.job.billed;
    expect(t.settled.map((s) => ({ agentId: s.agentId, attempt: s.attempt, tokens: s.billedCompletionTokens }))).toEqual([
      { agentId: b.agentId, attempt: 1, tokens: 3 },
    ]);
    expect(t.events.map((e) => e.type)).toEqual(['start', 'chunk', 'chunk', 'chunk', 'done']);
    expect(t.transport.reports).toEqual([
      { agentId: a.agentId, report: { type: 'failed' } },
      { agentId: b.agentId, report: { type: 'first-chunk', ms: 0 } },
      { agentId: b.agentId, report: { type: 'done' } },
    ]);
  });

  // Fails if the job verified nothing (drop the verifyReceipt call in ClientJob's #receipt): the
  // receipt signed over other bytes than those relayed would be settled.
  it('credits nobody for a receipt over other bytes than those it relayed', async () => {
    const a = await agent();
    const t = await jobFor([a]);
    t.job.start();
    stream(a, t.jobId, 2);
    const other = new ReplyDigest();
    other.add(randomBytes(48));
    await finish(a, t.jobId, t.body, other, 2);
    expect(await t.job.finished).toMatchObject({ status: 'failed', code: 'NJ_RECEIPT_INVALID' });
    await t.job.billed;
    expect({ settled: t.settled.length, released: t.released }).toEqual({ settled: 0, released: ['receipt-invalid'] });
  });

  it('does not fail over after the first chunk: the client gets an error and the next agent is never tried', async () => {
    const [a, b] = [await agent(), await agent()];
    const t = await jobFor([a, b]);
    t.job.start();
    stream(a, t.jobId, 2);
    a.listener.failed({ v: PROTOCOL_VERSION, type: 'failed', jobId: t.jobId, attempt: 0, code: 'NJ_ENGINE_FAILED', message: 'boom' });
    expect(await t.job.finished).toMatchObject({ status: 'failed', code: 'NJ_AGENT_FAILED', agentId: a.agentId, delivered: true });
    await t.job.billed;
    expect(b.dispatched).toEqual([]);
    expect(t.events.at(-1)).toMatchObject({ type: 'error', code: 'NJ_AGENT_FAILED' });
    expect(t.released).toEqual(['failed']);
  });

  it('carries a cancel to the agent and bills the receipt that follows for the chunks delivered', async () => {
    const a = await agent();
    const t = await jobFor([a]);
    t.job.start();
    const digest = stream(a, t.jobId, 2);
    t.job.cancel('the client disconnected');
    expect(a.cancelled).toEqual([{ attempt: 0, reason: 'the client disconnected' }]);
    expect(await t.job.finished).toMatchObject({ status: 'cancelled', agentId: a.agentId, reason: 'the client disconnected' });
    // The agent had generated more than it delivered before it heard the cancel.
    await finish(a, t.jobId, t.body, digest, 9);
    await t.job.billed;
    expect(t.settled.map((s) => ({ outcome: s.outcome, tokens: s.billedCompletionTokens }))).toEqual([{ outcome: 'cancelled', tokens: 2 }]);
    expect(t.events.map((e) => e.type)).toEqual(['start', 'chunk', 'chunk']);
  });

  it('forgets a cancelled attempt and releases its hold when no receipt comes within cancelReceiptMs', async () => {
    const a = await agent();
    const t = await jobFor([a]);
    t.job.start();
    stream(a, t.jobId, 1);
    t.job.cancel('the gateway is shutting down');
    t.clock.advance(10_000);
    await t.job.billed;
    expect({ forgotten: a.forgotten, released: t.released, settled: t.settled.length }).toEqual({
      forgotten: [0],
      released: ['cancelled'],
      settled: 0,
    });
  });

  // Fails without the completion bound handed to release (ClientJob's #completionBound): a late
  // receipt for the lost attempt could then bill up to maxTokens.
  it('a lost attempt is on record as accepted before its release, which carries the bound of what it relayed', async () => {
    const [a, b] = [await agent(), await agent()];
    const t = await jobFor([a, b]);
    t.job.start();
    stream(a, t.jobId, 2);
    t.job.cancel('the client disconnected');
    a.listener.lost('agent disconnected (1006)');
    await t.job.billed;
    // The client had been given 2 chunks when it left: a late receipt may bill no more than that.
    expect(t.calls).toEqual([`assigned ${a.agentId.slice(0, 4)} 0`, 'release cancelled 2']);
    expect(b.dispatched).toEqual([]);
  });

  it('fails over when the transport loses the agent before the first chunk', async () => {
    const [a, b] = [await agent(), await agent()];
    const t = await jobFor([a, b]);
    t.job.start();
    a.listener.accepted({ v: PROTOCOL_VERSION, type: 'accepted', jobId: t.jobId, attempt: 0, replySalt: toBase64Url(randomBytes(16)) });
    a.listener.lost('node gone');
    expect(b.dispatched.map((d) => d.attempt)).toEqual([1]);
    // Every recipient tried: the client hears the last agent's answer.
    b.listener.declined({ v: PROTOCOL_VERSION, type: 'declined', jobId: t.jobId, attempt: 1, code: 'NJ_ENGINE_BUSY', message: 'busy' });
    expect(await t.job.finished).toMatchObject({ status: 'failed', code: 'NJ_ENGINE_BUSY', delivered: false });
    await t.job.billed;
    expect(t.released).toEqual(['failed']);
  });
});
