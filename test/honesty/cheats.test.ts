/**
 * Each cheat of the harness (test/helpers/cheating-agents.ts) beside the honest agent, through a
 * real gateway on SQLite with a real reply checker (createReplyChecker on the claimed model file)
 * for revealed jobs: a few rounds of real client jobs (SDK, countersigned) and audits (the Auditor,
 * its own checker, revealed) show the cheat struck with the right reason, the auditor's local
 * verdict naming what it did, and the honest agent never struck. The bounded run with many jobs is
 * bench/honesty.ts; this is the behaviour, not the rates.
 *
 * Each round sends two jobs at once and every agent has one slot, so both agents serve in each round
 * while both are eligible. Synthetic models never end a reply by themselves, so the cheats that
 * need a reply that ends early (inflated counts) are given single-character stop sequences that
 * synthetic text contains; the dropped tail is given none (every reply would run to maxTokens).
 *
 * Protections shown (removed once, each case seen to fail on its own assertion): with
 * `countersign: false` on both clients, both checkers replaced by one that passes everything and
 * `claimGapFactor: 100`, the small-model, random-output and dropped-tail cases have no
 * 'audit-failed' strike, the inflated-counts case no 'count-disputed' strike and the faked-speed
 * case no 'claim-gap' strike.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Auditor, NightjarClient, type AuditResult, type AuditSamplingMix } from '../../src/client/index.js';
import type { AuditFailureReason } from '../../src/shared/index.js';
import { createReplyChecker, type ReplyCheckerHandle } from '../../src/main/agent/index.js';
import type { StrikeReason } from '../../src/gateway/index.js';
import { perTestFetch } from '../helpers/http-client.js';
import {
  HARNESS_MODEL_ID,
  seededRandom,
  startHonestyNetwork,
  writeHarnessModels,
  type CheatName,
  type HarnessAgentOptions,
  type HarnessModels,
} from '../helpers/cheating-agents.js';

const http = perTestFetch();
let models: HarnessModels;
let gatewayChecker: ReplyCheckerHandle;
let auditorChecker: ReplyCheckerHandle;

beforeAll(async () => {
  models = await writeHarnessModels();
  gatewayChecker = createReplyChecker({ modelPath: models.modelPath, threads: 1 });
  auditorChecker = createReplyChecker({ modelPath: models.modelPath, threads: 1 });
});
afterAll(async () => {
  await gatewayChecker?.dispose();
  await auditorChecker?.dispose();
  await models?.remove();
});

/**
 * Engines, checkers, gateway and clients share two cores here: a keepalive read late must not
 * break a job (the idle timeout is the client's own, not visible to anyone).
 */
const STREAM_IDLE_MS = 10_000;

/** Single characters synthetic text contains: replies end early on them. */
const STOPS = ['K', 'Q', '2', 'W', '~', 'd'];

interface Case {
  cheat: Exclude<CheatName, 'honest'>;
  /** The strike reason the gateway must record. */
  strike: StrikeReason;
  /** A finding the auditor's own check must report on the cheat's audits (none: audits cannot see it). */
  finding: AuditFailureReason | null;
  /** How its jobs sample. */
  sampling: AuditSamplingMix;
  rounds: number;
  /** How both agents run (pacing, for a case the gateway must time). Defaults to the harness's. */
  agents?: HarnessAgentOptions;
}

const NO_STOPS: AuditSamplingMix = { maxTokens: [24, 32], stopShare: 0 };
const CASES: Case[] = [
  { cheat: 'small-model', strike: 'audit-failed', finding: 'off-distribution', sampling: NO_STOPS, rounds: 2 },
  { cheat: 'random-output', strike: 'audit-failed', finding: 'off-distribution', sampling: NO_STOPS, rounds: 2 },
  {
    cheat: 'inflated-counts',
    strike: 'count-disputed',
    finding: 'completion-count',
    sampling: { maxTokens: [48], stopShare: 1, stops: STOPS },
    rounds: 3,
  },
  // Three timed jobs before a claim-gap can be judged: four rounds leave room for a short reply.
  // Paced at 12 ms a token (about 80 tokens/s, a Mac's speed), so a reply decodes long enough for
  // the gateway to time it (250 ms and more); the synthetic model alone is far faster.
  {
    cheat: 'faked-speed',
    strike: 'claim-gap',
    finding: null,
    sampling: { maxTokens: [32], stopShare: 0 },
    rounds: 4,
    agents: { paceMs: 12 },
  },
  { cheat: 'dropped-tail', strike: 'audit-failed', finding: 'tail-dropped', sampling: NO_STOPS, rounds: 2 },
];

