/**
 * No silent link, no lost `done` (issue 17). Real gateways and agents (fake engine) on real
 * sockets, the agent's link through a TCP relay the test black-holes (test/helpers'
 * recording proxy: no byte and no close passes, as when a cable is pulled or a NAT drops its
 * state):
 * - the link black-holed mid-job: the agent counts it dead after its silenceTimeoutMs (15 s, on
 *   its fake clock) and not before, stops the job within a token, and its receipt is settled once
 *   after the link heals; the gateway cuts its side too and the client hears why;
 * - the gateway killed after the agent sent `done` into the hole (never read, never acknowledged):
 *   the agent keeps the receipt until acknowledged, and the restarted gateway settles it once;
 * - a `done` the gateway did read is acknowledged, and the agent lets it go.
 */
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { prepareBilledLedger, startCrashableGateway } from './support/crashable.js';
import { IncompleteReplyError, NightjarClient } from '../../src/client/index.js';
import { ACCOUNTS, Gateway, openSqliteStore } from '../../src/gateway/index.js';
import { Agent } from '../../src/main/agent/index.js';
import {
  Emitter,
  NightjarError,
  PROTOCOL_VERSION,
  generateIdentity,
  randomBytes,
  toBase64Url,
  nextEvent,
  silentLogger,
  systemClock,
  type Logger,
  type SignedReceipt,
} from '../../src/shared/index.js';
import type { GenerateRequest, GenerateResult } from '../../src/main/agent/index.js';
import { onceTrue } from '../helpers/events.js';
import { FakeEngine } from '../helpers/fake-engine.js';
import { perTestFetch } from '../helpers/http-client.js';
import { agentServing } from '../helpers/network.js';
import { startRecordingProxy, type RecordingProxy } from '../helpers/recording-proxy.js';
import { FakeClock } from './support/fake-clock.js';
import { RawAgent } from './support/raw-agent.js';
import { REAL_MODEL, clientOf, startBilledNetwork, tempDir } from './support/net.js';

const http = perTestFetch();
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

/** The agent's liveness bound with its defaults: silent this long, the link is dead. */
const SILENCE_MS = 15_000;

/** A logger that keeps the messages of its lines (ids and counts only ever go in fields). */
function recordingLogger(lines: string[]): Logger {
  const log = (message: string): void => void lines.push(message);
  const logger: Logger = { debug: log, info: log, warn: log, error: log, child: () => logger };
  return logger;
}

/** An agent on `clock` whose link to `gatewayPort` goes through a relay the test can black-hole. */
async function agentBehindRelay(
  gatewayPort: number,
  engine: FakeEngine,
  options: { clock: FakeClock; enrollToken: string; lines?: string[] },
): Promise<{ agent: Agent; relay: RecordingProxy; receipts: SignedReceipt[] }> {
  const relay = await startRecordingProxy(gatewayPort);
  cleanups.push(() => relay.close());
  const agent = await Agent.create({
    gatewayUrl: `ws://127.0.0.1:${relay.port}/v1/agent`,
    identity: await generateIdentity(),
    engine,
    model: REAL_MODEL,
    clock: options.clock,
    // Retries on the fake clock are advanced by hand; a fixed draw keeps them short.
    backoff: { initialMs: 50, maxMs: 200 },
    random: () => 0.5,
    stopGraceMs: 100,
    enrollToken: options.enrollToken,
    logger: options.lines ? recordingLogger(options.lines) : silentLogger,
  });
  cleanups.push(() => agent.dispose());
  const receipts: SignedReceipt[] = [];
  agent.onReceipt((r) => receipts.push(r));
  agent.start();
  await onceTrue(agent.onLink, () => agent.linkState === 'connected', 'the agent to connect');
  return { agent, relay, receipts };
}

/** Heals the relay and moves the agent's clock past its pending retry; resolves once it is welcomed again. */
async function reconnect(agent: Agent, relay: RecordingProxy, clock: FakeClock): Promise<void> {
  relay.heal();
  await onceTrue(agent.onLink, () => agent.link.retryDelayMs !== null, 'a retry to be pending');
  const connected = onceTrue(agent.onLink, () => agent.linkState === 'connected', 'the agent to reconnect', 10_000);
  clock.advance(agent.link.retryDelayMs!);
  await connected;
}

