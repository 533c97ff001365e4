/**
 * Disputes by reveal (docs/honesty.md "Disputes"), through a real gateway on a SQLite file with a
 * scripted agent (RawAgent) and the real SDK, and a fake ReplyChecker (the real checker's tests are
 * its own, under test/main/agent): a client reveals a job's evidence; the gateway opens it against
 * the stored receipt and has the checker re-check the reply. A failed verdict strikes the agent
 * and forfeits the job's charge back to the client while its earnings are pending; a pass moves
 * nothing; a job is revealed once; tampered evidence, another key's job, a gateway without a
 * checker and a full checker are refused. Countersignature disputes strike the agent too
 * (count-disputed). Each test names the protection it fails without; each was removed once and
 * its test seen to fail.
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  NightjarError,
  PROTOCOL_VERSION,
  countersign,
  countersignKeyOf,
  fromBase64Url,
  operatorAgentsResponseSchema,
  sealRequest,
  toBase64Url,
  type AuditVerdict,
  type CountersignStatement,
  type JobEvidence,
  type ReplyChecker,
  type ReplyUnderCheck,
  type SealRequestOptions,
} from '../../src/shared/index.js';
import { NightjarClient, type ChatResult } from '../../src/client/index.js';
import type { GatewayOptions } from '../../src/gateway/index.js';
import { perTestFetch } from '../helpers/http-client.js';
import { agentServing } from '../helpers/network.js';
import { FakeClock } from './support/fake-clock.js';
import { REAL_MODEL, billed, startBilledNetwork, tempDir, type BilledNetwork } from './support/net.js';
import { RawAgent } from './support/raw-agent.js';

const http = perTestFetch();
const DAY = 86_400_000;
const BALANCE = 10_000_000n;
const ask = { model: REAL_MODEL.id, messages: [{ role: 'user' as const, content: 'Name a nocturnal bird.' }], maxTokens: 16 };

const FAIL: AuditVerdict = {
  pass: false,
  findings: [
    {
      reason: 'off-distribution',
      detail: 'token 2 of 2 ranks 181st; the request allowed the top 40',
      figures: { position: 2, rank: 181, topK: 40 },
    },
  ],
  figures: { tokens: 2, meanLogProb: -9.5 },
};
const PASS: AuditVerdict = { pass: true, findings: [], figures: { tokens: 2, meanLogProb: -1.2 } };

let tmp: Awaited<ReturnType<typeof tempDir>> | null = null;
let net: BilledNetwork | null = null;
let clock: FakeClock;
const raws: RawAgent[] = [];

/** What the fake checker saw, and what it answers next. */
const checks: { seen: ReplyUnderCheck[]; verdict: AuditVerdict } = { seen: [], verdict: FAIL };
const fakeChecker: ReplyChecker = async (reply) => {
  checks.seen.push(reply);
  return checks.verdict;
};

afterEach(async () => {
  await Promise.all(raws.splice(0).map((r) => r.close()));
  await net?.close();
  await tmp?.remove();
  net = null;
  tmp = null;
  checks.seen = [];
  checks.verdict = FAIL;
});

async function start(options: GatewayOptions = { honesty: { checker: fakeChecker } }): Promise<BilledNetwork> {
  tmp = await tempDir();
  clock = new FakeClock();
  net = await startBilledNetwork(tmp.dir, { clock, ...options });
  const raw = await RawAgent.connect({ url: net.gateway.agentUrl, model: REAL_MODEL, enrollToken: await net.enrollToken() });
  raws.push(raw);
  await agentServing(net.gateway, raw.agentId, 2000);
  return net;
}

function clientFor(
  n: BilledNetwork,
  extra: { seal?: (o: SealRequestOptions) => ReturnType<typeof sealRequest>; countersign?: boolean } = {},
) {
  return new NightjarClient({
    gatewayUrl: n.gateway.url,
    trust: { allowSynthetic: true },
    fetch: http.fetch,
    apiKey: n.key.key,
    countersign: extra.countersign ?? false,
    ...(extra.seal ? { seal: extra.seal } : {}),
  });
}

/** One job on the raw agent ('Hello there', 12 + 2 tokens claimed), its evidence kept unless told. */
async function job(
  n: BilledNetwork,
  options: { keepEvidence?: boolean; completionTokens?: number; countersign?: boolean } = {},
): Promise<ChatResult> {
  const raw = raws[0]!;
  const isBilled = billed(n.gateway);
  const client = clientFor(n, { countersign: options.countersign });
  const stream = client.chat({ ...ask, keepEvidence: options.keepEvidence ?? true });
  const served = await raw.serve(await raw.next('job'), ['Hello', ' there'], {
    promptTokens: 12,
    completionTokens: options.completionTokens ?? 2,
  });
  served.finish();
  const result = await stream.result;
  await isBilled(result.jobId);
  await client.countersigned();
  return result;
}

