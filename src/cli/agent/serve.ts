/**
 * `nightjar serve`: the headless agent as an owner runs it (AgentService: policy, models, records,
 * control API), with its identity in the OS keychain.
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
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
} from '../../main/agent/index.js';
import { cliConfig, cliPaths, secretStore } from './agent-context.js';
import { locateDashboard, presentDashboard } from './dashboard.js';
import { untilAborted, type CommandContext } from '../io.js';
import { SECRETS, readSecret } from '../secrets.js';

/** Flags of `nightjar serve`. */
export interface ServeFlags {
  gateway?: string;
  /** The enrollment token on the command line (warned about: other users can see it). */
  enrollToken?: string;
  /** A file holding the enrollment token (mode 0600). */
  enrollTokenFile?: string;
  /** An installed model's id, or a GGUF file. */
  model?: string;
  modelId?: string;
  slots?: number;
  context?: number;
  threads?: number;
  keyFile?: string;
  /** False under --no-control. */
  control: boolean;
  dashboard?: boolean;
}

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
    slots: options.slots,
    contextLength: options.contextLength,
    threads: options.threads,
  });
  return { engine, served: { id, sha256, synthetic: engine.model.synthetic, contextLength: engine.model.contextLength } };
}

/** Runs `nightjar serve`. */
export async function serveCommand(values: ServeFlags, ctx: CommandContext): Promise<number> {
  const { io } = ctx;
  // First, so the warning about a token on the command line is written whatever fails next.
  const enrollToken = await readSecret(SECRETS.enrollToken, { value: values.enrollToken, file: values.enrollTokenFile }, io);
  const paths = cliPaths(io);
  const config = await cliConfig(paths);
  const gateway = values.gateway ?? io.env.NIGHTJAR_GATEWAY ?? config.gateway.url;
  if (!gateway) throw new NightjarError('NJ_USAGE', `give the gateway address with --gateway URL (or gateway.url in ${paths.configFile})`);
  const gatewayUrl = agentSocketUrl(gateway);
  if (enrollToken !== undefined) config.gateway = { ...config.gateway, enrollToken };
  const log = ctx.logger();
  config.model = {
    ...config.model,
    slots: values.slots ?? config.model.slots,
    contextLength: values.context ?? config.model.contextLength,
    threads: values.threads ?? config.model.threads,
  };

  const secrets = secretStore(io, paths, config, values.keyFile);
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
      const external = await ModelStore.forFile(file, { id: values.modelId ?? modelIdForFile(file), logger: log });
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

  const control = values.control && config.control.enabled;
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
      model,
      control,
      dashboardDir: dashboard?.dir,
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
  await untilAborted(ctx.signal);
  await service.dispose();
  await dashboard?.dispose();
  return 0;
}
