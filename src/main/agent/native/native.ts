/**
 * The native addon (native/, built by `npm ci`), loaded optionally and trusted only after a child
 * process has loaded it and survived.
 *
 * Every call answers a {@link NativeAnswer}: `{ supported: false, reason }` off macOS, when the addon
 * is missing or unusable, or when it answered something malformed; `{ supported: true, ok: false,
 * status, error }` when macOS refused (a framework's OSStatus, an errno); otherwise `{ supported:
 * true, ok: true, …fields }`. Arguments are checked here before they reach C++ (which checks them
 * again); a bad argument throws NightjarError NJ_BAD_REQUEST. No call blocks for more than a few
 * system calls.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { NightjarError, errorMessage, silentLogger, withDefaults, type Logger, type ThermalState } from '../../../shared/index.js';

/** The version the addon's addonInfo() must report (native/src/nightjar_native.cc's kAddonVersion). */
export const NATIVE_ADDON_VERSION = 1;
/** Where node-gyp puts the addon, relative to the project (or app) root. */
export const NATIVE_ADDON_RELATIVE_PATH = 'native/build/Release/nightjar_native.node';
/** Longest Secure Enclave application tag, in bytes (printable ASCII without spaces). */
export const ENCLAVE_TAG_MAX_BYTES = 128;
/** Largest message {@link NativeAddon.secureEnclaveSign} signs, in bytes. */
export const ENCLAVE_MESSAGE_MAX_BYTES = 1024 * 1024;
/** The application tag of the agent's Secure Enclave key. */
export const AGENT_ENCLAVE_TAG = 'network.nightjar.agent.enclave-key';

/** A call this machine or this build cannot answer. */
export interface NativeUnsupported {
  readonly supported: false;
  /** Why, for a person: "macOS only…", "the addon is not built…", "the test-load crashed…". */
  readonly reason: string;
}
/** A call macOS refused. */
export interface NativeFailure {
  readonly supported: true;
  readonly ok: false;
  /** The OSStatus, CFError code or errno. */
  readonly status: number;
  /** What failed, with the system's message. */
  readonly error: string;
}
/** What every call answers. */
export type NativeAnswer<T> = NativeUnsupported | NativeFailure | ({ readonly supported: true; readonly ok: true } & T);

/** addonInfo(): what was built. */
export interface NativeAddonInfo {
  readonly version: number;
  /** The platform the addon was compiled for ("darwin", "linux", …). */
  readonly platform: string;
  /** Whether the macOS calls were compiled in. */
  readonly macos: boolean;
}
/** denyDebuggerAttach(): PT_DENY_ATTACH took effect. */
export interface DebuggerDenial {
  readonly denied: true;
}
/** sipStatus(): System Integrity Protection as the kernel reports it. */
export interface SipStatus {
  /** No protection is turned off (the mask has no bit but CSR_ALLOW_APPLE_INTERNAL). */
  readonly enabled: boolean;
  /** csr_get_active_config's raw mask: each set bit is a protection turned off. */
  readonly mask: number;
}
/** codeSigning(): this process's code signature. */
export interface CodeSigningStatus {
  /** The process has a signature at all (SecCodeCheckValidity did not say errSecCSUnsigned). */
  readonly signed: boolean;
  /** SecCodeCheckValidity(kSecCSDefaultFlags) passed. */
  readonly valid: boolean;
  /** SecCodeCheckValidity's OSStatus (0 when valid). */
  readonly validityStatus: number;
  /** kSecCodeInfoTeamIdentifier; null when ad-hoc signed or unsigned. */
  readonly teamId: string | null;
  /** kSecCodeInfoIdentifier (the bundle or signing identifier). */
  readonly identifier: string | null;
  /** kSecCodeInfoFlags. */
  readonly flags: number | null;
  /** kSecCodeSignatureRuntime (0x10000) is set in the flags. */
  readonly hardenedRuntime: boolean;
  /** kSecCodeInfoUnique: the code directory hash (20 bytes, lower-case hex). */
  readonly cdhash: string | null;
}
/** secureEnclaveKey(tag): this app's enclave key. */
export interface EnclaveKey {
  /** The key did not exist and was made now. */
  readonly created: boolean;
  /** The public half, a 65-byte uncompressed P-256 point (0x04 ‖ X ‖ Y). */
  readonly publicKey: Uint8Array;
}
/** secureEnclaveSign(tag, message): ECDSA P-256 over SHA-256(message). */
export interface EnclaveSignature {
  /** DER (X9.62) ECDSA signature. */
  readonly signature: Uint8Array;
}
/** secureEnclaveDelete(tag). */
export interface EnclaveDeletion {
  /** A key was there and is gone; false when there was none. */
  readonly deleted: boolean;
}
/** hidIdleTime(). */
export interface HidIdle {
  /** Seconds since the last keyboard, mouse or trackpad input. */
  readonly idleSeconds: number;
}
/** thermalState(): NSProcessInfo.thermalState. */
export interface ThermalReading {
  readonly state: ThermalState;
}
/** chipName(). */
export interface ChipName {
  /** machdep.cpu.brand_string, e.g. "Apple M2 Pro". */
  readonly chip: string;
}
/** coreCounts(): physical cores per performance level; null where the Mac has no such level. */
export interface CoreCounts {
  readonly performance: number | null;
  readonly efficiency: number | null;
}