async function reveal(
  n: BilledNetwork,
  body: unknown,
  jobId: string,
  apiKey = n.key.key,
): Promise<{ status: number; body: unknown; retryAfter: string | null }> {
  const res = await http.fetch(`${n.gateway.url}/v1/jobs/${jobId}/reveal`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKey}` },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: await res.json(), retryAfter: res.headers.get('retry-after') };
}

const codeOf = (r: { status: number; body: unknown }): { status: number; code: unknown } => ({
  status: r.status,
  code: (r.body as { error?: { code?: unknown } }).error?.code,
});

/** The money of one job and the books, as the tests compare them. */
async function books(n: BilledNetwork, jobId: string) {
  const j = (await n.store.ledger.job(jobId))!;
  return {
    client: (await n.store.ledger.clientBalance(n.key.id)).balance,
    operator: await n.store.ledger.operatorBalance(n.operator.id, clock.now()),
    charged: j.charged,
    forfeited: j.forfeitedAt !== null,
    problems: await n.store.ledger.checkInvariants(),
  };
}

describe('a failed verdict', () => {
  // Fails without the forfeit (record() not calling LedgerStore.forfeit): the client stays charged
  // 16 and the operator keeps 15 for a reply proven dishonest.
  it('strikes the agent and gives the whole charge back to the client, the operator balance back to 0', async () => {
    const n = await start();
    const result = await job(n);
    // 12 × 1 + 2 × 2 = 16: 15 to the operator, 1 to the platform.
    expect(await books(n, result.jobId)).toMatchObject({ client: BALANCE - 16n, charged: 16n, forfeited: false });
    const answer = await clientFor(n).reveal(result.evidence!);
    expect(answer).toEqual({
      jobId: result.jobId,
      agentId: raws[0]!.agentId,
      verdict: FAIL,
      forfeited: true,
      refunded: '16',
      message: "the reply failed its check (off-distribution): the agent is struck and the job's charge went back to this key",
    });
    expect(await books(n, result.jobId)).toEqual({
      client: BALANCE,
      operator: { balance: 0n, pending: 0n, payable: 0n },
      charged: 0n,
      forfeited: true,
      problems: [],
    });
    // The checker saw the job as sealed and delivered, with the receipt's claims.
    expect(checks.seen).toEqual([
      {
        jobId: result.jobId,
        model: REAL_MODEL.id,
        modelSha256: REAL_MODEL.sha256,
        messages: ask.messages,
        sampling: { maxTokens: 16 },
        reply: { text: 'Hello there', finishReason: 'stop' },
        claimed: { promptTokens: 12, completionTokens: 2 },
      },
    ]);
    await n.gateway.honesty.whenWritten();
    const strikes = await n.store.strikes.list({ agentId: raws[0]!.agentId });
    expect(strikes.map((s) => ({ reason: s.reason, jobId: s.jobId, details: s.details }))).toEqual([
      {
        reason: 'audit-failed',
        jobId: result.jobId,
        details: { reasons: 'off-distribution', 'off-distribution.position': 2, 'off-distribution.rank': 181, 'off-distribution.topK': 40 },
      },
    ]);
    const audits = await n.store.audits.list({ agentId: raws[0]!.agentId });
    expect(audits.map((a) => ({ jobId: a.jobId, pass: a.pass, source: a.source, findings: a.findings, figures: a.figures }))).toEqual([
      {
        jobId: result.jobId,
        pass: false,
        source: 'reveal',
        findings: [{ reason: 'off-distribution', figures: FAIL.findings[0]!.figures }],
        figures: FAIL.figures,
      },
    ]);
    const metrics = await (await http.fetch(`${n.gateway.url}/metrics`)).text();
    expect(metrics).toMatch(/^nightjar_reveals_total\{result="forfeited"\} 1$/m);
    // Never content: the detail sentence is not stored either.
    expect(JSON.stringify([strikes, audits])).not.toMatch(/Hello|nocturnal|ranks 181st/);
  });

  // Fails without the pending check in LedgerStore.forfeit: money already payable (perhaps paid
  // out) would be taken back from the operator.
  it('after the pending window strikes the agent and moves no money, and says so', async () => {
    const n = await start();
    const result = await job(n);
    clock.advance(DAY);
    const answer = await clientFor(n).reveal(result.evidence!);
    expect({ forfeited: answer.forfeited, refunded: answer.refunded, message: answer.message }).toEqual({
      forfeited: false,
      refunded: '0',
      message:
        "the reply failed its check (off-distribution): the agent is struck; the job's earnings were already payable, so no money moves",
    });
    expect(await books(n, result.jobId)).toEqual({
      client: BALANCE - 16n,
      operator: { balance: 15n, pending: 0n, payable: 15n },
      charged: 16n,
      forfeited: false,
      problems: [],
    });
    await n.gateway.honesty.whenWritten();
    expect((await n.store.strikes.list({ agentId: raws[0]!.agentId })).map((s) => s.reason)).toEqual(['audit-failed']);
  });

  // Fails with the audit-failed weight at 1 (as over-ceiling): two failed audits leave a score of
  // 1/3, above the 0.25 floor, and the agent keeps getting jobs.
  it('twice bars the agent from routing', async () => {
    const n = await start();
    const agentId = raws[0]!.agentId;
    const client = clientFor(n);
    await client.reveal((await job(n)).evidence!);
    expect(n.gateway.honesty.barred(agentId)).toBe(false);
    await client.reveal((await job(n)).evidence!);
    expect(n.gateway.honesty.barred(agentId)).toBe(true);
    await expect(client.complete({ ...ask, signal: AbortSignal.timeout(5000) })).rejects.toMatchObject({ code: 'NJ_NO_CAPACITY' });
  });
});

describe('the operator', () => {
  // Fails without the audits in agentView (GET /v1/operator/agents): the operator would see the
  // strike but not the audits behind it.
  it('sees audits passed and failed, the last failure with its reasons and figures, beside the strikes', async () => {
    const n = await start();
    const client = clientFor(n);
    checks.verdict = PASS;
    await client.reveal((await job(n)).evidence!);
    checks.verdict = FAIL;
    const failed = await job(n);
    await client.reveal(failed.evidence!);
    await n.gateway.honesty.whenWritten();
    const res = await http.fetch(`${n.gateway.url}/v1/operator/agents`, { headers: { authorization: `Bearer ${n.operator.token}` } });
    const { agents } = operatorAgentsResponseSchema.parse(await res.json());
    expect(agents[0]!.audits).toEqual({
      passed: 1,
      failed: 1,
      lastFailures: [
        {
          at: clock.now(),
          jobId: failed.jobId,
          reasons: ['off-distribution'],
          figures: { 'off-distribution.position': 2, 'off-distribution.rank': 181, 'off-distribution.topK': 40 },
        },
      ],
    });
    expect(agents[0]!.strikes.map((st) => st.reason)).toEqual(['audit-failed']);
  });
});

describe('a passed verdict', () => {
  // Fails if record() strikes or forfeits regardless of the verdict.
  it('records the audit and moves nothing', async () => {
    const n = await start();
    checks.verdict = PASS;
    const result = await job(n);
    const answer = await clientFor(n).reveal(result.evidence!);
    expect(answer).toMatchObject({ verdict: PASS, forfeited: false, refunded: '0' });
    expect(await books(n, result.jobId)).toEqual({
      client: BALANCE - 16n,
      operator: { balance: 15n, pending: 15n, payable: 0n },
      charged: 16n,
      forfeited: false,
      problems: [],
    });
    await n.gateway.honesty.whenWritten();
    expect(await n.store.strikes.list({})).toEqual([]);
    expect((await n.store.audits.list({})).map((a) => a.pass)).toEqual([true]);
  });
});

describe('reveals that must record and move nothing', () => {
  // Fails without the once-per-job audit (the audits table's UNIQUE (job_id, source) and the
  // route's check): a second reveal would strike again and re-run the check.
  it('a second reveal of the same job is answered 409 NJ_ALREADY_REVEALED', async () => {
    const n = await start();
    const result = await job(n);
    await clientFor(n).reveal(result.evidence!);
    const before = await books(n, result.jobId);
    expect(codeOf(await reveal(n, result.evidence, result.jobId))).toEqual({ status: 409, code: 'NJ_ALREADY_REVEALED' });
    await expect(clientFor(n).reveal(result.evidence!)).rejects.toMatchObject({ code: 'NJ_ALREADY_REVEALED' });
    expect(await books(n, result.jobId)).toEqual(before);
    expect(checks.seen).toHaveLength(1);
    await n.gateway.honesty.whenWritten();
    expect(await n.store.strikes.list({})).toHaveLength(1);
  });

  // Fails without the owner check in revealedJob (the job's key against the caller's): any client
  // could have another client's job forfeited to that client and its agent struck.
  it("another key's job is answered 404 NJ_NOT_FOUND", async () => {
    const n = await start();
    const result = await job(n);
    const other = await n.store.accounts.createApiKey({ name: 'other', now: clock.now() });
    expect(codeOf(await reveal(n, result.evidence, result.jobId, other.key))).toEqual({ status: 404, code: 'NJ_NOT_FOUND' });
    expect(checks.seen).toEqual([]);
    expect(await n.store.audits.list({})).toEqual([]);
  });

  // Fails without openEvidence's digest checks and the path check: a client could have the checker
  // judge a reply the agent never sent (and so frame it); with a wrong key nothing opens.
  it('tampered evidence is answered 400 NJ_EVIDENCE_INVALID and records no audit', async () => {
    const n = await start();
    const first = await job(n);
    const second = await job(n);
    const e = first.evidence!;
    const flipped = (text: string): string => {
      const b = fromBase64Url(text);
      b[0]! ^= 1;
      return toBase64Url(b);
    };
    const cases: [string, JobEvidence][] = [
      ['wrong key', { ...e, contentKey: flipped(e.contentKey) }],
      ['altered chunk', { ...e, chunks: e.chunks.map((c, i) => (i === 0 ? { ...c, data: flipped(c.data) } : c)) }],
      ["other job's chunks", { ...e, chunks: second.evidence!.chunks }],
      ["other job's evidence under this job's path", second.evidence!],
    ];
    for (const [name, body] of cases) {
      expect({ name, ...codeOf(await reveal(n, body, first.jobId)) }).toEqual({ name, status: 400, code: 'NJ_EVIDENCE_INVALID' });
    }
    expect(checks.seen).toEqual([]);
    expect(await n.store.audits.list({})).toEqual([]);
    expect((await books(n, first.jobId)).charged).toBe(16n);
  });

  // Fails if a gateway with no checker passed the evidence on to nothing and recorded a pass.
  it('a gateway without a checker answers 501 NJ_AUDIT_UNAVAILABLE', async () => {
    const n = await start({});
    const result = await job(n);
    expect(codeOf(await reveal(n, result.evidence, result.jobId))).toEqual({ status: 501, code: 'NJ_AUDIT_UNAVAILABLE' });
    expect(await n.store.audits.list({})).toEqual([]);
  });

  it("the checker's own NJ_AUDIT_UNAVAILABLE (no file for the receipt's sha) passes through as 501", async () => {
    const n = await start({
      honesty: {
        checker: async () => {
          throw new NightjarError('NJ_AUDIT_UNAVAILABLE', 'no model file with that sha256 here');
        },
      },
    });
    const result = await job(n);
    expect(codeOf(await reveal(n, result.evidence, result.jobId))).toEqual({ status: 501, code: 'NJ_AUDIT_UNAVAILABLE' });
    expect(await n.store.audits.list({})).toEqual([]);
  });

  // Fails without the bound on concurrent checks: every reveal would start a model evaluation at once.
  it('past maxConcurrentChecks a reveal is answered 429 NJ_RATE_LIMITED with Retry-After', async () => {
    let release: () => void = () => undefined;
    const held = new Promise<void>((r) => (release = r));
    const n = await start({
      honesty: {
        checker: async (reply) => {
          checks.seen.push(reply);
          await held;
          return PASS;
        },
      },
    });
    const first = await job(n);
    const second = await job(n);
    const running = reveal(n, first.evidence, first.jobId);
    await expect.poll(() => checks.seen.length).toBe(1);
    const refused = await reveal(n, second.evidence, second.jobId);
    expect({ ...codeOf(refused), retryAfter: refused.retryAfter }).toEqual({ status: 429, code: 'NJ_RATE_LIMITED', retryAfter: '2' });
    release();
    expect((await running).status).toBe(200);
    expect((await reveal(n, second.evidence, second.jobId)).status).toBe(200);
  });
});

describe('count-disputed strikes', () => {
  // Fails without the strike in the countersign route (client-api.ts calling honesty.countDisputed).
  it('a countersignature that disputes a settled receipt strikes the agent once, with the numbers', async () => {
    const n = await start();
    // 'Hello there' is 11 bytes: the SDK counts at most 12 and the receipt claims 16.
    const result = await job(n, { completionTokens: 16, countersign: true });
    await n.gateway.honesty.whenWritten();
    const strikes = await n.store.strikes.list({});
    expect(strikes.map((s) => ({ reason: s.reason, jobId: s.jobId, details: s.details }))).toEqual([
      {
        reason: 'count-disputed',
        jobId: result.jobId,
        details: { claimedCompletionTokens: 16, countedCompletionTokens: 12, digestDiffers: 0, broken: 0, refunded: '8' },
      },
    ]);
  });

  // Fails without Billing's onDisputed hook (the settlement applying the dispute without telling).
  it('a countersignature that arrived before the receipt strikes the agent when the receipt settles', async () => {
    const n = await start();
    const raw = raws[0]!;
    const isBilled = billed(n.gateway);
    const stream = clientFor(n).chat(ask);
    const served = await raw.serve(await raw.next('job'), ['Hello', ' there'], { promptTokens: 12, completionTokens: 16 });
    const jobId = served.receipt.jobId;
    const statement: CountersignStatement = {
      v: PROTOCOL_VERSION,
      jobId,
      replyDigest: served.receipt.replyDigest,
      completionTokens: 12,
      chunks: 3,
      received: 'done',
    };
    const res = await http.fetch(`${n.gateway.url}/v1/jobs/${jobId}/countersign`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${n.key.key}` },
      body: JSON.stringify(countersign(statement, countersignKeyOf(n.key.key))),
    });
    expect(res.status).toBe(200);
    served.finish();
    await stream.result;
    await isBilled(jobId);
    await n.gateway.honesty.whenWritten();
    expect((await n.store.strikes.list({})).map((s) => [s.reason, s.jobId, s.details.countedCompletionTokens])).toEqual([
      ['count-disputed', jobId, 12],
    ]);
  });
});

