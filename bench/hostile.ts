/**
 * Hostile load (issue 17): a real gateway in a child process (default limits, keys required) and
 * a real agent on the tiny synthetic model in another, so neither shares an event loop with the
 * attackers or with the measuring code here. A chat's time is measured quiet, then while
 * (a) eight 5.6 MB deeply nested JSON bodies without a key are kept in flight at once, and
 * (b) 128 silent WebSocket upgrades from 8 loopback addresses hold every handshake slot; and the
 * time an honest agent takes to be admitted while (b) holds the slots.
 */
import { fork, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { NightjarClient, nodeFetch } from '../src/client/index.js';
import { benchAgentKeys } from './identities.js';
import type { HostileServerMessage, HostileServerRequest } from './hostile-server.js';
import { ensureModel } from './models.js';
import { FakeAgent } from './relay-peers.js';
import { target, type AreaReport, type BenchContext, type Target } from './report.js';
import { fmt, fmtRatio, median, now, sleep } from './stats.js';

/** The documented handshake timeout (the gateway's default). */
const HANDSHAKE_TIMEOUT_MS = 10_000;
/** Attacker addresses (Linux routes all of 127/8 to loopback) and upgrades from each: 8 × 16 = the global cap, 128. */
const ATTACK_ADDRESSES = Array.from({ length: 8 }, (_, i) => `127.0.0.${i + 2}`);
const UPGRADES_PER_ADDRESS = 16;
/** The body flood comes from an address of its own too, as an attacker's would. */
const FLOOD_ADDRESS = '127.0.0.20';
const BODY_BYTES = 5.6e6;
const FLOOD_IN_FLIGHT = 8;

/** A child process of hostile-server.js and its ready message. */
class Child {
  private constructor(
    private readonly child: ChildProcess,
    readonly ready: HostileServerMessage,
  ) {}

  static start(args: readonly string[]): Promise<Child> {
    const child = fork(fileURLToPath(new URL('./hostile-server.js', import.meta.url)), [...args], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    return new Promise((resolve, reject) => {
      child.once('message', (m: HostileServerMessage) => resolve(new Child(child, m)));
      child.once('exit', (code) => reject(new Error(`hostile-server ${args[0]} exited (code ${code})`)));
    });
  }

  /** The gateway's event-loop delay since the last call (gateway process only). */
  loop(): Promise<Extract<HostileServerMessage, { type: 'loop' }>> {
    return new Promise((resolve) => {
      const listener = (m: HostileServerMessage): void => {
        if (m.type !== 'loop') return;
        this.child.off('message', listener);
        resolve(m);
      };
      this.child.on('message', listener);
      this.child.send({ type: 'loop' } satisfies HostileServerRequest);
    });
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.send({ type: 'close' } satisfies HostileServerRequest);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }
}

/** Wall times of `n` chats, one after another, and how many failed; `before` runs at each chat's start. */
async function chats(client: NightjarClient, modelId: string, n: number, before?: () => void): Promise<{ ms: number[]; failed: string[] }> {
  const ms: number[] = [];
  const failed: string[] = [];
  for (let i = 0; i < n; i++) {
    before?.();
    const t = now();
    try {
      const r = await client.complete({ model: modelId, messages: [{ role: 'user', content: 'Tell me about nightjars.' }], maxTokens: 32 });
      if (r.text.length === 0) throw new Error('empty reply');
      ms.push(now() - t);
    } catch (err) {
      failed.push(err instanceof Error ? err.message : String(err));
    }
  }
  return { ms, failed };
}

/** One POST of the nested body without a key; resolves with the status and how long the answer took. */
function postNested(url: string, body: Buffer): Promise<{ status: number; ms: number }> {
  const { hostname, port } = new URL(url);
  const t = now();
  return new Promise((resolve) => {
    const req = http.request(
      {
        host: hostname,
        port: Number(port),
        path: '/v1/jobs',
        method: 'POST',
        localAddress: FLOOD_ADDRESS,
        agent: false,
        headers: { 'content-type': 'application/json', 'content-length': body.length },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, ms: now() - t }));
        res.on('error', () => resolve({ status: res.statusCode ?? 0, ms: now() - t }));
      },
    );
    // The gateway answers and may close before the whole body is written.
    req.on('error', () => resolve({ status: -1, ms: now() - t }));
    req.end(body);
  });
}