/** Whether the addon is in use, and if not, why. */
export type NativeLoadState =
  | { readonly loaded: true; readonly path: string; readonly info: NativeAddonInfo }
  | { readonly loaded: false; readonly path: string | null; readonly reason: string };

/** The addon's calls, typed and checked. Every platform has every call. */
export interface NativeAddon {
  /** Whether the addon is in use. */
  readonly load: NativeLoadState;
  /** Denies debuggers for the rest of this process's life (refused if one is attached already). */
  denyDebuggerAttach(): NativeAnswer<DebuggerDenial>;
  /** SIP state from the kernel. */
  sipStatus(): NativeAnswer<SipStatus>;
  /** This process's code-signing status. */
  codeSigning(): NativeAnswer<CodeSigningStatus>;
  /** Loads or creates this app's Secure Enclave P-256 key with this application tag. */
  secureEnclaveKey(tag: string): NativeAnswer<EnclaveKey>;
  /** Signs a message with the enclave key with this tag (which must exist). */
  secureEnclaveSign(tag: string, message: Uint8Array): NativeAnswer<EnclaveSignature>;
  /** Deletes the enclave key with this tag. */
  secureEnclaveDelete(tag: string): NativeAnswer<EnclaveDeletion>;
  /** Seconds since the owner last touched the keyboard, mouse or trackpad. */
  hidIdleTime(): NativeAnswer<HidIdle>;
  /** The thermal state macOS reports. */
  thermalState(): NativeAnswer<ThermalReading>;
  /** The chip's name. */
  chipName(): NativeAnswer<ChipName>;
  /** Performance and efficiency core counts. */
  coreCounts(): NativeAnswer<CoreCounts>;
}

/** The calls the built addon must export (addonInfo included). */
export const NATIVE_CALLS = [
  'addonInfo',
  'denyDebuggerAttach',
  'sipStatus',
  'codeSigning',
  'secureEnclaveKey',
  'secureEnclaveSign',
  'secureEnclaveDelete',
  'hidIdleTime',
  'thermalState',
  'chipName',
  'coreCounts',
] as const;
type CallName = (typeof NATIVE_CALLS)[number];
type RawBinding = Record<CallName, (...args: unknown[]) => unknown>;

// ---- answers, checked -----------------------------------------------------------------------

const bytes = z.custom<Uint8Array>((v) => v instanceof Uint8Array, 'expected bytes');
const count = z.int().min(0).max(4096).nullable();
const infoSchema = z.strictObject({ version: z.int(), platform: z.string().max(32), macos: z.boolean() });
const unsupportedSchema = z.strictObject({ supported: z.literal(false), reason: z.string().max(1000) });
const failureSchema = z.strictObject({ supported: z.literal(true), ok: z.literal(false), status: z.number(), error: z.string().max(2000) });
const okShape = { supported: z.literal(true), ok: z.literal(true) } as const;

