/**
 * What the agent says about the machine it runs on. Posture fields the agent cannot check here
 * are null; on a Mac the native addon fills in what it can read (see {@link nativePosture}).
 */
import os from 'node:os';
import { NightjarError, appHashOf, type EnclaveSigner, type Platform, type Posture } from '../../shared/index.js';
import { AGENT_ENCLAVE_TAG, type NativeAddon } from './native/native.js';

/**
 * The platform section of a bundle, read from the OS. With the native addon on a Mac the chip is
 * machdep.cpu.brand_string ("Apple M2 Pro"); otherwise Node's first CPU model.
 */
export function detectPlatform(native?: NativeAddon): Platform {
  const chip = native?.chipName();
  const cpu = chip?.supported && chip.ok ? chip.chip : (os.cpus()[0]?.model ?? 'unknown');
  return {
    os: process.platform,
    osVersion: os.release().slice(0, 128),
    arch: process.arch,
    chip: cpu.trim().slice(0, 128) || 'unknown',
    memoryBytes: os.totalmem(),
  };
}

/** The posture of an agent without the native addon: nothing attested. */
export function unattestedPosture(appVersion: string): Posture {
  return { sip: null, hardenedRuntime: null, debuggerDenied: null, secureEnclave: false, appVersion, appHash: null };
}

/** Options of {@link nativePosture}. */
export interface NativePostureOptions {
  /**
   * Call PT_DENY_ATTACH (no debugger may attach to this process for the rest of its life) and
   * report whether it took. Defaults to true.
   */
  denyDebugger?: boolean;
  /** The application tag of the Secure Enclave key whose presence `secureEnclave` reports. Defaults to {@link AGENT_ENCLAVE_TAG}. */
  enclaveTag?: string;
}

/**
 * The posture the native addon can vouch for; each field it cannot read stays as
 * {@link unattestedPosture} has it (null, or false for secureEnclave), so on Linux, or without the
 * addon, this is exactly the unattested posture.
 * - sip: csr_get_active_config says no protection is off.
 * - hardenedRuntime: this process's signature is valid and has the runtime flag (false when
 *   unsigned or invalid: the flag means nothing without a valid signature).
 * - debuggerDenied: PT_DENY_ATTACH took (false when it was refused, or on a Mac when not asked for).
 * - secureEnclave: this app's enclave key could be loaded or created (it needs a signed app with a
 *   keychain access group; a bare `node` cannot keep one).
 * - appHash: {@link appHashOf} the code directory hash (kSecCodeInfoUnique) when the signature is
 *   valid; null when unsigned, invalid or unreadable (then the gateway cannot find it among its
 *   releases, and the agent is not attested).
 * The gateway checks these fields only as the agent states them (signed by its enclave key):
 * SECURITY.md says what that does and does not prove.
 */
export function nativePosture(native: NativeAddon, appVersion: string, options: NativePostureOptions = {}): Posture {
  const posture = unattestedPosture(appVersion);
  const sip = native.sipStatus();
  if (sip.supported && sip.ok) posture.sip = sip.enabled;
  const signing = native.codeSigning();
  if (signing.supported && signing.ok) {
    posture.hardenedRuntime = signing.valid && signing.hardenedRuntime;
    if (signing.valid && signing.cdhash !== null && /^[0-9a-f]{40}$/.test(signing.cdhash)) posture.appHash = appHashOf(signing.cdhash);
  }
  if (options.denyDebugger ?? true) {
    const denial = native.denyDebuggerAttach();
    if (denial.supported) posture.debuggerDenied = denial.ok;
  } else if (native.load.loaded && native.load.info.macos) {
    posture.debuggerDenied = false;
  }
  const key = native.secureEnclaveKey(options.enclaveTag ?? AGENT_ENCLAVE_TAG);
  if (key.supported) posture.secureEnclave = key.ok;
  return posture;
}

/**
 * This app's Secure Enclave key as an {@link EnclaveSigner}: loaded (or created) through the
 * native addon, signing with it there (the private half never leaves the enclave). Null when the
 * addon cannot answer (off macOS, not built, an unsigned `node` that cannot keep an enclave key)
 * or macOS refused; the agent then claims no attestation.
 */
export function nativeEnclaveSigner(native: NativeAddon, tag: string = AGENT_ENCLAVE_TAG): EnclaveSigner | null {
  const key = native.secureEnclaveKey(tag);
  if (!key.supported || !key.ok) return null;
  return {
    kind: 'secure-enclave',
    publicKey: key.publicKey,
    async sign(message) {
      const answer = native.secureEnclaveSign(tag, message);
      if (!answer.supported) throw new NightjarError('NJ_INTERNAL', `the Secure Enclave cannot sign: ${answer.reason}`);
      if (!answer.ok) throw new NightjarError('NJ_INTERNAL', `the Secure Enclave refused to sign (${answer.status}): ${answer.error}`);
      return answer.signature;
    },
  };
}
