/**
 * `nightjar up` (what `npm start` runs): a whole local network in one process — a gateway,
 * one agent on a synthetic model written on first run — and how to chat through it.
 */
import { access } from 'node:fs/promises';
import path from 'node:path';
import { NightjarError, generateIdentity } from '../../shared/index.js';
import { Gateway, openSqliteStore } from '../../gateway/index.js';
import { Agent, writeSyntheticModel, type InferenceEngine } from '../../main/agent/index.js';
import { untilAborted, type CommandContext } from '../io.js';
import { loadModel } from './serve.js';
import { chatPageSites } from '../web-pages.js';

/** Flags of `nightjar up`. */
export interface UpFlags {
  port: number;
  dir: string;
  slots: number;
}

/** Runs `nightjar up`. */
export async function upCommand({ port, dir: dirFlag, slots }: UpFlags, ctx: CommandContext): Promise<number> {
  const { io } = ctx;
  const dir = path.resolve(io.cwd, dirFlag);
  const modelFile = path.join(dir, 'models', 'synthetic-tiny.gguf');
  const gatewayLog = ctx.logger('gateway');
  const agentLog = ctx.logger('agent');

  const exists = await access(modelFile).then(
    () => true,
    () => false,
  );
  if (!exists) {
    io.stdout.write(`Writing a synthetic model to ${path.relative(io.cwd, modelFile)} (first run only)…\n`);
    await writeSyntheticModel({ path: modelFile, shape: 'tiny' });
  }

  // An in-memory ledger with one operator, so the dashboard has someone to sign in as and the
  // agent something to be bound to; clients need no key. The catalog lists nothing, and this
  // gateway serves uncatalogued files free: that is how the synthetic model is offered.
  const store = await openSqliteStore({ path: ':memory:' });
  const now = ctx.clock.now();
  const operator = await store.accounts.createOperator({ name: 'local', now });
  const enrollment = await store.accounts.createEnrollmentToken({ operatorId: operator.id, now, ttlMs: 3600_000 });
  const sites = await chatPageSites(gatewayLog);
  let gateway: Gateway;
  try {
    gateway = await Gateway.start({ port, serveUncatalogued: true, allowAnonymous: true, store, sites, logger: gatewayLog });
  } catch (err) {
    await store.dispose();
    throw err;
  }
  let agent: Agent | undefined;
  let engine: InferenceEngine | undefined;
  try {
    const loaded = await loadModel(modelFile, { logger: agentLog, slots });
    engine = loaded.engine;
    const served = loaded.served;
    agent = await Agent.create({
      gatewayUrl: gateway.agentUrl,
      identity: await generateIdentity(),
      engine,
      model: served,
      logger: agentLog,
      enrollToken: enrollment.token,
    });
    agent.start();
    try {
      await gateway.agentServing(agent.agentId, { timeoutMs: 10_000, clock: ctx.clock, signal: ctx.signal });
    } catch (err) {
      if (err instanceof NightjarError && err.code === 'NJ_TIMEOUT') {
        throw new NightjarError('NJ_GATEWAY_UNREACHABLE', 'the agent did not register with the local gateway', { cause: err });
      }
      if (!ctx.signal.aborted) throw err;
    }
    const cmd = 'node bin/nightjar.js';
    const via = gateway.url === 'http://127.0.0.1:8787' ? '' : ` --gateway ${gateway.url}`;
    io.stdout.write(
      [
        '',
        'Nightjar is running locally.',
        `  gateway  ${gateway.url}   (agents connect to ${gateway.agentUrl})`,
        `  agent    ${agent.agentId.slice(0, 8)} serving ${served.id} with ${slots} slots`,
        `           (a synthetic model: random weights, so replies are noise — the path is real)`,
        '',
        'Chat through it from another terminal in this directory:',
        `  ${cmd} chat${via} --allow-synthetic "Hello, Nightjar"`,
        `  echo "Tell me a story" | ${cmd} chat${via} --allow-synthetic`,
        ...(sites.length ? [`or in a browser: ${gateway.url}/chat/ (tick "Show synthetic models")`] : []),
        '',
        `Operator dashboard: ${gateway.url}/dashboard/ — sign in with ${operator.token}`,
        '',
        'Every request is sealed for the agent before it leaves the client; the gateway relays',
        'ciphertext and checks the signed receipt. Press Ctrl-C to stop.',
        '',
      ].join('\n'),
    );
    await untilAborted(ctx.signal);
  } finally {
    await agent?.dispose();
    await engine?.dispose();
    await gateway.dispose();
    await store.dispose();
  }
  return 0;
}