const ANSWERS = {
  denyDebuggerAttach: z.strictObject({ ...okShape, denied: z.literal(true) }),
  sipStatus: z.strictObject({ ...okShape, enabled: z.boolean(), mask: z.int().min(0).max(0xffffffff) }),
  codeSigning: z.strictObject({
    ...okShape,
    signed: z.boolean(),
    valid: z.boolean(),
    validityStatus: z.int(),
    teamId: z.string().max(64).nullable(),
    identifier: z.string().max(1024).nullable(),
    flags: z.int().min(0).nullable(),
    hardenedRuntime: z.boolean(),
    cdhash: z
      .string()
      .regex(/^[0-9a-f]{40,128}$/)
      .nullable(),
  }),
  secureEnclaveKey: z.strictObject({
    ...okShape,
    created: z.boolean(),
    publicKey: bytes.refine((b) => b.length === 65 && b[0] === 0x04, 'expected a 65-byte uncompressed P-256 point'),
  }),
  secureEnclaveSign: z.strictObject({
    ...okShape,
    signature: bytes.refine((b) => b.length >= 8 && b.length <= 72 && b[0] === 0x30, 'expected a DER ECDSA signature'),
  }),
  secureEnclaveDelete: z.strictObject({ ...okShape, deleted: z.boolean() }),
  hidIdleTime: z.strictObject({ ...okShape, idleSeconds: z.number().min(0).max(1e10) }),
  thermalState: z.strictObject({ ...okShape, state: z.enum(['nominal', 'fair', 'serious', 'critical']) }),
  chipName: z.strictObject({ ...okShape, chip: z.string().min(1).max(256) }),
  coreCounts: z.strictObject({ ...okShape, performance: count, efficiency: count }),
} satisfies Record<Exclude<CallName, 'addonInfo'>, z.ZodType>;

// ---- arguments, checked ---------------------------------------------------------------------

function checkTag(call: string, tag: unknown): asserts tag is string {
  if (typeof tag !== 'string' || !/^[\x21-\x7e]{1,128}$/.test(tag)) {
    throw new NightjarError(
      'NJ_BAD_REQUEST',
      `${call}: the tag must be 1 to ${ENCLAVE_TAG_MAX_BYTES} printable ASCII characters without spaces`,
    );
  }
}

function checkMessage(call: string, message: unknown): asserts message is Uint8Array {
  if (!(message instanceof Uint8Array)) throw new NightjarError('NJ_BAD_REQUEST', `${call}: the message must be a Uint8Array`);
  if (message.byteLength > ENCLAVE_MESSAGE_MAX_BYTES) {
    throw new NightjarError(
      'NJ_BAD_REQUEST',
      `${call}: the message is ${message.byteLength} bytes; the limit is ${ENCLAVE_MESSAGE_MAX_BYTES}`,
    );
  }
}

class NativeAddonImpl implements NativeAddon {
  readonly load: NativeLoadState;
  readonly #raw: RawBinding | null;

  constructor(load: NativeLoadState, raw: RawBinding | null) {
    this.load = load;
    this.#raw = raw;
  }

  #call<K extends keyof typeof ANSWERS>(name: K, args: unknown[]): NativeAnswer<Omit<z.infer<(typeof ANSWERS)[K]>, 'supported' | 'ok'>> {
    if (this.#raw === null || !this.load.loaded) return { supported: false, reason: this.load.loaded ? 'not loaded' : this.load.reason };
    let answer: unknown;
    try {
      answer = this.#raw[name](...args);
    } catch (err) {
      return { supported: false, reason: `the addon's ${name} threw: ${errorMessage(err)}` };
    }
    const ok = ANSWERS[name].safeParse(answer);
    if (ok.success) return ok.data as NativeAnswer<Omit<z.infer<(typeof ANSWERS)[K]>, 'supported' | 'ok'>>;
    const refused = failureSchema.safeParse(answer);
    if (refused.success) return refused.data;
    const unsupported = unsupportedSchema.safeParse(answer);
    if (unsupported.success) return unsupported.data;
    return { supported: false, reason: `the addon's ${name} answered something malformed` };
  }

