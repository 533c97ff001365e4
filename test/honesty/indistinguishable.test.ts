/**
 * Audit jobs look like real jobs (issue 13, "Must show"): what an agent receives for an audit and
 * for an ordinary client's job has the same fields, the same padded size for prompts of the same
 * size bucket and nothing that names the auditor; what the gateway receives (the HTTP request of
 * each job, and of its countersignature) has the same headers and the same shape; and the gateway's
 * job path holds no notion of an auditor to branch on.
 *
 * The agent is a RawAgent (the real protocol, real keys), so every frame the gateway sends it is
 * recorded as it arrived. The auditor's checker is a stub: this file is about the wire, not the
 * verdict (test/honesty/cheats.test.ts checks verdicts). Audits are revealed only after their job
 * is over, so the reveal cannot mark the job while it runs; here the stub passes every reply and
 * the auditor reveals only failed ones, so no reveal is sent at all.
 *
 * Protection shown: the audit's maxTokens (visible in the header) is what its sampling mix draws;
 * with the mix set to 512 while the real client asks for 64 (tried once), the first test fails on
 * the header's maxTokens — which is why the mix must follow the gateway's real traffic.
 */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Auditor, NightjarClient } from '../../src/client/index.js';
import type { AuditVerdict, GatewayFrame, ReplyChecker } from '../../src/shared/index.js';
import { perTestFetch } from '../helpers/http-client.js';
import { agentServing } from '../helpers/network.js';
import { REAL_MODEL, billedNetworkPerTest } from '../gateway/support/net.js';
import { RawAgent } from '../gateway/support/raw-agent.js';

const http = perTestFetch();
const fixture = billedNetworkPerTest();

/** Every path of `value` with the type at its end: the shape of a frame without its values. */
function shapeOf(value: unknown, at = ''): string[] {
  if (Array.isArray(value)) return [`${at}:array`, ...value.flatMap((v) => shapeOf(v, `${at}[]`))];
  if (value !== null && typeof value === 'object') {
    return Object.entries(value as Record<string, unknown>)
      .sort(([a], [b]) => a.localeCompare(b))
      .flatMap(([k, v]) => shapeOf(v, `${at}.${k}`));
  }
  return [`${at}:${typeof value}`];
}

