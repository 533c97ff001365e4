/**
 * End to end, `--min-trust attested` (the SDK's minTrust, which the CLI and the proxy pass on): a
 * real gateway on port 0 with a released-apps list, real agents with the fake engine, one with a
 * software stand-in for the Secure Enclave and a hardened posture (test-only, allowed by an
 * option no production path sets), one signed only. The client gets a reply from the attested
 * agent, and refuses the signed one before sealing: no seal is made and no request reaches
 * /v1/jobs.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { NightjarClient } from '../../src/client/index.js';
import { Agent } from '../../src/main/agent/index.js';
import { generateIdentity, releasedAppsOf, sealRequest } from '../../src/shared/index.js';
import { FakeEngine } from '../helpers/fake-engine.js';
import { perTestFetch } from '../helpers/http-client.js';
import { HARDENED_POSTURE, RELEASED_APP_HASH, softwareEnclave } from '../helpers/software-enclave.js';
import { FAKE_MODEL, startNet, type TestNet } from './support/net.js';

let net: TestNet | undefined;
afterEach(async () => {
  await net?.close();
  net = undefined;
});
const http = perTestFetch();

const ask = { model: FAKE_MODEL.id, messages: [{ role: 'user' as const, content: 'Say hello.' }], maxTokens: 32 };

/** A client with minTrust attested that counts what it seals and what it sends to /v1/jobs. */
function countingClient(n: TestNet) {
  const counts = { seals: 0, jobs: 0 };
  const client = new NightjarClient({
    gatewayUrl: n.gateway.url,
    trust: { allowSynthetic: true, minTrust: 'attested' },
    fetch: (input, init) => {
      if (new URL(String(input instanceof Request ? input.url : input)).pathname === '/v1/jobs') counts.jobs++;
      return http.fetch(input, init);
    },
    seal: (o) => {
      counts.seals++;
      return sealRequest(o);
    },
    retry: { maxAttempts: 1 },
  });
  return { client, counts };
}

describe('minTrust attested, end to end', () => {
  it('gets a reply from an agent with a (software) enclave key and a hardened, released posture', async () => {
    net = await startNet();
    await net.gateway.store.catalog.addRelease({ version: '1.0.0', appHash: RELEASED_APP_HASH }, Date.now());
    await net.gateway.catalog.reload();
    const a = await net.addAgent(new FakeEngine({ words: ['Hello', '.'] }), {
      enclave: await softwareEnclave(),
      posture: HARDENED_POSTURE,
    });
    expect(a.agent.attestation).toEqual(['valid']);
    expect(net.gateway.directory.get(a.agentId)).toMatchObject({ trust: 'attested', attestation: ['valid'] });
    const { client, counts } = countingClient(net);
    const result = await client.complete(ask);
    expect(result).toMatchObject({ text: 'Hello.', agentId: a.agentId, trust: 'attested' });
    expect(counts).toEqual({ seals: 1, jobs: 1 });
  });

  // An honest gateway already answers NJ_TRUST_POLICY (and its signed answer's judged trust is
  // checked first). A lying gateway, which judges the signed agent attested and signs that, meets
  // the client's own check of the bundle. Fails without it, shown once each: with the co-signature
  // check removed (the gateway's judged trust taken as is), or with the client's minTrust
  // comparison removed, the lying case sealed for the signed agent and sent (seals 1, jobs 1).
  for (const gateway of ['honest', 'lying'] as const) {
    it(`refuses a signed agent before sealing anything, the gateway ${gateway}: no envelope leaves the client`, async () => {
      net = await startNet({ releasedApps: releasedAppsOf([RELEASED_APP_HASH]) });
      // Its posture claims everything, but its bundle carries no enclave co-signature.
      const a = await net.addAgent(new FakeEngine(), { posture: HARDENED_POSTURE });
      if (gateway === 'lying') net.gateway.directory.get(a.agentId)!.trust = 'attested';
      const { client, counts } = countingClient(net);
      const refused = client.complete(ask);
      await expect(refused).rejects.toMatchObject({ code: 'NJ_TRUST_POLICY' });
      if (gateway === 'lying') await expect(refused).rejects.toThrow(/the agent is signed \(no-attestation[,)]/);
      expect(counts).toEqual({ seals: 0, jobs: 0 });
    });
  }

  // Fails without the client's own release check (the app hash taken on the gateway's word):
  // the reply is sealed for an app the gateway's signed list does not name; shown once.
  it('refuses an attested agent whose app hash the gateway’s signed released list does not name', async () => {
    // This gateway judges by a list of its own (releasedApps) that its signed list does not match.
    net = await startNet({ releasedApps: releasedAppsOf([RELEASED_APP_HASH]) });
    const a = await net.addAgent(new FakeEngine(), { enclave: await softwareEnclave(), posture: HARDENED_POSTURE });
    expect(net.gateway.directory.get(a.agentId)?.trust).toBe('attested');
    const { client, counts } = countingClient(net);
    await expect(client.complete(ask)).rejects.toThrow(/the agent is signed \(unreleased-app-hash\)/);
    expect(counts).toEqual({ seals: 0, jobs: 0 });
  });

  it('a production-configured agent refuses the software stand-in', async () => {
    await expect(
      Agent.create({
        gatewayUrl: 'ws://127.0.0.1:9/v1/agent',
        identity: await generateIdentity(),
        model: FAKE_MODEL,
        engine: new FakeEngine(),
        enclave: await softwareEnclave(),
        posture: HARDENED_POSTURE,
      }),
    ).rejects.toMatchObject({ code: 'NJ_CONFIG_INVALID', message: expect.stringMatching(/software enclave key is for tests only/) });
  });

  it('an agent whose posture fails claims no attestation, and names why', async () => {
    net = await startNet({ releasedApps: releasedAppsOf([RELEASED_APP_HASH]) });
    const a = await net.addAgent(new FakeEngine(), { enclave: await softwareEnclave(), posture: { ...HARDENED_POSTURE, sip: false } });
    expect(a.agent.attestation).toEqual(['sip-off']);
    expect(net.gateway.directory.get(a.agentId)).toMatchObject({ trust: 'signed', attestation: ['no-attestation', 'sip-off'] });
  });
});