describe('the SDK', () => {
  /** A seal that remembers the content key buffer it handed out, and a copy of its bytes. */
  function watchedSeal(): {
    seal: (o: SealRequestOptions) => ReturnType<typeof sealRequest>;
    keys: { buffer: Uint8Array; copy: Uint8Array }[];
  } {
    const keys: { buffer: Uint8Array; copy: Uint8Array }[] = [];
    return {
      keys,
      async seal(o) {
        const sealed = await sealRequest(o);
        keys.push({ buffer: sealed.contentKey, copy: sealed.contentKey.slice() });
        return sealed;
      },
    };
  }

  // Fails if keepEvidence defaulted to true or the key were no longer wiped: a result would carry
  // (and memory keep) the key to the conversation without being asked.
  it('keeps no evidence by default, and wipes the content key', async () => {
    const n = await start();
    const watched = watchedSeal();
    const raw = raws[0]!;
    const stream = clientFor(n, { seal: watched.seal }).chat(ask);
    (await raw.serve(await raw.next('job'), ['Hello', ' there'])).finish();
    const result = await stream.result;
    expect(result.evidence).toBeUndefined();
    expect(watched.keys[0]!.buffer.every((b) => b === 0)).toBe(true);
  });

  it('with keepEvidence keeps evidence that holds the job content key and reveals it round trip', async () => {
    const n = await start();
    const watched = watchedSeal();
    const raw = raws[0]!;
    const client = clientFor(n, { seal: watched.seal });
    const stream = client.chat({ ...ask, keepEvidence: true });
    (await raw.serve(await raw.next('job'), ['Hello', ' there'])).finish();
    const result = await stream.result;
    expect(result.evidence).toMatchObject({ v: 1, jobId: result.jobId, agentId: raw.agentId, attempt: 0 });
    expect(result.evidence!.contentKey).toBe(toBase64Url(watched.keys[0]!.copy));
    expect(result.evidence!.chunks.map((c) => c.seq)).toEqual([0, 1, 2]);
    checks.verdict = PASS;
    expect(await client.reveal(result.evidence!)).toMatchObject({ jobId: result.jobId, verdict: PASS, forfeited: false, refunded: '0' });
  });

  it('refuses malformed evidence before sending it, and needs an API key', async () => {
    const n = await start();
    const result = await job(n);
    await expect(clientFor(n).reveal({ ...result.evidence!, contentKey: 'x' })).rejects.toMatchObject({ code: 'NJ_EVIDENCE_INVALID' });
    const anonymous = new NightjarClient({ gatewayUrl: n.gateway.url, fetch: http.fetch });
    await expect(anonymous.reveal(result.evidence!)).rejects.toMatchObject({ code: 'NJ_UNAUTHORIZED' });
    expect(checks.seen).toEqual([]);
  });
});