  denyDebuggerAttach(): NativeAnswer<DebuggerDenial> {
    return this.#call('denyDebuggerAttach', []);
  }
  sipStatus(): NativeAnswer<SipStatus> {
    return this.#call('sipStatus', []);
  }
  codeSigning(): NativeAnswer<CodeSigningStatus> {
    return this.#call('codeSigning', []);
  }
  secureEnclaveKey(tag: string): NativeAnswer<EnclaveKey> {
    checkTag('secureEnclaveKey', tag);
    return this.#call('secureEnclaveKey', [tag]);
  }
  secureEnclaveSign(tag: string, message: Uint8Array): NativeAnswer<EnclaveSignature> {
    checkTag('secureEnclaveSign', tag);
    checkMessage('secureEnclaveSign', message);
    return this.#call('secureEnclaveSign', [tag, message]);
  }
  secureEnclaveDelete(tag: string): NativeAnswer<EnclaveDeletion> {
    checkTag('secureEnclaveDelete', tag);
    return this.#call('secureEnclaveDelete', [tag]);
  }
  hidIdleTime(): NativeAnswer<HidIdle> {
    return this.#call('hidIdleTime', []);
  }
  thermalState(): NativeAnswer<ThermalReading> {
    return this.#call('thermalState', []);
  }
  chipName(): NativeAnswer<ChipName> {
    return this.#call('chipName', []);
  }
  coreCounts(): NativeAnswer<CoreCounts> {
    return this.#call('coreCounts', []);
  }
}

/** An addon that is not there: every call answers `{ supported: false, reason }` (arguments are still checked). */
export function unsupportedNativeAddon(reason: string, addonPath: string | null = null): NativeAddon {
  return new NativeAddonImpl({ loaded: false, path: addonPath, reason }, null);
}

// ---- finding and test-loading ---------------------------------------------------------------

/**
 * Where the built addon is: native/build/Release/nightjar_native.node in the nearest folder above
 * `from` that has one (the checkout when run from src/ or dist/, the app's Resources in a package).
 * Inside an Electron app the path through `app.asar` is turned into `app.asar.unpacked`, where
 * electron-builder's asarUnpack puts native code. Null when there is none.
 */
export function findNativeAddon(from: string = path.dirname(fileURLToPath(import.meta.url))): string | null {
  let dir = from.replace(/app\.asar(?=[\\/]|$)/, 'app.asar.unpacked');
  for (;;) {
    const candidate = path.join(dir, NATIVE_ADDON_RELATIVE_PATH);
    if (existsSync(candidate)) return candidate;
    const parent = path.dirname(dir);
    if (parent === dir) return null;
    dir = parent;
  }
}

/** How a test-load went. */
export type TestLoadResult = { readonly ok: true; readonly info: NativeAddonInfo } | { readonly ok: false; readonly reason: string };

/** Loads an addon somewhere the agent survives a crash and says how it went. */
export type TestLoad = (addonPath: string) => Promise<TestLoadResult>;

/**
 * Judges what a test-load child reported, `{ info: addonInfo(), calls: Object.keys(addon) }`: the
 * addon is usable only if it reported that shape and every call of {@link NATIVE_CALLS}.
 */
export function judgeTestLoad(output: unknown): TestLoadResult {
  const out = z.object({ info: infoSchema, calls: z.array(z.string()).max(1000) }).safeParse(output);
  if (!out.success) return { ok: false, reason: 'the test-load child answered something malformed' };
  const missing = NATIVE_CALLS.filter((c) => !out.data.calls.includes(c));
  if (missing.length > 0) return { ok: false, reason: `the addon lacks ${missing.join(', ')}` };
  return { ok: true, info: out.data.info };
}

/** Options of {@link childProcessTestLoad}. */
export interface ChildProcessTestLoadOptions {
  /** How long the child may take before it is killed and the addon counted unusable. Defaults to 10 000 ms. */
  timeoutMs?: number;
  /** The Node binary that runs the child. Defaults to process.execPath. */
  execPath?: string;
}

const TEST_LOAD_DEFAULTS: Required<ChildProcessTestLoadOptions> = { timeoutMs: 10_000, execPath: process.execPath };

// The child requires the addon and calls its one harmless function; anything else (a crash, a
// signal, a throw, other output) means the addon is unusable.
const TEST_LOAD_SCRIPT =
  'const a = require(process.argv[1]); process.stdout.write(JSON.stringify({ info: a.addonInfo(), calls: Object.keys(a) }));';

/**
 * Test-loads the addon in a child Node process (`process.execPath -e`): the child requires it and
 * calls addonInfo(). A crash there means "unusable", never a crash of the agent. Not for Electron:
 * its binary is not a Node runtime once the runAsNode fuse is off (hand {@link loadNativeAddon} a
 * test-load that uses utilityProcess there).
 */
