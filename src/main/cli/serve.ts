/**
 * `nightjar serve`: the headless agent as an owner runs it (AgentService: policy, models, records,
 * control API), with its identity in the OS keychain.
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { NightjarError, modelIdSchema, type Logger } from '../../shared/index.js';
import {
  AgentService,
  ModelStore,
  PlaintextFileSecretStore,
  loadEngine,
  loadOrCreateIdentity,
  modelChoice,
  sha256File,
  type InferenceEngine,
  type ModelChoice,
  type ServedModel,
} from '../agent/index.js';
import { cliConfig, cliPaths, secretStore } from './agent-context.js';
import { locateDashboard, presentDashboard } from './dashboard.js';
import { untilAborted, type CliIo } from './io.js';

/** Usage text of `nightjar serve`. */
export const SERVE_USAGE = `Usage: nightjar serve [options]

Runs the provider agent headless, for months: it serves the selected model through the gateway
while this machine is idle, on AC power and cool enough (the policy in config.json), stops taking
jobs the moment the owner is back, and unloads the model after a delay. Ctrl-C drains running
jobs, says goodbye and stops.

Options:
  --gateway URL        gateway address, http(s):// or ws(s):// (env NIGHTJAR_GATEWAY, or
                       gateway.url in config.json)
  --enroll-token TOKEN link this agent to an operator account on the gateway, once (env
                       NIGHTJAR_ENROLL_TOKEN, or gateway.enrollToken in config.json)
  --model ID|FILE      serve this installed model, or this GGUF file, instead of the selected one
  --model-id ID        model id to publish a --model FILE under (default: the file name)
  --slots N            jobs served at once, one sequence each (default: model.slots, 4)
  --context N          context length per sequence, in tokens (default min(model, 4096))
  --threads N          CPU threads (default: the cores available less one)
  --key-file FILE      keep the identity key in this plaintext file (mode 0600) instead of the
                       OS keychain; only for machines without a keychain
  --no-control         do not serve the control API (nightjar status/pause/resume need it)
  --dashboard          serve the dashboard on the control API's address and open it in your
                       browser (again later with \`nightjar dashboard\`)
  --log-level LEVEL    debug, info, warn or error (default info)
  -h, --help           show this help

Files: config.json, the models and the receipt log live in the platform's place (run
\`nightjar doctor\` to see where), or under NIGHTJAR_HOME when it is set.
`;

/** The agent WebSocket URL for a gateway address given as http(s):// or ws(s)://. */
export function agentSocketUrl(address: string): string {
  let url: URL;
  try {
    url = new URL(address);
  } catch {
    throw new NightjarError('NJ_USAGE', `--gateway must be a URL such as http://127.0.0.1:8787, not "${address}"`);
  }
  if (url.protocol === 'http:') url.protocol = 'ws:';
  else if (url.protocol === 'https:') url.protocol = 'wss:';
  else if (url.protocol !== 'ws:' && url.protocol !== 'wss:') {
    throw new NightjarError('NJ_USAGE', `--gateway must use http, https, ws or wss, not ${url.protocol}`);
  }
  if (url.pathname === '/' || url.pathname === '') url.pathname = '/v1/agent';
  return url.toString();
}

/** The model id a file is published under when none is given: its name, sanitised. */
export function modelIdForFile(file: string): string {
  const id = path
    .basename(file)
    .replace(/\.gguf$/i, '')
    .toLowerCase()
    .replace(/[^a-z0-9._:/-]+/g, '-')
    .replace(/^[^a-z0-9]+/, '');
  const parsed = modelIdSchema.safeParse(id);
  if (!parsed.success) throw new NightjarError('NJ_USAGE', `cannot make a model id from "${path.basename(file)}"; pass --model-id`);
  return parsed.data;
}

/** A loaded model ready to serve. */
export interface LoadedModel {
  engine: InferenceEngine;
  served: ServedModel;
}

/** Hashes and loads `file`, logging progress. */
export async function loadModel(
  file: string,
  options: { modelId?: string; slots?: number; contextLength?: number; threads?: number; logger: Logger },
): Promise<LoadedModel> {
  const log = options.logger;
  const id = options.modelId ?? modelIdForFile(file);
  log.info('hashing model file', { file: path.basename(file) });
  const sha256 = await sha256File(file);
  const engine = await loadEngine({
    modelPath: file,
    logger: log,
    ...(options.slots === undefined ? {} : { slots: options.slots }),
    ...(options.contextLength === undefined ? {} : { contextLength: options.contextLength }),
    ...(options.threads === undefined ? {} : { threads: options.threads }),
  });
  return { engine, served: { id, sha256, synthetic: engine.model.synthetic, contextLength: engine.model.contextLength } };
}

