/**
 * `nightjar up` (what `npm start` runs): a whole local network in one process — a gateway,
 * one agent on a synthetic model written on first run — and how to chat through it.
 */
import { access } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { NightjarError, generateIdentity, nextEvent, systemClock, type Logger } from '../../shared/index.js';
import { openSqliteStore, startGateway, type Gateway } from '../../gateway/index.js';
import { Agent, writeSyntheticModel, type InferenceEngine } from '../agent/index.js';
import { untilAborted, type CliIo } from './io.js';
import { loadModel } from './serve.js';
import { chatPageSites } from './web-pages.js';

/** Usage text of `nightjar up`. */
export const UP_USAGE = `Usage: nightjar up [options]

Starts a local Nightjar network: a gateway and one agent serving a synthetic model (random
weights, written on first run), then prints how to chat through it. Ctrl-C stops everything.

Options:
  --port N             gateway port (default 8787)
  --dir DIR            where the synthetic model is kept (default .nightjar-dev)
  --slots N            jobs the agent serves at once (default 4)
  --log-level LEVEL    debug, info, warn or error (default info)
  -h, --help           show this help
`;

/** Runs `nightjar up`. */
export async function upCommand(argv: string[], io: CliIo, logger: (level: string | undefined, name: string) => Logger): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      port: { type: 'string' },
      dir: { type: 'string' },
      slots: { type: 'string' },
      'log-level': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    io.stdout.write(UP_USAGE);
    return 0;
  }
  const port = values.port === undefined ? 8787 : Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new NightjarError('NJ_USAGE', `--port must be 0–65535, not "${values.port}"`);
  const slots = values.slots === undefined ? 4 : Number(values.slots);
  if (!Number.isInteger(slots) || slots < 1) throw new NightjarError('NJ_USAGE', `--slots must be a positive integer`);
  const dir = path.resolve(io.cwd, values.dir ?? '.nightjar-dev');
  const modelFile = path.join(dir, 'models', 'synthetic-tiny.gguf');
  const gatewayLog = logger(values['log-level'], 'gateway');
  const agentLog = logger(values['log-level'], 'agent');

  const exists = await access(modelFile).then(
    () => true,
    () => false,
  );
  if (!exists) {
    io.stdout.write(`Writing a synthetic model to ${path.relative(io.cwd, modelFile)} (first run only)…\n`);
    await writeSyntheticModel({ path: modelFile, shape: 'tiny' });
  }

  // An in-memory ledger with one operator, so the dashboard has someone to sign in as and the
  // agent something to be bound to; clients need no key (synthetic models are free).
  const store = await openSqliteStore({ path: ':memory:' });
  const now = Date.now();
  const operator = await store.accounts.createOperator({ name: 'local', now });
  const enrollment = await store.accounts.createEnrollmentToken({ operatorId: operator.id, now, ttlMs: 3600_000 });
  const sites = await chatPageSites(gatewayLog);
  let gateway: Gateway;
  try {
    gateway = await startGateway({ port, allowSynthetic: true, allowAnonymous: true, store, sites, logger: gatewayLog });
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
    // Ready once the gateway welcomed it (its first heartbeat, serving, went out just before).
    const registered = nextEvent(agent.onLink, (s) => s === 'connected', { clock: systemClock, timeoutMs: 10_000, signal: io.signal });
    agent.start();
    await registered.catch((err: unknown) => {
      if (io.signal.aborted) return;
      throw new NightjarError('NJ_GATEWAY_UNREACHABLE', 'the agent did not register with the local gateway', { cause: err });
    });
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
    await untilAborted(io.signal);
  } finally {
    await agent?.dispose();
    await engine?.dispose();
    await gateway.close();
    await store.dispose();
  }
  return 0;
}
