/**
 * The processes of the hostile area, each on its own event loop: `node hostile-server.js gateway`
 * runs a real gateway with its default limits on an in-memory store with one API key (so a
 * request without a key is refused, as on any production gateway);
 * `node hostile-server.js agent <agentUrl> <modelPath> <modelId>` runs a real agent on the real
 * engine with a synthetic model. Each tells its parent over IPC when it is ready, and stops
 * on `{ type: 'close' }`.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Agent, defaultThreads, loadEngine, sha256File } from '../src/main/agent/index.js';
import { Gateway, openSqliteStore } from '../src/gateway/index.js';
import { generateIdentity } from '../src/shared/index.js';

/** Messages to the parent. */
export type HostileServerMessage =
  | { type: 'ready'; url: string; agentUrl: string; apiKey: string }
  | { type: 'ready'; agentId: string }
  /** The gateway's event-loop delay since the last `loop` request (ms). */
  | { type: 'loop'; p50: number; p99: number; max: number };

/** A message from the parent: stop, or (gateway) tell the event-loop delay since the last ask and start afresh. */
export type HostileServerRequest = { type: 'close' } | { type: 'loop' };

async function gateway(): Promise<() => Promise<void>> {
  // Default limits: the handshake timeout (10 s), handshake slots (128, 16 per address), the
  // unauthenticated rate limit and the body limits are the ones under test.
  const store = await openSqliteStore({ path: ':memory:' });
  const key = await store.accounts.createApiKey({ name: 'bench', now: Date.now() });
  const g = await Gateway.start({ port: 0, allowSynthetic: true, shutdownGraceMs: 0, store });
  const delay = monitorEventLoopDelay({ resolution: 5 });
  delay.enable();
  process.on('message', (m: HostileServerRequest) => {
    if (m.type !== 'loop') return;
    const ms = (ns: number): number => ns / 1e6;
    process.send!({
      type: 'loop',
      p50: ms(delay.percentile(50)),
      p99: ms(delay.percentile(99)),
      max: ms(delay.max),
    } satisfies HostileServerMessage);
    delay.reset();
  });
  process.send!({ type: 'ready', url: g.url, agentUrl: g.agentUrl, apiKey: key.key } satisfies HostileServerMessage);
  return async () => {
    await g.dispose();
    await store.dispose();
  };
}

async function agent(agentUrl: string, modelPath: string, modelId: string): Promise<() => Promise<void>> {
  const engine = await loadEngine({ modelPath, threads: defaultThreads(), slots: 2, contextLength: 1024, batchSize: 512 });
  const a = await Agent.create({
    gatewayUrl: agentUrl,
    identity: await generateIdentity(),
    engine,
    model: { id: modelId, sha256: await sha256File(modelPath), synthetic: true, contextLength: engine.model.contextLength },
    stopGraceMs: 1000,
  });
  a.start();
  process.send!({ type: 'ready', agentId: a.agentId } satisfies HostileServerMessage);
  return async () => {
    await a.dispose();
    await engine.dispose();
  };
}

async function main(): Promise<void> {
  const [kind, ...args] = process.argv.slice(2);
  const close = kind === 'gateway' ? await gateway() : await agent(args[0]!, args[1]!, args[2]!);
  process.on('message', (m: HostileServerRequest) => {
    if (m.type !== 'close') return;
    void close().finally(() => process.exit(0));
  });
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
  process.exit(1);
});