/** The attack body: 5.6 MB of nested brackets. */
function nestedBody(): Buffer {
  const depth = BODY_BYTES / 2;
  return Buffer.from('['.repeat(depth) + ']'.repeat(depth));
}

/** Keeps FLOOD_IN_FLIGHT nested bodies in flight until stopped. */
function flood(url: string, body: Buffer): { stop(): Promise<{ status: number; ms: number }[]> } {
  let running = true;
  const results: { status: number; ms: number }[] = [];
  const loops = Array.from({ length: FLOOD_IN_FLIGHT }, async () => {
    while (running) results.push(await postNested(url, body));
  });
  return {
    async stop() {
      running = false;
      await Promise.all(loops);
      return results;
    },
  };
}

/** A socket that completes the WebSocket upgrade from `localAddress` and then says nothing. */
function silentUpgrade(
  agentUrl: string,
  localAddress: string,
  held: net.Socket[],
): Promise<{ status: number; openedAt: number; closed: Promise<number> }> {
  const { hostname, port } = new URL(agentUrl);
  return new Promise((resolve) => {
    const socket = net.connect({ host: hostname, port: Number(port), localAddress });
    held.push(socket);
    const openedAt = now();
    const closed = new Promise<number>((r) => socket.once('close', () => r(now())));
    let head = '';
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => {
      if (head.includes('\r\n\r\n')) return;
      head += chunk.toString('latin1');
      if (head.includes('\r\n\r\n')) resolve({ status: Number(head.split(' ')[1]), openedAt, closed });
    });
    socket.once('close', () => resolve({ status: 0, openedAt, closed }));
    socket.write(
      'GET /v1/agent HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
    );
  });
}

/**
 * An honest agent's handshake, tried again after each refusal when the refusal's retryAfterMs
 * says (a second, or sooner when the oldest unfinished handshake times out sooner), until admitted.
 */
async function admitHonestAgent(agentUrl: string, limitMs: number): Promise<{ ms: number; attempts: number } | null> {
  const keys = await benchAgentKeys(2);
  const t = now();
  for (let attempts = 1; now() - t < limitMs; attempts++) {
    const agent = new FakeAgent(keys, 2);
    try {
      await agent.connect(agentUrl);
      const ms = now() - t;
      agent.close();
      return { ms, attempts };
    } catch (err) {
      agent.close();
      const hint = (err as { retryAfterMs?: unknown }).retryAfterMs;
      await sleep(typeof hint === 'number' ? hint : 1000);
    }
  }
  return null;
}

function count(statuses: readonly number[]): string {
  const by = new Map<number, number>();
  for (const s of statuses) by.set(s, (by.get(s) ?? 0) + 1);
  return [...by].map(([s, n]) => `${n} × ${s === -1 ? 'reset' : s}`).join(', ');
}