/** A fetch that records each request's method, path, header names and JSON body. */
function recordingFetch(): { fetch: typeof fetch; requests: { method: string; path: string; headers: string[]; body: unknown }[] } {
  const requests: { method: string; path: string; headers: string[]; body: unknown }[] = [];
  return {
    requests,
    fetch: (async (input: Parameters<typeof fetch>[0], init?: RequestInit) => {
      const url = new URL(typeof input === 'string' ? input : input instanceof URL ? input.href : input.url);
      const headers = Object.keys(Object.fromEntries(new Headers(init?.headers).entries())).sort();
      const body = typeof init?.body === 'string' ? (JSON.parse(init.body) as unknown) : null;
      requests.push({ method: init?.method ?? 'GET', path: url.pathname.replace(/\/jobs\/[^/]+\//, '/jobs/:id/'), headers, body });
      return http.fetch(input, init);
    }) as typeof fetch,
  };
}

const PASS: AuditVerdict = { pass: true, findings: [], figures: {} };
const passingChecker: ReplyChecker = async () => PASS;

/** Serves the next job `raw` receives (a short reply) and resolves with its job frame. */
async function serveNext(raw: RawAgent): Promise<Extract<GatewayFrame, { type: 'job' }>> {
  const job = await raw.next('job', 10_000);
  const served = await raw.serve(job, ['Fine', ' thanks', '.'], { promptTokens: 20, completionTokens: 3 });
  served.finish();
  return job;
}

describe('audit jobs and real jobs', () => {
  it('reach the agent with the same fields, the same padded size and nothing naming the auditor', async () => {
    const { net } = fixture;
    const auditorKey = await net.store.accounts.createApiKey({ name: 'auditor', now: Date.now() });
    await net.store.ledger.topUp(auditorKey.id, 10_000_000n, Date.now());
    const raw = await RawAgent.connect({ url: net.gateway.agentUrl, model: REAL_MODEL, enrollToken: await net.enrollToken(), slots: 1 });
    fixture.raws.push(raw);
    await agentServing(net.gateway, raw.agentId);

    const realWire = recordingFetch();
    const auditWire = recordingFetch();
    const trust = { allowSynthetic: true };
    const real = new NightjarClient({ gatewayUrl: net.gateway.url, apiKey: net.key.key, trust, fetch: realWire.fetch });
    const auditClient = new NightjarClient({ gatewayUrl: net.gateway.url, apiKey: auditorKey.key, trust, fetch: auditWire.fetch });
    // Two prompts of the same size bucket (both well under the smallest padded bucket).
    const realPrompt = 'How do I reverse a string in Python?';
    const auditor = new Auditor({
      client: auditClient,
      checker: passingChecker,
      model: REAL_MODEL.id,
      prompts: [{ messages: [{ role: 'user', content: 'What is the capital of Australia?' }] }],
      reveal: 'failed',
      // One sampled shape, the one the real client uses below, so maxTokens (visible) matches too.
      sampling: { greedyShare: 0, temperatures: [0.7], maxTokens: [64], stopShare: 0, topPShare: 0, topKShare: 0, seedShare: 1 },
    });
    try {
      const realJob = serveNext(raw);
      const realResult = await real.complete({
        model: REAL_MODEL.id,
        messages: [{ role: 'user', content: realPrompt }],
        maxTokens: 64,
        temperature: 0.7,
        seed: 7,
      });
      const realFrame = await realJob;
      const auditJob = serveNext(raw);
      const audit = await auditor.audit();
      const auditFrame = await auditJob;
      await real.countersigned();
      await auditClient.countersigned();

      expect(audit.pass).toBe(true);
      expect(audit.jobId).toBe(auditFrame.jobId);
      expect(realResult.jobId).toBe(realFrame.jobId);
      // The same fields, in the same shape, at the agent.
      expect(shapeOf(auditFrame)).toEqual(shapeOf(realFrame));
      const [a, r] = [auditFrame.envelope.header, realFrame.envelope.header];
      expect(a.bodyLength).toBe(r.bodyLength);
      expect(auditFrame.envelope.body.length).toBe(realFrame.envelope.body.length);
      expect([a.model, a.maxTokens, a.recipients.length, a.v]).toEqual([r.model, r.maxTokens, r.recipients.length, r.v]);
      // Nothing that names the auditor's key or an audit.
      const text = JSON.stringify(auditFrame);
      for (const marker of [auditorKey.id, auditorKey.key, 'audit', 'Audit']) expect(text).not.toContain(marker);

      // At the gateway: the same requests (the job, then its countersignature), the same headers, the same body shape.
      const summary = (w: typeof realWire) =>
        w.requests.map((q) => ({ method: q.method, path: q.path, headers: q.headers, shape: shapeOf(q.body) }));
      const realPosts = summary(realWire).filter((q) => q.method === 'POST');
      const auditPosts = summary(auditWire).filter((q) => q.method === 'POST');
      expect(auditPosts.map((q) => q.path)).toEqual(['/v1/jobs', '/v1/jobs/:id/countersign']);
      expect(auditPosts).toEqual(realPosts);
    } finally {
      await auditor.dispose();
    }
  });

  it('meet a gateway whose job path has no notion of an auditor', async () => {
    // The job path: admission, routing, relay (in process or across a cluster), billing and the key's account. The reveal route
    // (after the job) is the only place a gateway hears of an audit.
    const root = path.resolve(import.meta.dirname, '../../src/gateway');
    const files = [
      'job.ts',
      'router.ts',
      'directory.ts',
      'transport.ts',
      'running-jobs.ts',
      'billing.ts',
      'claims.ts',
      'http/jobs.ts',
      'http/callers.ts',
    ];
    for (const dir of ['accounts', 'ledger', 'cluster']) {
      for (const f of await readdir(path.join(root, dir))) if (f.endsWith('.ts')) files.push(`${dir}/${f}`);
    }
    for (const f of files) {
      // Code, not comments: a comment may say what a forfeit after a reveal is; code must not ask who the caller is.
      const code = (await readFile(path.join(root, f), 'utf8')).replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '');
      expect({ file: f, mentions: /auditor|isAudit/i.test(code) }).toEqual({ file: f, mentions: false });
    }
    // And no account has a role an auditor could be given: the api_keys table's columns.
    const migrations = await readFile(path.join(root, 'store/migrations.ts'), 'utf8');
    expect(migrations).not.toMatch(/auditor|is_audit|audit_key/i);
  });
});
