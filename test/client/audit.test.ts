/**
 * The auditor on its own (src/client/audit): pacing on a fake clock, the sampling mix, what it
 * checks and reveals, and how it reports failures; and the prompt-file reader's limits. The
 * client here is a small stand-in (the SDK path itself is exercised through a real gateway in
 * test/honesty/indistinguishable.test.ts and cheats.test.ts), so every figure is exact.
 */
import { describe, expect, it } from 'vitest';
import {
  Auditor,
  BUILT_IN_PROMPTS,
  parsePromptLines,
  type AuditClient,
  type AuditResult,
  type ChatRequest,
  type ChatResult,
  type RevealResult,
} from '../../src/client/index.js';
import {
  NightjarError,
  type AuditVerdict,
  type JobEvidence,
  type ReplyCheckOptions,
  type ReplyUnderCheck,
} from '../../src/shared/index.js';
import { seededRandom } from '../helpers/cheating-agents.js';
import { FakeClock } from '../gateway/support/fake-clock.js';

const SHA = 'ab'.repeat(32);

/** A stand-in client: answers every job at once with "ok", and records what it was asked. */
class StubClient implements AuditClient {
  readonly requests: (ChatRequest & { keepEvidence?: boolean })[] = [];
  readonly reveals: JobEvidence[] = [];
  fail: NightjarError | null = null;
  gatewayVerdict: AuditVerdict = { pass: true, findings: [], figures: {} };
  #n = 0;

  async complete(request: ChatRequest & { keepEvidence?: boolean }): Promise<ChatResult & { evidence?: unknown }> {
    this.requests.push(request);
    if (this.fail) throw this.fail;
    const jobId = `job-${++this.#n}`;
    const receipt = { jobId, agentId: 'a'.repeat(32), modelSha256: SHA, promptTokens: 10, completionTokens: 2 };
    return {
      jobId,
      agentId: 'a'.repeat(32),
      trust: 'signed',
      attempt: 1,
      sends: 1,
      model: request.model,
      text: 'ok',
      finishReason: 'stop',
      usage: { promptTokens: 10, completionTokens: 2 },
      receipt: receipt as unknown as ChatResult['receipt'],
      signedReceipt: {} as ChatResult['signedReceipt'],
      identityKey: 'k',
      evidence: { jobId } as unknown as JobEvidence,
    };
  }

  async reveal(evidence: JobEvidence): Promise<RevealResult> {
    this.reveals.push(evidence);
    const { jobId } = evidence as { jobId: string };
    const forfeited = !this.gatewayVerdict.pass;
    return { jobId, agentId: 'a'.repeat(32), verdict: this.gatewayVerdict, forfeited, refunded: '0', message: 'checked' };
  }
}

function checkerRecording(verdict: (r: ReplyUnderCheck) => AuditVerdict = () => ({ pass: true, findings: [], figures: {} })) {
  const calls: { reply: ReplyUnderCheck; options: ReplyCheckOptions | undefined }[] = [];
  return {
    calls,
    check: async (reply: ReplyUnderCheck, options?: ReplyCheckOptions) => {
      calls.push({ reply, options });
      return verdict(reply);
    },
  };
}

const FAIL: AuditVerdict = {
  pass: false,
  findings: [{ reason: 'off-distribution', detail: 'token 1 of 2 ranks 300th', figures: { rank: 300 } }],
  figures: {},
};

/** Lets every pending promise chain run (the stub answers at once, the checker too). */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
}

