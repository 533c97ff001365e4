/**
 * Enrollment binds an agent identity to an operator, once: the binding survives reconnects (the
 * agent presents the same token each time), and a token is refused (NJ_ENROLL_INVALID, close
 * 4403) when it is unknown, expired, used by another agent, or for another operator than the
 * agent's existing binding.
 */
import { describe, expect, it } from 'vitest';
import { CLOSE_CODES, generateIdentity } from '../../src/shared/index.js';
import { FakeEngine } from '../helpers/fake-engine.js';
import { REAL_MODEL, billedNetworkPerTest, startAgent } from './support/net.js';
import { RawAgent } from './support/raw-agent.js';
import { onceTrue } from '../helpers/events.js';

const fx = billedNetworkPerTest();

/** Connects a raw agent and expects the gateway to refuse it. */
async function refused(options: Parameters<typeof RawAgent.connect>[0]): Promise<{ code: string; close: number; message: string }> {
  const err = (await RawAgent.connect(options).then(
    () => {
      throw new Error('the gateway admitted the agent');
    },
    (e: unknown) => e,
  )) as Error & { code: string; closed: Promise<{ code: number }> };
  return { code: err.code, message: err.message, close: (await err.closed).code };
}

describe('enrollment', () => {
  it('binds an agent to the operator once, and the binding survives reconnects with the same token', async () => {
    const token = await fx.net.enrollToken();
    const identity = await generateIdentity();
    const agent = await startAgent(fx.net.gateway, { engine: new FakeEngine(), identity, enrollToken: token });
    fx.agents.push(agent);
    expect(fx.net.gateway.directory.get(agent.agentId)?.operatorId).toBe(fx.net.operator.id);
    const record = await fx.net.store.accounts.getAgent(agent.agentId);
    expect({ operatorId: record?.operatorId, identityKey: record?.identityKey }).toEqual({
      operatorId: fx.net.operator.id,
      identityKey: agent.bundle.bundle.identityKey,
    });
    const [used] = (await fx.net.store.accounts.listEnrollmentTokens(fx.net.operator.id)).filter((t) => t.usedBy !== null);
    expect(used?.usedBy).toBe(agent.agentId);

    // Same identity, same token, new connection: still bound, nothing new used.
    await agent.dispose();
    fx.agents.pop();
    const again = await startAgent(fx.net.gateway, { engine: new FakeEngine(), identity, enrollToken: token });
    fx.agents.push(again);
    expect(fx.net.gateway.directory.get(again.agentId)?.operatorId).toBe(fx.net.operator.id);
    // Without the token too: the binding is the identity's, not the connection's.
    const raw = await RawAgent.connect({ url: fx.net.gateway.agentUrl, model: REAL_MODEL, identity: await generateIdentity() });
    fx.raws.push(raw);
    expect(raw.frames.find((f) => f.type === 'welcome')).toMatchObject({ operator: null });
  });

  // Fails if admitAgent stopped checking used_at (a token could bind any number of agents, so a
  // leaked token would let strangers earn as the operator).
  it('refuses a token another agent used, an unknown or expired token, and a token for another operator', async () => {
    const token = await fx.net.enrollToken();
    const first = await RawAgent.connect({ url: fx.net.gateway.agentUrl, model: REAL_MODEL, enrollToken: token });
    fx.raws.push(first);
    expect(first.frames.find((f) => f.type === 'welcome')).toMatchObject({ operator: fx.net.operator.id });

    const reused = await refused({ url: fx.net.gateway.agentUrl, model: REAL_MODEL, enrollToken: token });
    expect(reused).toMatchObject({
      code: 'NJ_ENROLL_INVALID',
      close: 4403,
      message: 'NJ_ENROLL_INVALID: the enrollment token was already used by another agent',
    });

    const unknown = await refused({
      url: fx.net.gateway.agentUrl,
      model: REAL_MODEL,
      enrollToken: `njen_${'0'.repeat(12)}_${'A'.repeat(43)}`,
    });
    expect(unknown.message).toBe('NJ_ENROLL_INVALID: the enrollment token is not known to this gateway');

    const stale = await fx.net.store.accounts.createEnrollmentToken({
      operatorId: fx.net.operator.id,
      now: Date.now() - 2 * 3600_000,
      ttlMs: 3600_000,
    });
    expect((await refused({ url: fx.net.gateway.agentUrl, model: REAL_MODEL, enrollToken: stale.token })).message).toBe(
      'NJ_ENROLL_INVALID: the enrollment token has expired',
    );

    const other = await fx.net.store.accounts.createOperator({ name: 'Other', now: Date.now() });
    const theirs = await fx.net.store.accounts.createEnrollmentToken({ operatorId: other.id, now: Date.now(), ttlMs: 3600_000 });
    const moved = await refused({ url: fx.net.gateway.agentUrl, model: REAL_MODEL, identity: first.identity, enrollToken: theirs.token });
    expect(moved.message).toBe('NJ_ENROLL_INVALID: the enrollment token is for another operator than the one this agent is bound to');
    expect((await fx.net.store.accounts.getAgent(first.agentId))?.operatorId).toBe(fx.net.operator.id);
  });

  it('closes a refused agent with 4403 after the reject frame', async () => {
    const stale = `njen_${'1'.repeat(12)}_${'B'.repeat(43)}`;
    expect(await refused({ url: fx.net.gateway.agentUrl, model: REAL_MODEL, enrollToken: stale })).toMatchObject({
      code: 'NJ_ENROLL_INVALID',
      close: CLOSE_CODES.enrollRefused,
    });
    // The refused socket is gone from the gateway's count: a proper agent still gets in.
    const gw = fx.net.gateway;
    await onceTrue(gw.onAgentDisconnected, () => gw.directory.size === 0, 'the directory to empty', 1000);
    const ok = await RawAgent.connect({ url: fx.net.gateway.agentUrl, model: REAL_MODEL });
    fx.raws.push(ok);
  });
});
