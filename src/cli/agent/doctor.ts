/**
 * `nightjar doctor`: checks a person can act on, each with what to do when it fails. Exits 1 if
 * any check failed.
 */
import { statfs } from 'node:fs/promises';
import {
  ATTESTATION_REASON_TEXT,
  NightjarError,
  formatBytes,
  type EnclaveSigner,
  type InstalledModel,
  type Posture,
} from '../../shared/index.js';
import {
  AGENT_VERSION,
  ModelStore,
  checkLlamaBinding,
  checkMemoryFit,
  defaultEnvironmentSource,
  defaultMemoryProbe,
  defaultNativeAddon,
  detectPlatform,
  nativeEnclaveSigner,
  nativePosture,
  selfAttestation,
  estimateEngineMemory,
  loadIdentity,
  plannedContextLength,
  probeGateway,
  unattestedPosture,
  type AgentConfig,
  type AgentPaths,
  type EnvironmentSource,
  type MemoryProbe,
} from '../../main/agent/index.js';
import { cliConfig, cliPaths, secretStore } from './agent-context.js';
import type { CommandContext, CommandIo } from '../io.js';
import { agentSocketUrl } from './serve.js';

/** Flags of `nightjar doctor`. */
export interface DoctorFlags {
  gateway?: string;
  keyFile?: string;
}

/** Outcome of one check. */
export interface CheckResult {
  name: string;
  ok: boolean;
  /** Warnings pass but are shown with "!". */
  warn?: boolean;
  detail: string;
  /** What to do, when it failed or warns. */
  fix?: string;
}

/** What the checks may be handed instead of the real parts (tests). */
export interface DoctorParts {
  environment?: EnvironmentSource;
  memoryProbe?: MemoryProbe;
  freeBytes?: (dir: string) => Promise<number>;
  /** This machine's posture and enclave key, instead of what the native addon reads. */
  attestation?: { posture: Posture; enclave: EnclaveSigner | null };
}

const fail = (name: string, err: unknown, fix: string): CheckResult => ({
  name,
  ok: false,
  detail: err instanceof NightjarError ? `${err.code}: ${err.message}` : err instanceof Error ? err.message : String(err),
  fix,
});

/** Runs every check. */
export async function runChecks(io: CommandIo, options: DoctorFlags, parts: DoctorParts = {}): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  const paths = cliPaths(io);
  results.push({
    name: 'files',
    ok: true,
    detail: `config ${paths.configFile}; models ${paths.modelsDir}; receipts ${paths.receiptsFile}`,
  });

  let config: AgentConfig | null = null;
  try {
    config = await cliConfig(paths);
    results.push({ name: 'config', ok: true, detail: 'config.json is valid (or absent: defaults)' });
  } catch (err) {
    results.push(fail('config', err, `Fix the named field in ${paths.configFile}.`));
  }

  try {
    const binding = await checkLlamaBinding();
    results.push({ name: 'llama.cpp', ok: true, detail: `prebuilt binding loads (gpu: ${binding.gpu}, ${binding.cpuCores} math cores)` });
  } catch (err) {
    results.push(fail('llama.cpp', err, "Reinstall Nightjar (npm ci) so node-llama-cpp's prebuilt binary for this platform is present."));
  }

  const model = config ? await checkModel(results, paths, config, parts) : null;
  await checkDisk(results, paths, parts);
  if (config) await checkKeys(results, io, paths, config, options.keyFile);
  await checkEnvironment(results, parts);
  await checkAttestation(results, parts);
  if (config) await checkGateway(results, io, config, options.gateway, model);
  return results;
}