function intOption(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new NightjarError('NJ_USAGE', `--${name} must be a positive integer, not "${value}"`);
  return n;
}

/** Runs `nightjar serve`. */
export async function serveCommand(argv: string[], io: CliIo, logger: (level: string | undefined) => Logger): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      gateway: { type: 'string' },
      'enroll-token': { type: 'string' },
      model: { type: 'string' },
      'model-id': { type: 'string' },
      slots: { type: 'string' },
      context: { type: 'string' },
      threads: { type: 'string' },
      'key-file': { type: 'string' },
      'no-control': { type: 'boolean' },
      dashboard: { type: 'boolean' },
      'log-level': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    io.stdout.write(SERVE_USAGE);
    return 0;
  }
  const paths = cliPaths(io);
  const config = await cliConfig(paths);
  const gateway = values.gateway ?? io.env.NIGHTJAR_GATEWAY ?? config.gateway.url;
  if (!gateway) throw new NightjarError('NJ_USAGE', `give the gateway address with --gateway URL (or gateway.url in ${paths.configFile})`);
  const gatewayUrl = agentSocketUrl(gateway);
  const enrollToken = values['enroll-token'] ?? io.env.NIGHTJAR_ENROLL_TOKEN;
  if (enrollToken !== undefined) config.gateway = { ...config.gateway, enrollToken };
  const log = logger(values['log-level']);
  const slots = intOption(values.slots, 'slots');
  const contextLength = intOption(values.context, 'context');
  const threads = intOption(values.threads, 'threads');
  config.model = {
    ...config.model,
    ...(slots === undefined ? {} : { slots }),
    ...(contextLength === undefined ? {} : { contextLength }),
    ...(threads === undefined ? {} : { threads }),
  };

  const secrets = secretStore(io, paths, config, values['key-file']);
  const { identity, created } = await loadOrCreateIdentity(secrets);
  if (created) io.stdout.write(`Created the agent identity ${identity.agentId} in ${secrets.description}.\n`);

  let model: ModelChoice | undefined;
  if (values.model) {
    const store = new ModelStore({ dir: paths.modelsDir });
    if (await store.get(values.model)) config.model.selected = values.model;
    else {
      const file = path.resolve(io.cwd, values.model);
      if (
        !(await stat(file).then(
          (s) => s.isFile(),
          () => false,
        ))
      ) {
        throw new NightjarError('NJ_USAGE', `--model: "${values.model}" is neither an installed model (nightjar models list) nor a file`);
      }
      log.info('hashing model file', { file: path.basename(file) });
      const external = await ModelStore.forFile(file, { id: values['model-id'] ?? modelIdForFile(file), logger: log });
      model = modelChoice({
        ...external,
        slots: config.model.slots,
        contextLength: config.model.contextLength,
        threads: config.model.threads,
        allowSwap: config.model.allowSwap,
        logger: log,
      });
    }
  }

  const control = !values['no-control'] && config.control.enabled;
  if (values.dashboard && !control)
    throw new NightjarError(
      'NJ_USAGE',
      '--dashboard needs the control API: leave out --no-control (and set control.enabled in config.json)',
    );
  const dashboard = control ? await locateDashboard({ build: values.dashboard === true }) : null;
  let service: AgentService;
  try {
    service = await AgentService.start({
      paths,
      config,
      gatewayUrl,
      identity,
      logger: log,
      keyStore: secrets instanceof PlaintextFileSecretStore ? 'plaintext-file' : 'keychain',
      ...(model ? { model } : {}),
      control,
      ...(dashboard ? { dashboardDir: dashboard.dir } : {}),
    });
  } catch (err) {
    await dashboard?.dispose();
    throw err;
  }
  const served = model?.served.id ?? config.model.selected ?? '(none selected)';
  io.stdout.write(
    [
      `Agent ${identity.agentId} (identity in ${secrets.description})`,
      `  model    ${served}`,
      `  gateway  ${gatewayUrl}`,
      `  control  ${service.control ? service.control.url + ' (token in ' + paths.controlFile + ')' : 'off'}`,
      `  state    ${service.runtime.state}${service.runtime.reason ? ' — ' + service.runtime.reason.message : ''}`,
      'Ctrl-C stops it (running jobs drain first).',
      '',
    ].join('\n'),
  );
  if (values.dashboard && service.control) await presentDashboard(service.control.dashboardUrl(), io);
  await untilAborted(io.signal);
  await service.dispose();
  await dashboard?.dispose();
  return 0;
}