export function childProcessTestLoad(options: ChildProcessTestLoadOptions = {}): TestLoad {
  const o = withDefaults(TEST_LOAD_DEFAULTS, options);
  return (addonPath) =>
    new Promise((resolve) => {
      execFile(
        o.execPath,
        ['-e', TEST_LOAD_SCRIPT, addonPath],
        { timeout: o.timeoutMs, maxBuffer: 64 * 1024, encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' } },
        (err, stdout) => {
          if (err) {
            const how = err.killed
              ? `was killed after ${o.timeoutMs} ms`
              : err.signal
                ? `crashed (${err.signal})`
                : `failed (exit ${err.code})`;
            resolve({ ok: false, reason: `the test-load child ${how}` });
            return;
          }
          let output: unknown;
          try {
            output = JSON.parse(stdout);
          } catch {
            output = undefined;
          }
          resolve(judgeTestLoad(output));
        },
      );
    });
}

/** Options of {@link loadNativeAddon}. */
export interface NativeAddonOptions {
  /** The built addon; null for none. Defaults to {@link findNativeAddon}'s answer. */
  path?: string | null;
  /**
   * Loads the addon where a crash cannot hurt the agent, before the agent loads it. Defaults to
   * {@link childProcessTestLoad} under Node; under Electron there is no default and the addon is
   * not loaded unless one is handed in.
   */
  testLoad?: TestLoad | null;
  /** Defaults to a silent logger. */
  logger?: Logger;
}

/**
 * Loads the addon if it is built and a test-load survives it; otherwise an addon whose every call
 * answers unsupported with the reason (logged as a warning when the addon is there but unusable).
 * Never throws.
 */
export async function loadNativeAddon(options: NativeAddonOptions = {}): Promise<NativeAddon> {
  const log = options.logger ?? silentLogger;
  const addonPath = options.path === undefined ? findNativeAddon() : options.path;
  if (addonPath === null || !existsSync(addonPath)) {
    return unsupportedNativeAddon(
      'the native addon is not built (npm ci builds it when a C++ toolchain is installed; `npm run build:native` retries)',
      addonPath,
    );
  }
  const testLoad = options.testLoad === undefined ? (process.versions.electron ? null : childProcessTestLoad()) : options.testLoad;
  if (testLoad === null)
    return unsupportedNativeAddon('the native addon was not loaded: no test-load is available in this process', addonPath);
  const probe = await testLoad(addonPath).catch((err: unknown): TestLoadResult => ({ ok: false, reason: errorMessage(err) }));
  if (!probe.ok) {
    log.warn('native addon unusable', { path: addonPath, reason: probe.reason });
    return unsupportedNativeAddon(`the native addon is unusable: ${probe.reason}`, addonPath);
  }
  if (probe.info.version !== NATIVE_ADDON_VERSION) {
    log.warn('native addon unusable', { path: addonPath, reason: `version ${probe.info.version}` });
    return unsupportedNativeAddon(
      `the native addon is version ${probe.info.version}, this agent needs ${NATIVE_ADDON_VERSION}: run \`npm run build:native\``,
      addonPath,
    );
  }
  try {
    const raw = createRequire(import.meta.url)(addonPath) as Partial<RawBinding>;
    const missing = NATIVE_CALLS.filter((c) => typeof raw[c] !== 'function');
    if (missing.length > 0) throw new Error(`it lacks ${missing.join(', ')}`);
    const binding = raw as RawBinding;
    const info = infoSchema.parse(binding.addonInfo());
    log.debug('native addon loaded', { path: addonPath, platform: info.platform, macos: info.macos });
    return new NativeAddonImpl({ loaded: true, path: addonPath, info }, binding);
  } catch (err) {
    log.warn('native addon unusable', { path: addonPath, reason: errorMessage(err) });
    return unsupportedNativeAddon(`the native addon is unusable: ${errorMessage(err)}`, addonPath);
  }
}

/**
 * The addon the agent uses by default: loaded (and test-loaded) on macOS; elsewhere the stub has
 * nothing to say, so it is not loaded and every call answers unsupported without a child process.
 */
export async function defaultNativeAddon(
  platform: NodeJS.Platform = process.platform,
  options: NativeAddonOptions = {},
): Promise<NativeAddon> {
  if (platform !== 'darwin') return unsupportedNativeAddon(`the native calls answer only on macOS (this is ${platform})`);
  return loadNativeAddon(options);
}