describe.each(CASES)('the $cheat cheat', ({ cheat, strike, finding, sampling, rounds, agents }) => {
  it(`is struck (${strike}) within ${rounds * 4} jobs, and the honest agent beside it is not`, async () => {
    const net = await startHonestyNetwork({ models, gateway: { honesty: { checker: gatewayChecker.check } } });
    try {
      const honest = await net.startAgent('honest', agents);
      const cheater = await net.startAgent(cheat, agents);
      const trust = { allowSynthetic: true };
      const client = new NightjarClient({
        gatewayUrl: net.gateway.url,
        apiKey: net.clientKey.key,
        trust,
        fetch: http.fetch,
        streamIdleMs: STREAM_IDLE_MS,
      });
      const auditClient = new NightjarClient({
        gatewayUrl: net.gateway.url,
        apiKey: net.auditorKey.key,
        trust,
        fetch: http.fetch,
        streamIdleMs: STREAM_IDLE_MS,
      });
      const random = seededRandom(42);
      const auditor = new Auditor({ client: auditClient, checker: auditorChecker.check, model: HARNESS_MODEL_ID, random, sampling });
      const audits: AuditResult[] = [];
      auditor.onAudit((r) => audits.push(r));
      const served = new Map<string, number>();
      const realJob = async (): Promise<void> => {
        const stop = sampling.stopShare ? [STOPS[Math.floor(random() * STOPS.length)]!] : undefined;
        const result = await client.complete({
          model: HARNESS_MODEL_ID,
          messages: [{ role: 'user', content: `Tell me about the number ${Math.floor(random() * 1000)}.` }],
          maxTokens: sampling.maxTokens![0]!,
          temperature: 0.7,
          seed: Math.floor(random() * 2 ** 32),
          ...(stop ? { stop } : {}),
        });
        served.set(result.agentId, (served.get(result.agentId) ?? 0) + 1);
      };
      try {
        for (let i = 0; i < rounds; i++) {
          await Promise.all([realJob(), realJob()]);
          await Promise.all([auditor.audit(), auditor.audit()]);
        }
        await client.countersigned();
        await auditClient.countersigned();
      } finally {
        await auditor.dispose();
      }
      await net.gateway.honesty.whenWritten();
      const cheatStrikes = await net.store.strikes.list({ agentId: cheater.agentId });
      const honestStrikes = await net.store.strikes.list({ agentId: honest.agentId });

      // Both served: the cheat was given work, and was caught doing it.
      for (const a of audits) expect(a.error).toBeNull();
      expect(audits.filter((a) => a.agentId === cheater.agentId).length).toBeGreaterThan(0);
      expect(cheatStrikes.map((s) => s.reason)).toContain(strike);
      expect(honestStrikes).toEqual([]);
      // What this machine's own check saw: the honest agent's audits pass, the cheat's name what it did.
      for (const a of audits.filter((x) => x.agentId === honest.agentId)) expect(a).toMatchObject({ pass: true, disagree: false });
      const ofCheat = audits.filter((x) => x.agentId === cheater.agentId);
      if (finding === null) for (const a of ofCheat) expect(a.local?.pass).toBe(true);
      else if (finding === 'completion-count') {
        // Only a reply that ended well before maxTokens leaves room to inflate past the check's slack
        // (its own tokens + the end + the stop + 1): each such audit must say so. Which audits the
        // cheat serves depends on timing; the countersignature's strike above does not.
        const roomy = ofCheat.filter((a) => (a.local?.figures.replyTokens ?? Infinity) + 5 <= a.request.maxTokens);
        for (const a of roomy) expect(a.local?.findings.map((f) => f.reason)).toContain(finding);
        for (const a of ofCheat) expect(a.disagree).toBe(false);
      } else {
        expect(ofCheat.some((a) => a.local?.findings.some((f) => f.reason === finding))).toBe(true);
        // The gateway's re-check of a revealed audit agrees with this machine's.
        for (const a of ofCheat) expect(a.disagree).toBe(false);
      }
    } finally {
      await net.close();
    }
  });
});