describe('Auditor', () => {
  it('paces audits at exponential gaps around the mean rate, on the injected clock', async () => {
    const clock = new FakeClock(0);
    const client = new StubClient();
    const sentAt: number[] = [];
    const wrapped: AuditClient = {
      complete: (r) => {
        sentAt.push(clock.now());
        return client.complete(r);
      },
      reveal: (e) => client.reveal(e),
    };
    const auditor = new Auditor({
      client: wrapped,
      checker: checkerRecording().check,
      model: 'm',
      ratePerMinute: 6,
      jobs: 400,
      clock,
      random: seededRandom(3),
    });
    const done = auditor.run();
    while (sentAt.length < 400) {
      clock.advance(1000);
      await settle();
    }
    const summary = await done;
    expect(summary).toMatchObject({ audits: 400, passed: 400, failed: 0, unchecked: 0 });
    const gaps = sentAt.slice(1).map((t, i) => t - sentAt[i]!);
    const mean = gaps.reduce((a, b) => a + b, 0) / gaps.length;
    const sd = Math.sqrt(gaps.reduce((a, g) => a + (g - mean) ** 2, 0) / gaps.length);
    // 6 a minute: a mean gap of 10 s; exponential gaps have a standard deviation equal to their mean
    // (a fixed period, which would tell audits apart, has none). The clock moves in 1 s steps.
    expect(mean).toBeGreaterThan(9_000);
    expect(mean).toBeLessThan(11_000);
    expect(sd / mean).toBeGreaterThan(0.85);
    expect(sd / mean).toBeLessThan(1.15);
    await auditor.dispose();
  });

  it('mixes greedy and sampled jobs, seeds, lengths and stops, and keeps the evidence of each', async () => {
    const client = new StubClient();
    const checker = checkerRecording();
    const auditor = new Auditor({ client, checker: checker.check, model: 'm', random: seededRandom(5) });
    for (let i = 0; i < 300; i++) await auditor.audit();
    const greedy = client.requests.filter((r) => r.temperature === 0).length;
    expect(greedy).toBeGreaterThan(60);
    expect(greedy).toBeLessThan(120);
    expect(new Set(client.requests.map((r) => r.temperature)).size).toBe(6);
    expect(new Set(client.requests.map((r) => r.maxTokens)).size).toBe(5);
    expect(client.requests.filter((r) => r.stop !== undefined).length).toBeGreaterThan(80);
    expect(new Set(client.requests.map((r) => r.seed)).size).toBeGreaterThan(150);
    expect(client.requests.every((r) => r.keepEvidence === true)).toBe(true);
    // Greedy audits ask the checker for a reference run; sampled ones do not.
    for (const c of checker.calls) expect(c.options?.reference).toBe(c.reply.sampling.temperature === 0);
    // The checker sees the request exactly as sealed, and the receipt's claims.
    const first = checker.calls[0]!.reply;
    expect(first.messages).toEqual(BUILT_IN_PROMPTS.find((p) => p.messages === first.messages)?.messages);
    expect(first.claimed).toEqual({ promptTokens: 10, completionTokens: 2 });
    expect(first.modelSha256).toBe(SHA);
    expect(first.sampling.maxTokens).toBe(client.requests[0]!.maxTokens);
    await auditor.dispose();
  });

  it("reveals every audit under 'all', only the failed ones under 'failed', and reports both verdicts", async () => {
    const results: AuditResult[] = [];
    const all = new StubClient();
    const a = new Auditor({ client: all, checker: checkerRecording().check, model: 'm', random: seededRandom(1) });
    a.onAudit((r) => results.push(r));
    await a.audit();
    expect(all.reveals).toHaveLength(1);
    expect(results[0]).toMatchObject({ pass: true, reasons: [], disagree: false, error: null, gateway: { forfeited: false } });

    const some = new StubClient();
    let n = 0;
    const b = new Auditor({
      client: some,
      checker: checkerRecording(() => (++n === 2 ? FAIL : { pass: true, findings: [], figures: {} })).check,
      model: 'm',
      reveal: 'failed',
      random: seededRandom(1),
    });
    const first = await b.audit();
    expect(first.gateway).toBeNull();
    expect(some.reveals).toHaveLength(0);
    some.gatewayVerdict = FAIL;
    const second = await b.audit();
    expect(some.reveals).toHaveLength(1);
    expect(second).toMatchObject({ pass: false, reasons: ['off-distribution'], disagree: false, gateway: { forfeited: true } });

    // The gateway failing a reply this machine passed is a failure too, and a disagreement.
    const c = new Auditor({ client: some, checker: checkerRecording().check, model: 'm', random: seededRandom(1) });
    expect(await c.audit()).toMatchObject({ pass: false, reasons: ['off-distribution'], disagree: true });
    await Promise.all([a.dispose(), b.dispose(), c.dispose()]);
  });

  it('waits out a reveal the gateway refuses as rate limited, as long as it says, a bounded number of times', async () => {
    const clock = new FakeClock(0);
    const client = new StubClient();
    let refusals = 1;
    const limited: AuditClient = {
      complete: (r) => client.complete(r),
      reveal: async (e) => {
        if (refusals-- > 0) throw new NightjarError('NJ_RATE_LIMITED', 'busy re-checking', { retryAfterMs: 500 });
        return client.reveal(e);
      },
    };
    const auditor = new Auditor({
      client: limited,
      checker: checkerRecording().check,
      model: 'm',
      clock,
      revealAttempts: 2,
      random: seededRandom(6),
    });
    const first = auditor.audit();
    await settle();
    expect(client.reveals).toHaveLength(0);
    clock.advance(499);
    await settle();
    expect(client.reveals).toHaveLength(0);
    clock.advance(1);
    expect(await first).toMatchObject({ pass: true, error: null, gateway: { forfeited: false } });
    // Refused as often as it may try: the audit says so.
    refusals = 2;
    const second = auditor.audit();
    await settle();
    clock.advance(500);
    expect(await second).toMatchObject({ pass: true, gateway: null, error: { stage: 'reveal', code: 'NJ_RATE_LIMITED' } });
    await auditor.dispose();
  });

  it('reports a job that failed, and a checker without the file, without throwing', async () => {
    const client = new StubClient();
    client.fail = new NightjarError('NJ_NO_CAPACITY', 'no agent has a free slot');
    const unavailable = async (): Promise<AuditVerdict> => {
      throw new NightjarError('NJ_AUDIT_UNAVAILABLE', 'no model file for that sha256');
    };
    const auditor = new Auditor({ client, checker: unavailable, model: 'm', random: seededRandom(2) });
    expect(await auditor.audit()).toMatchObject({ pass: null, jobId: null, error: { stage: 'job', code: 'NJ_NO_CAPACITY' } });
    client.fail = null;
    // No local verdict: revealed anyway (the gateway may hold the file), and its verdict stands.
    const r = await auditor.audit();
    expect(r).toMatchObject({ pass: true, local: null, error: { stage: 'check', code: 'NJ_AUDIT_UNAVAILABLE' } });
    expect(client.reveals).toHaveLength(1);
    await auditor.dispose();
  });

  it('stops run() at dispose(), and refuses options out of range', async () => {
    const clock = new FakeClock(0);
    const auditor = new Auditor({
      client: new StubClient(),
      checker: checkerRecording().check,
      model: 'm',
      clock,
      random: seededRandom(4),
    });
    const run = auditor.run();
    await auditor.dispose();
    expect(await run).toMatchObject({ audits: 0 });
    await expect(auditor.audit()).rejects.toMatchObject({ code: 'NJ_CANCELLED' });

    const base = { client: new StubClient(), checker: checkerRecording().check, model: 'm' };
    for (const bad of [
      { ratePerMinute: 0 },
      { jobs: 1.5 },
      { maxInFlight: 0 },
      { revealAttempts: 0 },
      { prompts: [] },
      { sampling: { greedyShare: 2 } },
      { sampling: { temperatures: [0] } },
      { sampling: { maxTokens: [0] } },
      { sampling: { stops: [''] } },
      { model: '' },
    ]) {
      expect(() => new Auditor({ ...base, ...bad })).toThrow(expect.objectContaining({ code: 'NJ_CONFIG_INVALID' }));
    }
  });
});

