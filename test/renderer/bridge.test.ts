/**
 * The renderer's two transports as one bridge: the preload API's results unwrapped into answers
 * and NightjarErrors; in a browser, the ticket taken out of the URL before any request, redeemed
 * for the token, and the token then sent as a bearer header (never in a URL).
 */
import { describe, expect, it } from 'vitest';
import { bridgeFromPreload, connectFromLocation, ticketFromHash, type PageLocation } from '../../src/renderer/bridge.js';
import { NightjarError, type PreloadApi } from '../../src/shared/index.js';

describe('the preload bridge', () => {
  it('unwraps answers and turns errors back into NightjarErrors', async () => {
    const api = {
      status: async () => ({ ok: true, value: { state: 'serving' } }),
      pause: async () => ({ ok: false, error: { code: 'NJ_IPC_FORBIDDEN', message: 'Refused pause: the caller is a subframe.' } }),
      resume: async () => ({ ok: false, error: { code: 'NJ_SOMETHING_NEW', message: 'from a newer app' } }),
      onEvent: () => () => undefined,
    } as unknown as PreloadApi;
    const bridge = bridgeFromPreload(api);
    expect(await bridge.status({})).toEqual({ state: 'serving' });
    const err = await bridge.pause({}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NightjarError);
    expect(err).toMatchObject({ code: 'NJ_IPC_FORBIDDEN', message: 'Refused pause: the caller is a subframe.' });
    await expect(bridge.resume({})).rejects.toMatchObject({ code: 'NJ_FRAME_INVALID' });
  });
});

describe('the browser bridge', () => {
  const TICKET = 'T'.repeat(43);

  function location(hash: string): PageLocation & { hashes: string[] } {
    const hashes: string[] = [];
    return { origin: 'http://127.0.0.1:4000', hash, hashes, replaceHash: (h) => void hashes.push(h) };
  }

  it('reads a ticket only from a well-formed fragment', () => {
    expect(ticketFromHash(`#ticket=${TICKET}`)).toBe(TICKET);
    expect(ticketFromHash(`ticket=${TICKET}&x=1`)).toBe(TICKET);
    for (const bad of ['', '#', '#/status', '#ticket=short', `#ticket=${TICKET}<script>`]) expect(ticketFromHash(bad), bad).toBeNull();
  });

  it('takes the ticket out of the URL before redeeming it, then sends the token as a bearer header', async () => {
    const requests: { url: string; headers: Record<string, string>; body: string | undefined; hashesSoFar: number }[] = [];
    const loc = location(`#ticket=${TICKET}`);
    const fetchImpl = (async (input: URL | string, init?: RequestInit) => {
      requests.push({
        url: String(input),
        headers: { ...(init?.headers as Record<string, string>) },
        body: init?.body as string | undefined,
        hashesSoFar: loc.hashes.length,
      });
      if (String(input).endsWith('/v1/dashboard/session')) return new Response(JSON.stringify({ token: 'secret-token' }), { status: 200 });
      return new Response(JSON.stringify({ error: { code: 'NJ_NOT_LINKED', message: 'not linked' } }), { status: 409 });
    }) as typeof fetch;
    const bridge = await connectFromLocation(loc, fetchImpl);
    expect(loc.hashes).toEqual(['']);
    expect(requests[0]).toMatchObject({
      url: 'http://127.0.0.1:4000/v1/dashboard/session',
      body: JSON.stringify({ ticket: TICKET }),
      hashesSoFar: 1,
    });
    await expect(bridge.status({})).rejects.toMatchObject({ code: 'NJ_NOT_LINKED' });
    expect(requests[1]).toMatchObject({ url: 'http://127.0.0.1:4000/v1/status', headers: { authorization: 'Bearer secret-token' } });
    expect(requests.every((r) => !r.url.includes('secret-token') && !r.url.includes(TICKET))).toBe(true);
  });

  it('without a ticket (or after a reload) says how to open the dashboard, and asks the agent nothing', async () => {
    const loc = location('#/status');
    let asked = 0;
    const err = await connectFromLocation(loc, (async () => {
      asked++;
      return new Response('{}');
    }) as typeof fetch).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'NJ_DASHBOARD_TICKET', hint: expect.stringContaining('nightjar dashboard') });
    expect(asked).toBe(0);
    expect(loc.hashes).toEqual([]);
  });

  it('a refused ticket is the agent’s error', async () => {
    const refused = (async () =>
      new Response(
        JSON.stringify({ error: { code: 'NJ_DASHBOARD_TICKET', message: 'This dashboard link was already used or has expired.' } }),
        { status: 401 },
      )) as typeof fetch;
    await expect(connectFromLocation(location(`#ticket=${TICKET}`), refused)).rejects.toMatchObject({
      code: 'NJ_DASHBOARD_TICKET',
      message: 'This dashboard link was already used or has expired.',
    });
    const down = (async () => {
      throw new TypeError('fetch failed');
    }) as typeof fetch;
    await expect(connectFromLocation(location(`#ticket=${TICKET}`), down)).rejects.toMatchObject({ code: 'NJ_AGENT_NOT_RUNNING' });
  });
});