describe('a link that goes silent without closing', () => {
  // Fails without the agent's liveness watch (GatewayLink #watch): no ping goes out and the link
  // stays 'connected' however long the silence, the job generating on to maxTokens for nobody
  // (shown once by returning early from #watch: "expected false to be true" at awaitingPong).
  // Fails without the gateway's own watch (AgentSession #schedulePing) too: the black hole passes
  // on no close, so the client's stream waits on (shown once: the test times out).
  it('the agent stops within the bound and a token, the gateway cuts its side, the receipt is settled once after it heals', async () => {
    const tmp = await tempDir();
    cleanups.push(() => tmp.remove());
    // The gateway's watch on real time, short; the agent's on its fake clock, at its defaults.
    const net = await startBilledNetwork(tmp.dir, { agentPingMs: 100, agentSilenceTimeoutMs: 600 });
    cleanups.push(() => net.close());
    const { gateway, store } = net;
    const clock = new FakeClock();
    const engine = new FakeEngine({ tokenDelayMs: 10, slots: 1 });
    const lines: string[] = [];
    const port = Number(new URL(gateway.url).port);
    const { agent, relay, receipts } = await agentBehindRelay(port, engine, { clock, enrollToken: await net.enrollToken(), lines });
    await agentServing(gateway, agent.agentId);

    const stream = clientOf(gateway, http.fetch, net.key.key).chat({
      model: REAL_MODEL.id,
      messages: [{ role: 'user', content: 'tell me a long story' }],
      maxTokens: 2000,
    });
    const jobId = await stream.jobId;
    let atCut: number | null = null;
    agent.onLink((state) => {
      if (state !== 'connected' && atCut === null) atCut = engine.generated;
    });
    let deltas = 0;
    const error = await (async () => {
      for await (const _ of stream) if (++deltas === 5) relay.blackHole();
    })().then(
      () => null,
      (e: unknown) => e,
    );
    // The gateway heard nothing from the agent for 600 ms and cut it: the client is told why.
    expect(error).toBeInstanceOf(IncompleteReplyError);
    expect(error).toMatchObject({ code: 'NJ_AGENT_FAILED', message: expect.stringMatching(/the agent's link went silent for \d+ ms/) });

    // The agent, meanwhile, generates on into the hole until its own bound: not a moment sooner.
    expect(engine.busy).toBe(1);
    clock.advance(SILENCE_MS - 1);
    expect(lines).not.toContain('the gateway link went silent; cutting it');
    expect(agent.link.awaitingPong).toBe(true);
    expect(engine.busy).toBe(1);
    clock.advance(1);
    expect(lines).toContain('the gateway link went silent; cutting it');
    await onceTrue(agent.onJobs, () => agent.undeliveredReceipts === 1 && agent.stats.activeJobs === 0, 'the job to stop');
    expect(atCut).not.toBeNull();
    expect(engine.generated - atCut!).toBeLessThanOrEqual(1);
    const receipt = receipts[0]!.receipt;
    expect(receipt).toMatchObject({ jobId, finishReason: 'cancelled' });
    expect(receipt.completionTokens).toBeLessThan(2000);
    expect(await store.ledger.job(jobId)).toMatchObject({ status: 'released', agentId: agent.agentId });

    // The link heals: the receipt is delivered after the welcome and settled, once.
    const late = nextEvent(gateway.onLateReceipt, undefined, { clock: systemClock, timeoutMs: 10_000, what: 'the late receipt' });
    await reconnect(agent, relay, clock);
    expect(await late).toEqual({ jobId, agentId: agent.agentId, outcome: 'settled' });
    await onceTrue(agent.onReceiptAck, () => agent.undeliveredReceipts === 0, 'the agent to hear the ack');
    // What the relayed chunks bound it to, at most what the receipt claims: 1 and 2 micro-credits a token.
    const job = (await store.ledger.job(jobId))!;
    expect(job).toMatchObject({ status: 'settled', outcome: 'settled-late', agentId: agent.agentId });
    expect(job.charged).toBe(BigInt(job.promptTokens!) + 2n * BigInt(job.completionTokens!));
    expect(job.completionTokens).toBeLessThanOrEqual(receipt.completionTokens);
    expect(await store.ledger.clientBalance(net.key.id)).toEqual({ balance: 10_000_000n - job.charged!, held: 0n });
    expect(await gateway.metrics.value(gateway.metrics.lateReceipts, { outcome: 'settled' })).toBe(1);
    expect(await store.ledger.checkInvariants()).toEqual([]);
  }, 30_000);
});

/** A FakeEngine whose generations wait, once started, until the test opens the gate. */
class GatedEngine extends FakeEngine {
  readonly #started = new Emitter<void>();
  /** Fires when a generation starts waiting at the gate. */
  readonly onStarted = this.#started.event;
  #open!: () => void;
  readonly #gate = new Promise<void>((resolve) => (this.#open = resolve));

  /** Lets every generation go on. */
  open(): void {
    this.#open();
  }

  override async generate(request: GenerateRequest): Promise<GenerateResult> {
    this.#started.fire();
    await this.#gate;
    return super.generate(request);
  }
}

describe('the done that was never read', () => {
  // Fails without the outbox keeping receipts sent in `done` until acknowledged (drop the
  // `this.#o.sent(receipt)` call in JobRunner): the agent counts the receipt delivered and keeps
  // nothing, so the restarted gateway never hears of it (shown once: "expected +0 to be 1" at
  // receiptsAwaitingAck).
  it('the gateway killed before it read the done: the receipt is delivered again and settled once after the restart', async () => {
    const tmp = await tempDir();
    cleanups.push(() => tmp.remove());
    const file = path.join(tmp.dir, 'gateway.db');
    const { operatorId, key, keyId, enroll } = await prepareBilledLedger(file, 10_000_000n);

    const first = await startCrashableGateway(file);
    cleanups.push(async () => first.child.kill('SIGKILL'));
    const port = Number(new URL(first.url).port);
    const clock = new FakeClock();
    // Six words: the reply ends by itself, its chunks and done going into the hole.
    const engine = new GatedEngine({ slots: 1 });
    const { agent, relay, receipts } = await agentBehindRelay(port, engine, { clock, enrollToken: enroll });
    // The gateway has the agent's `accepted` (so it waits for chunks, not for an answer), then the hole.
    const accepted = (): boolean => relay.capture().toString('latin1').includes('"type":"accepted"');
    engine.onStarted(() => {
      void onceTrue(relay.onForwarded, accepted, 'the accepted frame to reach the gateway').then(() => {
        relay.blackHole();
        engine.open();
      });
    });

    const client = new NightjarClient({ gatewayUrl: first.url, apiKey: key, trust: { allowSynthetic: true }, fetch: http.fetch });
    const stream = client.chat({ model: REAL_MODEL.id, messages: [{ role: 'user', content: 'hi' }], maxTokens: 50 });
    const failed = stream.result.then(
      () => null,
      (e: unknown) => e,
    );
    // The agent finished and sent its done over what looked like a live link; nobody read it.
    await onceTrue(agent.onJobs, () => receipts.length === 1 && agent.stats.activeJobs === 0, 'the job to end');
    const jobId = receipts[0]!.receipt.jobId;
    expect(receipts[0]!.receipt).toMatchObject({ finishReason: 'stop', completionTokens: 6 });
    expect(agent.receiptsAwaitingAck).toBe(1);
    expect(agent.undeliveredReceipts).toBe(0);

    first.child.kill('SIGKILL');
    // The client's stream began at admission, so the kill ends it at once, before any chunk.
    const error = await failed;
    expect(error).toBeInstanceOf(NightjarError);
    expect(error).toMatchObject({ code: 'NJ_STREAM_BROKEN' });
    // The agent hears nothing (the hole passes on no close) until its liveness bound.
    clock.advance(SILENCE_MS);
    await onceTrue(agent.onLink, () => agent.linkState !== 'connected', 'the agent to cut its link');
    expect(agent.receiptsAwaitingAck).toBe(0);
    expect(agent.undeliveredReceipts).toBe(1);

    const store = await openSqliteStore({ path: file });
    const gateway = await Gateway.start({ port, store, allowSynthetic: true });
    cleanups.push(async () => {
      await agent.dispose();
      await gateway.dispose();
      await store.dispose();
    });
    const late = nextEvent(gateway.onLateReceipt, undefined, { clock: systemClock, timeoutMs: 10_000, what: 'the late receipt' });
    await reconnect(agent, relay, clock);
    expect(await late).toEqual({ jobId, agentId: agent.agentId, outcome: 'settled' });
    await onceTrue(agent.onReceiptAck, () => agent.undeliveredReceipts === 0, 'the agent to hear the ack');

    // Released at the restart (the hold went back), then settled once from the balance.
    const receipt = receipts[0]!.receipt;
    const charged = BigInt(receipt.promptTokens) + 2n * BigInt(receipt.completionTokens);
    expect(await store.ledger.job(jobId)).toMatchObject({ status: 'settled', outcome: 'settled-late', charged });
    expect(await store.ledger.clientBalance(keyId)).toEqual({ balance: 10_000_000n - charged, held: 0n });
    expect(await store.ledger.balance(ACCOUNTS.operator(operatorId))).toBe((charged * 9500n) / 10_000n);
    expect(await store.ledger.checkInvariants()).toEqual([]);
  }, 30_000);

  // Fails without the gateway's acknowledgement of a done (AgentSession #done's receipt-ack): the
  // agent then keeps every receipt it sent, to deliver again on the next connection (shown once:
  // "the ack of the done did not happen within 5000 ms").
  it('a done the gateway read is acknowledged once billed, and the agent lets its receipt go', async () => {
    const tmp = await tempDir();
    cleanups.push(() => tmp.remove());
    const net = await startBilledNetwork(tmp.dir);
    cleanups.push(() => net.close());
    const clock = new FakeClock();
    const engine = new FakeEngine({ slots: 1 });
    const { agent } = await agentBehindRelay(Number(new URL(net.gateway.url).port), engine, {
      clock,
      enrollToken: await net.enrollToken(),
    });
    await agentServing(net.gateway, agent.agentId);
    const acked = nextEvent(agent.onReceiptAck, undefined, { clock: systemClock, timeoutMs: 5000, what: 'the ack of the done' });
    const result = await clientOf(net.gateway, http.fetch, net.key.key).chat({
      model: REAL_MODEL.id,
      messages: [{ role: 'user', content: 'hi' }],
      maxTokens: 20,
    }).result;
    expect(await acked).toMatchObject({ jobId: result.jobId, attempt: result.attempt, outcome: 'settled' });
    expect(agent.receiptsAwaitingAck).toBe(0);
    expect(agent.undeliveredReceipts).toBe(0);
    expect(await net.store.ledger.job(result.jobId)).toMatchObject({ status: 'settled', outcome: 'done' });
  });
  // Fails without LedgerStore.settleLate's refusal of a job released as 'receipt-invalid' (shown
  // once: the forged receipt, delivered again as a late one, was answered 'settled' and billed).
  it('a done whose receipt does not verify is answered refused, and delivered again late it still moves nothing', async () => {
    const tmp = await tempDir();
    cleanups.push(() => tmp.remove());
    const net = await startBilledNetwork(tmp.dir);
    cleanups.push(() => net.close());
    const raw = await RawAgent.connect({ url: net.gateway.agentUrl, model: REAL_MODEL, enrollToken: await net.enrollToken() });
    cleanups.push(() => raw.close());
    await agentServing(net.gateway, raw.agentId);
    const before = await net.store.ledger.clientBalance(net.key.id);
    const result = clientOf(net.gateway, http.fetch, net.key.key)
      .chat({ model: REAL_MODEL.id, messages: [{ role: 'user', content: 'hi' }], maxTokens: 20 })
      .result.then(
        () => null,
        (e: unknown) => e,
      );
    const job = await raw.next('job');
    const served = await raw.serve(job, ['Hi', ' there']);
    // Signed by the agent, but over another reply than the one the gateway relayed.
    const forged = await raw.sign({ ...served.receipt, replyDigest: toBase64Url(randomBytes(32)), completionTokens: 20 });
    served.finish(forged);
    expect(await raw.next('receipt-ack')).toMatchObject({ jobId: job.jobId, outcome: 'refused', code: 'NJ_RECEIPT_INVALID' });
    expect(await result).toMatchObject({ code: 'NJ_RECEIPT_INVALID' });
    const deliver = async (receipt: SignedReceipt) => {
      raw.send({ v: PROTOCOL_VERSION, type: 'receipt', jobId: job.jobId, attempt: job.attempt, receipt });
      return raw.next('receipt-ack');
    };
    expect(await deliver(forged)).toMatchObject({ outcome: 'refused', message: expect.stringMatching(/refused when the job ended/) });
    expect(await deliver(served.signed)).toMatchObject({ outcome: 'refused' });
    expect(await net.store.ledger.job(job.jobId)).toMatchObject({ status: 'released', outcome: 'receipt-invalid' });
    expect(await net.store.ledger.clientBalance(net.key.id)).toEqual(before);
    expect(await net.store.ledger.checkInvariants()).toEqual([]);
  });
});