async function checkModel(
  results: CheckResult[],
  paths: AgentPaths,
  config: AgentConfig,
  parts: DoctorParts,
): Promise<InstalledModel | null> {
  const id = config.model.selected;
  if (!id) {
    results.push({
      name: 'model',
      ok: false,
      detail: 'no model is selected',
      fix: 'Run `nightjar models list`, `nightjar models pull ID`, then `nightjar models select ID`.',
    });
    return null;
  }
  const store = new ModelStore({ dir: paths.modelsDir });
  const model = await store.get(id);
  if (!model) {
    results.push({
      name: 'model',
      ok: false,
      detail: `the selected model ${id} is not installed`,
      fix: `Run \`nightjar models pull ${id}\` (or select another with \`nightjar models select ID\`).`,
    });
    return null;
  }
  try {
    await store.verify(model);
    results.push({ name: 'model', ok: true, detail: `${id}: ${formatBytes(model.bytes)}, sha256 matches` });
  } catch (err) {
    results.push(fail('model', err, `Run \`nightjar models rm ${id}\` and \`nightjar models pull ${id}\`.`));
    return null;
  }
  try {
    const estimate = await estimateEngineMemory({
      modelPath: store.pathOf(model),
      slots: config.model.slots,
      contextLength: config.model.contextLength,
    });
    const info = await (parts.memoryProbe ?? defaultMemoryProbe())();
    const fit = checkMemoryFit({ requiredBytes: estimate.totalBytes, minMemoryBytes: model.minMemoryBytes, info });
    const ctx = plannedContextLength(model, config.model.contextLength);
    if (fit.verdict === 'fits')
      results.push({ name: 'memory', ok: true, detail: `${fit.message} (${config.model.slots} slots × ${ctx} tokens)` });
    else if (fit.verdict === 'needs-swap' && config.model.allowSwap)
      results.push({
        name: 'memory',
        ok: true,
        warn: true,
        detail: fit.message,
        fix: 'It will swap: expect this Mac to slow down while serving.',
      });
    else
      results.push({
        name: 'memory',
        ok: false,
        detail: fit.message,
        fix: 'Close apps, lower model.slots or model.contextLength in config.json, or pick a smaller model.',
      });
  } catch (err) {
    results.push(fail('memory', err, 'Check the model file with `nightjar models list`.'));
  }
  return model;
}

async function checkDisk(results: CheckResult[], paths: AgentPaths, parts: DoctorParts): Promise<void> {
  try {
    const probe =
      parts.freeBytes ??
      (async (dir: string) => {
        const s = await statfs(dir)
          .catch(() => statfs(paths.dataDir))
          .catch(() => statfs('/'));
        return s.bavail * s.bsize;
      });
    const free = await probe(paths.modelsDir);
    const low = free < 2 * 1024 ** 3;
    results.push({
      name: 'disk',
      ok: !low,
      detail: `${formatBytes(free)} free for models`,
      fix: low ? 'Free disk space (models are 0.5–5 GB each), or remove one with `nightjar models rm ID`.' : undefined,
    });
  } catch (err) {
    results.push(fail('disk', err, `Make sure ${paths.dataDir} can be created.`));
  }
}

async function checkKeys(
  results: CheckResult[],
  io: CommandIo,
  paths: AgentPaths,
  config: AgentConfig,
  keyFile: string | undefined,
): Promise<void> {
  const store = secretStore(io, paths, config, keyFile);
  try {
    const identity = await loadIdentity(store);
    results.push({
      name: 'keys',
      ok: true,
      detail: identity
        ? `agent ${identity.agentId} in ${store.description}`
        : `${store.description} is reachable; the identity is created on first \`nightjar serve\``,
    });
  } catch (err) {
    const fix =
      err instanceof NightjarError && err.code === 'NJ_KEY_FILE_INSECURE'
        ? err.hint
        : 'Unlock the keychain (or start a Secret Service on Linux), or opt in to a plaintext key file with --key-file FILE.';
    results.push(fail('keys', err, fix));
  }
}

async function checkEnvironment(results: CheckResult[], parts: DoctorParts): Promise<void> {
  try {
    const r = await (parts.environment ?? defaultEnvironmentSource()).read();
    const idle =
      r.idleSeconds === null ? 'no idle signal (serves whenever power, heat and schedule allow)' : `idle ${Math.round(r.idleSeconds)} s`;
    const power = r.onAc === null ? 'power unknown' : r.onAc ? 'on AC' : `on battery ${r.batteryPercent ?? '?'}%`;
    results.push({
      name: 'machine',
      ok: true,
      detail: `${idle}; ${power}; thermal ${r.thermal ?? 'unknown'}; memory pressure ${r.memoryPressure ?? 'unknown'}`,
    });
  } catch (err) {
    results.push(
      fail(
        'machine',
        err,
        'The agent cannot read idle time (ioreg on macOS); it will not serve until it can. Check that /usr/sbin/ioreg runs.',
      ),
    );
  }
}