/** Runs the hostile area. */
export async function run(ctx: BenchContext): Promise<AreaReport> {
  const rounds = ctx.quick ? 5 : 15;
  const tiny = await ensureModel(ctx.modelsDir, 'tiny', ctx.log);
  const gateway = await Child.start(['gateway']);
  const ready = gateway.ready as Extract<HostileServerMessage, { apiKey: string }>;
  const agent = await Child.start(['agent', ready.agentUrl, tiny.path, tiny.modelId]);
  const held: net.Socket[] = [];
  try {
    const client = new NightjarClient({
      gatewayUrl: ready.url,
      apiKey: ready.apiKey,
      trust: { allowSynthetic: true },
      candidates: 1,
      fetch: nodeFetch,
    });
    const listed = async (): Promise<boolean> => {
      const res = await nodeFetch(`${ready.url}/v1/models`, { headers: { authorization: `Bearer ${ready.apiKey}` } });
      const body = (await res.json()) as { models?: { id: string }[] };
      return (body.models ?? []).some((m) => m.id === tiny.modelId);
    };
    const deadline = now() + 30_000;
    while (!(await listed())) {
      if (now() > deadline) throw new Error('the agent never served');
      await sleep(100);
    }
    await chats(client, tiny.modelId, 3); // warm-up
    ctx.log('quiet chats');
    await gateway.loop();
    const quietBefore = await chats(client, tiny.modelId, rounds);
    const loopQuiet = await gateway.loop();
    const body = nestedBody();

    ctx.log(`chats, each started with ${FLOOD_IN_FLIGHT} nested 5.6 MB bodies without a key sent at once`);
    const burstAnswers: Promise<{ status: number; ms: number }>[] = [];
    const underBurst = await chats(client, tiny.modelId, rounds, () => {
      for (let i = 0; i < FLOOD_IN_FLIGHT; i++) burstAnswers.push(postNested(ready.url, body));
    });
    const burstResults = await Promise.all(burstAnswers);
    const loopBurst = await gateway.loop();
    ctx.log(`chats while ${FLOOD_IN_FLIGHT} nested bodies are kept in flight`);
    const flooding = flood(ready.url, body);
    await sleep(200);
    const underFlood = await chats(client, tiny.modelId, rounds);
    const floodResults = await flooding.stop();
    const loopFlood = await gateway.loop();
    await sleep(1000);
    const quietAfter = await chats(client, tiny.modelId, rounds);
    const quiet = { ms: [...quietBefore.ms, ...quietAfter.ms], failed: [...quietBefore.failed, ...quietAfter.failed] };

    ctx.log(`${ATTACK_ADDRESSES.length * UPGRADES_PER_ADDRESS} silent upgrades from ${ATTACK_ADDRESSES.length} addresses`);
    const upgrades = await Promise.all(
      ATTACK_ADDRESSES.flatMap((address) =>
        Array.from({ length: UPGRADES_PER_ADDRESS }, () => silentUpgrade(ready.agentUrl, address, held)),
      ),
    );
    const heldAt = now();
    await gateway.loop();
    const underSilence = await chats(client, tiny.modelId, rounds);
    const loopSilence = await gateway.loop();
    ctx.log('an honest agent, while the silent upgrades hold the slots');
    const honest = await admitHonestAgent(ready.agentUrl, 3 * HANDSHAKE_TIMEOUT_MS);
    const closedAt = await Promise.race([Promise.all(upgrades.map((u) => u.closed)), sleep(60_000).then(() => null)]);
    const slotHeldMs = closedAt ? upgrades.map((u, i) => closedAt[i]! - u.openedAt) : [];

    const qm = median(quiet.ms);
    const bm = median(underBurst.ms);
    const fm = median(underFlood.ms);
    const sm = median(underSilence.ms);
    const heldBeforeHonest = now() - heldAt;
    const targets: Target[] = [
      target(
        'chat started with 8 nested 5.6 MB bodies without a key sent at once, vs quiet (median)',
        `${fmtRatio(bm / qm)} (${fmt(bm)} ms vs ${fmt(qm)} ms)`,
        '≤ 2×',
        bm / qm <= 2 && underBurst.failed.length === 0,
      ),
      target(
        'chat while 128 silent upgrades hold every handshake slot, vs quiet (median)',
        `${fmtRatio(sm / qm)} (${fmt(sm)} ms vs ${fmt(qm)} ms)`,
        '≤ 2×',
        sm / qm <= 2 && underSilence.failed.length === 0,
      ),
      target(
        'honest agent admitted while the silent upgrades hold the slots (from its first attempt)',
        honest ? `${fmt(honest.ms / 1000)} s, attempt ${honest.attempts}` : `not within ${(3 * HANDSHAKE_TIMEOUT_MS) / 1000} s`,
        `≤ ${HANDSHAKE_TIMEOUT_MS / 1000} s (the handshake timeout)`,
        honest !== null && honest.ms <= HANDSHAKE_TIMEOUT_MS,
      ),
    ];
    const row = (what: string, r: { ms: number[]; failed: string[] }, loop: { p50: number; p99: number; max: number }): string[] => [
      what,
      String(r.ms.length),
      String(r.failed.length),
      fmt(median(r.ms)),
      fmt(Math.max(...r.ms)),
      `${fmt(loop.p50)} / ${fmt(loop.p99)} / ${fmt(loop.max)}`,
    ];
    return {
      title: 'Hostile load: cheap refusals and handshake slots',
      method: [
        'A real gateway (default limits: keys required, handshake timeout 10 s, 128 handshake slots, 16 per address) in one child ' +
          'process and a real agent on the tiny synthetic model in another; the attackers and the chats run in the parent.',
        `Each phase runs ${rounds} chats of 32 tokens one after another through the SDK with a valid key.`,
        `(a): ${FLOOD_IN_FLIGHT} POSTs of a 5.6 MB body of nested brackets to /v1/jobs without a key, from ${FLOOD_ADDRESS}, sent ` +
          "at once at each chat's start (the target's row). (a′, no target): the same eight kept in flight for the whole phase, " +
          'each sent again as soon as it is answered.',
        'Quiet chats run before and after the attacks; their median is of both runs. The gateway process measures its own ' +
          'event-loop delay (perf_hooks.monitorEventLoopDelay, 5 ms resolution) over each phase: how long it could not run.',
        `(b): ${ATTACK_ADDRESSES.length} × ${UPGRADES_PER_ADDRESS} raw sockets from ${ATTACK_ADDRESSES[0]}–${ATTACK_ADDRESSES.at(-1)} ` +
          'that complete the WebSocket upgrade and then send nothing and answer nothing (not refilled when dropped); then an honest ' +
          "agent (a real handshake) tries, and after a refusal tries again after the refusal's retryAfterMs (1 s, or less when a " +
          'slot frees sooner).',
      ],
      tables: [
        {
          title: 'Chat wall time (ms)',
          columns: ['phase', 'chats', 'failed', 'median', 'max', "gateway's event-loop delay p50 / p99 / max (ms)"],
          rows: [
            row('quiet (before and after; the delay: before)', quiet, loopQuiet),
            row('(a) 8 nested bodies at each chat start', underBurst, loopBurst),
            row('(a′) 8 nested bodies kept in flight', underFlood, loopFlood),
            row('(b) silent upgrades held', underSilence, loopSilence),
          ],
        },
        {
          title: 'The attacks as the gateway answered them',
          columns: ['what', 'figure'],
          rows: [
            ['(a) nested bodies sent; answers', `${burstResults.length}; ${count(burstResults.map((r) => r.status))}`],
            [
              '(a) answer time, median / max (ms)',
              `${fmt(median(burstResults.map((r) => r.ms)))} / ${fmt(Math.max(...burstResults.map((r) => r.ms)))}`,
            ],
            ['(a′) nested bodies sent; answers', `${floodResults.length}; ${count(floodResults.map((r) => r.status))}`],
            [
              '(a′) answer time, median / max (ms)',
              `${fmt(median(floodResults.map((r) => r.ms)))} / ${fmt(Math.max(...floodResults.map((r) => r.ms)))}`,
            ],
            ['(b) upgrades answered', count(upgrades.map((u) => u.status))],
            [
              '(b) how long the gateway held a silent upgrade, min / max (s)',
              slotHeldMs.length ? `${fmt(Math.min(...slotHeldMs) / 1000)} / ${fmt(Math.max(...slotHeldMs) / 1000)}` : 'not dropped in 60 s',
            ],
            ['(b) slots held when the honest agent began (s after the last upgrade)', fmt((heldBeforeHonest - (honest?.ms ?? 0)) / 1000)],
          ],
        },
      ],
      targets,
      notes: [
        `(a′), no target: chats took ${fmtRatio(fm / qm)} the quiet median (${fmt(fm)} ms) while the flood kept 8 bodies in flight.`,
        ...[...new Set([...quiet.failed, ...underBurst.failed, ...underFlood.failed, ...underSilence.failed])].map(
          (f) => `a chat failed: ${f}`,
        ),
        'Attackers that refill their silent upgrades as soon as they are dropped are not measured here: the global cap on ' +
          'unfinished handshakes is then theirs again within milliseconds of each timeout.',
      ],
      data: {
        loop: { quiet: loopQuiet, burst: loopBurst, flood: loopFlood, silence: loopSilence },
        quiet,
        underBurst,
        underFlood,
        underSilence,
        burst: burstResults,
        flood: floodResults,
        upgrades: upgrades.map((u) => u.status),
        slotHeldMs,
        honest,
      },
    };
  } finally {
    for (const s of held) s.destroy();
    await agent.close();
    await gateway.close();
  }
}
