/**
 * A bundle an agent sends after the handshake (a rotated box key, a renewed validity): the
 * gateway verifies it, announces it on the directory's onAgentChanged and hands it to clients
 * from then on; one naming another identity ends the session.
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  CLOSE_CODES,
  PROTOCOL_VERSION,
  createBundle,
  generateBoxKey,
  generateIdentity,
  nextEvent,
  systemClock,
  type IdentityKeyPair,
  type SignedBundle,
} from '../../src/shared/index.js';
import type { Gateway } from '../../src/gateway/index.js';
import { perTestFetch } from '../helpers/http-client.js';
import { FAKE_MODEL, agentGone, agentServing, startTestGateway } from '../helpers/network.js';
import { RawAgent } from './support/raw-agent.js';

const http = perTestFetch();
let gateway: Gateway | undefined;
const raws: RawAgent[] = [];
afterEach(async () => {
  await Promise.all(raws.splice(0).map((r) => r.close()));
  await gateway?.dispose();
  gateway = undefined;
});

/** A fresh bundle for `identity`, under a new box key. */
async function freshBundle(identity: IdentityKeyPair): Promise<SignedBundle> {
  return createBundle({
    identity,
    boxKey: await generateBoxKey(),
    models: [FAKE_MODEL],
    slots: 2,
    platform: { os: 'test', osVersion: '1', arch: 'x64', chip: 'test', memoryBytes: 1 },
    posture: { sip: null, hardenedRuntime: null, debuggerDenied: null, secureEnclave: false, appVersion: 'raw', appHash: null },
    now: Date.now(),
  });
}

async function connected(gw: Gateway): Promise<RawAgent> {
  const raw = await RawAgent.connect({ url: gw.agentUrl, model: FAKE_MODEL });
  raws.push(raw);
  await agentServing(gw, raw.agentId, 2000);
  return raw;
}

describe('a rotated bundle', () => {
  // Fails if the session stops announcing a new bundle: nothing else fires on this idle agent
  // (no heartbeat, no job, no challenge), so the awaited event would time out.
  it('is announced on onAgentChanged and handed to clients from then on', async () => {
    const gw = (gateway = await startTestGateway());
    const raw = await connected(gw);
    const next = await freshBundle(raw.identity);
    expect(next.bundle.boxKeyId).not.toBe(gw.directory.get(raw.agentId)!.bundle.bundle.boxKeyId);
    const announced = nextEvent(gw.directory.onAgentChanged, (s) => s.bundle.bundle.boxKeyId === next.bundle.boxKeyId, {
      clock: systemClock,
      timeoutMs: 2000,
      what: 'the new bundle',
    });
    raw.send({ v: PROTOCOL_VERSION, type: 'bundle', bundle: next });
    expect((await announced).agentId).toBe(raw.agentId);

    const res = await http.fetch(`${gw.url}/v1/candidates?model=${FAKE_MODEL.id}`);
    const body = (await res.json()) as { candidates: { bundle: SignedBundle }[] };
    expect(body.candidates.map((c) => c.bundle)).toEqual([next]);
  });

  it('naming another identity ends the session, and the old bundle is never replaced', async () => {
    const gw = (gateway = await startTestGateway());
    const raw = await connected(gw);
    const old = gw.directory.get(raw.agentId)!.bundle.bundle.boxKeyId;
    const changes: string[] = [];
    gw.directory.onAgentChanged((s) => changes.push(s.bundle.bundle.boxKeyId));
    raw.send({ v: PROTOCOL_VERSION, type: 'bundle', bundle: await freshBundle(await generateIdentity()) });
    expect(await raw.closed).toMatchObject({ code: CLOSE_CODES.badFrame });
    await agentGone(gw, raw.agentId, 2000);
    expect(changes.every((id) => id === old)).toBe(true);
  });
});