/**
 * Whether this Mac can be `attested`, by the agent's own check: one line per reason it cannot,
 * each with what to do. A warning, not a failure: an agent that is only `signed` still serves
 * every job that does not ask for attestation.
 */
async function checkAttestation(results: CheckResult[], parts: DoctorParts): Promise<void> {
  let posture: Posture;
  let enclave: EnclaveSigner | null;
  if (parts.attestation) {
    ({ posture, enclave } = parts.attestation);
  } else {
    const native = await defaultNativeAddon();
    posture = nativePosture(native, AGENT_VERSION);
    enclave = nativeEnclaveSigner(native);
  }
  const reasons = selfAttestation(posture, enclave);
  if (reasons[0] === 'valid') {
    results.push({
      name: 'attested',
      ok: true,
      detail:
        `Secure Enclave key, SIP on, hardened runtime, debugger denied; app hash ${posture.appHash} ` +
        '(the gateway checks it is a release)',
    });
    return;
  }
  for (const r of reasons) {
    const text = ATTESTATION_REASON_TEXT[r];
    results.push({ name: 'attested', ok: true, warn: true, detail: `not attested (${r}): ${text.what}`, fix: text.fix });
  }
}

async function checkGateway(
  results: CheckResult[],
  io: CommandIo,
  config: AgentConfig,
  gateway: string | undefined,
  model: InstalledModel | null,
): Promise<void> {
  const address = gateway ?? io.env.NIGHTJAR_GATEWAY ?? config.gateway.url;
  if (!address) {
    results.push({
      name: 'gateway',
      ok: false,
      detail: 'no gateway address',
      fix: 'Set gateway.url in config.json (or pass --gateway URL).',
    });
    return;
  }
  try {
    const url = agentSocketUrl(address);
    const probe = await probeGateway({
      url,
      model: model
        ? {
            id: model.id,
            sha256: model.sha256,
            synthetic: model.synthetic,
            contextLength: plannedContextLength(model, config.model.contextLength),
          }
        : { id: 'doctor-probe', sha256: '0'.repeat(64), synthetic: true, contextLength: 4096 },
      platform: detectPlatform(),
      posture: unattestedPosture(AGENT_VERSION),
    });
    results.push({ name: 'gateway', ok: true, detail: `${url} answers (round trip ${Math.round(probe.roundTripMs)} ms)` });
    const skew = Math.round(probe.clockSkewMs);
    const bad = Math.abs(skew) > 30_000;
    results.push({
      name: 'clock',
      ok: !bad,
      detail: `this clock is ${Math.abs(skew)} ms ${skew > 0 ? 'behind' : 'ahead of'} the gateway's`,
      fix: bad
        ? 'Turn on automatic time (System Settings → General → Date & Time, or timedatectl set-ntp true): ' +
          'requests are refused when clocks differ by a minute.'
        : undefined,
    });
  } catch (err) {
    results.push(fail('gateway', err, 'Check the gateway URL and the network; `nightjar serve` keeps retrying with backoff meanwhile.'));
  }
}

/** Runs `nightjar doctor`. */
export async function doctorCommand(values: DoctorFlags, { io }: CommandContext, parts: DoctorParts = {}): Promise<number> {
  const results = await runChecks(io, values, parts);
  for (const r of results) {
    io.stdout.write(`${r.ok ? (r.warn ? '!' : '✓') : '✗'} ${r.name.padEnd(9)} ${r.detail}\n`);
    if (r.fix && (!r.ok || r.warn)) io.stdout.write(`  → ${r.fix}\n`);
  }
  const failed = results.filter((r) => !r.ok).length;
  io.stdout.write(failed === 0 ? 'Everything checks out.\n' : `${failed} check${failed === 1 ? '' : 's'} failed.\n`);
  return failed === 0 ? 0 : 1;
}