describe('parsePromptLines', () => {
  it('reads prompts and conversations, skipping blank and # lines', () => {
    const prompts = parsePromptLines(
      [
        '# mine',
        '{"prompt": "hi"}',
        '',
        '{"prompt": "hello", "system": "be brief"}',
        '{"messages": [{"role": "user", "content": "yo"}]}',
      ].join('\n'),
    );
    expect(prompts.map((p) => p.messages)).toEqual([
      [{ role: 'user', content: 'hi' }],
      [
        { role: 'system', content: 'be brief' },
        { role: 'user', content: 'hello' },
      ],
      [{ role: 'user', content: 'yo' }],
    ]);
  });

  it('refuses bad lines by number, never echoing their content, and files over their limits', () => {
    const cases: [string, RegExp, object?][] = [
      ['{"prompt": "a"}\nsecret text', /^line 2 of the prompt file is not JSON/],
      ['{"prompt": 3}', /^line 1 of the prompt file is not a prompt/],
      ['{"messages": [{"role": "assistant", "content": "secret"}]}', /^line 1 of the prompt file does not end with a user message$/],
      ['{"prompt": "secret", "extra": 1}', /^line 1 of the prompt file is not a prompt/],
      ['', /^the prompt file holds no prompt$/],
      [`{"prompt": "${'x'.repeat(100)}"}`, /^line 1 of the prompt file is longer than 50 bytes$/, { maxLineBytes: 50 }],
      ['{"prompt": "a"}\n{"prompt": "b"}\n{"prompt": "c"}', /^the prompt file has more than 2 prompts$/, { maxPrompts: 2 }],
      ['{"prompt": "abc"}', /^the prompt file is larger than 10 bytes; split it$/, { maxFileBytes: 10 }],
    ];
    for (const [text, message, options] of cases) {
      let error: unknown;
      try {
        parsePromptLines(text, options);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(NightjarError);
      expect((error as NightjarError).code).toBe('NJ_BAD_REQUEST');
      expect((error as NightjarError).message).toMatch(message);
      expect((error as NightjarError).message).not.toContain('secret');
    }
  });

  it('has a built-in set of 40 or more prompts, short to long', () => {
    expect(BUILT_IN_PROMPTS.length).toBeGreaterThanOrEqual(40);
    const sizes = BUILT_IN_PROMPTS.map((p) => p.messages.reduce((n, m) => n + m.content.length, 0));
    expect(Math.min(...sizes)).toBeLessThan(10);
    expect(Math.max(...sizes)).toBeGreaterThan(2048);
    expect(BUILT_IN_PROMPTS.every((p) => p.messages.at(-1)!.role === 'user')).toBe(true);
  });
});
