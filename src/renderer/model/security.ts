/**
 * The Security screen's checks: what the agent's status says about how well this Mac protects
 * the jobs sealed for it, each with what to do when it falls short. Pure: a status in, a list out.
 */
import { ATTESTATION_REASON_TEXT, type AgentStatusSnapshot } from '../../shared/index.js';

/** How one check came out. `unknown`: this build cannot tell. */
export type CheckResult = 'ok' | 'warn' | 'fail' | 'unknown';

/** One line of the Security screen. */
export interface SecurityCheck {
  /** Stable id (tests and the page's data attributes use it). */
  id: string;
  title: string;
  result: CheckResult;
  /** What was found. */
  detail: string;
  /** What to do about it; null when nothing needs doing. */
  action: string | null;
}

const NATIVE_MISSING = 'Not checked: this needs Nightjar’s native macOS addon, which this build does not include.';

const NO_SECURE_ENCLAVE =
  'Not available in this build, so the gateway can trust this Mac as “signed”, not “attested”. ' +
  'Clients that require attested Macs will not choose it.';

function isLoopback(host: string): boolean {
  return host === '127.0.0.1' || host === 'localhost' || host === '[::1]' || host.startsWith('127.');
}

/** A check only the native addon can make: unknown without it (null), else ok or fail. */
function nativeCheck(
  id: string,
  title: string,
  value: boolean | null,
  okDetail: string,
  fail: { detail: string; action: string },
): SecurityCheck {
  if (value === null) return { id, title, result: 'unknown', detail: NATIVE_MISSING, action: null };
  return value ? { id, title, result: 'ok', detail: okDetail, action: null } : { id, title, result: 'fail', ...fail };
}

/**
 * Secure Enclave attestation: from the agent's own judgement (status.security.attestation) when it
 * sends one, each reason it is not attested named with what to do; else from the posture alone.
 */
function enclaveCheck(status: AgentStatusSnapshot): SecurityCheck {
  const id = 'secure-enclave';
  const title = 'Secure Enclave attestation';
  const reasons = status.security.attestation;
  if (reasons && reasons[0] === 'valid') {
    return {
      id,
      title,
      result: 'ok',
      detail:
        'A Secure Enclave key co-signs this Mac’s bundle and answers the gateway’s challenges; the gateway checks the app is a release.',
      action: null,
    };
  }
  if (reasons) {
    return {
      id,
      title,
      result: 'warn',
      detail: `Not attested: ${reasons.map((r) => ATTESTATION_REASON_TEXT[r].what).join(' ')}`,
      action: [...new Set(reasons.map((r) => ATTESTATION_REASON_TEXT[r].fix))].join(' '),
    };
  }
  return status.security.posture.secureEnclave
    ? { id, title, result: 'ok', detail: 'A Secure Enclave key co-signs this Mac’s bundle.', action: null }
    : { id, title, result: 'unknown', detail: NO_SECURE_ENCLAVE, action: null };
}

/** The checks, in the order the screen shows them. */
export function securityChecks(status: AgentStatusSnapshot): SecurityCheck[] {
  const { posture } = status.security;
  const checks: SecurityCheck[] = [];

  // The link to the gateway.
  if (status.gatewayUrl === null) {
    checks.push({
      id: 'gateway-tls',
      title: 'Encrypted link to the gateway',
      result: 'unknown',
      detail: 'This Mac is not linked to a gateway yet.',
      action: 'Link it on the Set up screen.',
    });
  } else {
    const url = new URL(status.gatewayUrl);
    const tls = url.protocol === 'wss:';
    checks.push({
      id: 'gateway-tls',
      title: 'Encrypted link to the gateway',
      result: tls || isLoopback(url.hostname) ? 'ok' : 'fail',
      detail: tls
        ? `TLS to ${url.host}.`
        : isLoopback(url.hostname)
          ? `A gateway on this machine (${url.host}); nothing leaves it.`
          : `${url.host} is reached without TLS: prompts stay sealed, but job metadata and the enrollment token ` +
            `cross the network in the clear.`,
      action: tls || isLoopback(url.hostname) ? null : 'Link again with the gateway’s https:// address.',
    });
  }

  const g = status.gateway;
  if (g.rejected) {
    checks.push({
      id: 'gateway-admission',
      title: 'Admitted by the gateway',
      result: 'fail',
      detail: `The gateway refused this Mac: ${g.rejected.message}`,
      action: 'Ask your operator for a new enrollment token and link again on the Set up screen.',
    });
  } else if (g.trust) {
    checks.push({
      id: 'gateway-admission',
      title: 'Admitted by the gateway',
      result: g.operator ? 'ok' : 'warn',
      detail: g.operator
        ? `Bound to operator ${g.operator}.`
        : 'Connected, but bound to no operator: this Mac serves free jobs only and earns nothing.',
      action: g.operator ? null : 'Link again with an enrollment token from your operator.',
    });
  } else {
    checks.push({
      id: 'gateway-admission',
      title: 'Admitted by the gateway',
      result: 'unknown',
      detail: 'Not connected to the gateway yet.',
      action: null,
    });
  }

  checks.push(
    status.security.keyStore === 'keychain'
      ? {
          id: 'key-store',
          title: 'Identity key in the Keychain',
          result: 'ok',
          detail: 'The private key that signs bundles and receipts is kept by the OS keychain.',
          action: null,
        }
      : {
          id: 'key-store',
          title: 'Identity key in the Keychain',
          result: 'warn',
          detail:
            'The identity key is in a plaintext file (opted in with --key-file): anyone who can read that file can impersonate this Mac.',
          action: 'Run the agent without --key-file (keys.store "keychain") and enroll the new identity with your operator.',
        },
  );

  checks.push(
    nativeCheck('sip', 'System Integrity Protection', posture.sip, 'On.', {
      detail: 'Off: other software can read the memory of the running model.',
      action: 'Turn it back on: start the Mac in Recovery, open Terminal, run `csrutil enable`, restart.',
    }),
    nativeCheck('hardened-runtime', 'Hardened runtime', posture.hardenedRuntime, 'The app runs with the hardened runtime.', {
      detail: 'This copy of the app does not run with the hardened runtime.',
      action: 'Install the released, signed Nightjar app.',
    }),
    nativeCheck('debugger', 'Debuggers refused', posture.debuggerDenied, 'The agent refuses debugger attachment (PT_DENY_ATTACH).', {
      detail: 'A debugger could attach to the agent and read prompts.',
      action: 'Install the released, signed Nightjar app.',
    }),
  );
  checks.push(enclaveCheck(status));
  checks.push(
    posture.appHash
      ? {
          id: 'app-hash',
          title: 'Released app',
          result: 'ok',
          detail: `App ${posture.appVersion}, hash ${posture.appHash.slice(0, 12)}…`,
          action: null,
        }
      : {
          id: 'app-hash',
          title: 'Released app',
          result: 'warn',
          detail: `Version ${posture.appVersion}, not a released build (no app hash).`,
          action: 'Install the released Nightjar app to be eligible for attestation.',
        },
  );

  if (status.model?.synthetic) {
    checks.push({
      id: 'model',
      title: 'Real model',
      result: 'warn',
      detail: `${status.model.id} is a synthetic model (random weights): clients refuse it unless they allow synthetic models.`,
      action: 'Pick a real model on the Models screen.',
    });
  } else if (status.model) {
    checks.push({
      id: 'model',
      title: 'Real model',
      result: 'ok',
      detail: `${status.model.id}, sha256 ${status.model.sha256.slice(0, 12)}… checked before every load.`,
      action: null,
    });
  }
  return checks;
}

/** The trust level as the Security screen explains it. */
export function trustSummary(status: AgentStatusSnapshot): { level: string; detail: string } {
  switch (status.gateway.trust) {
    case 'attested':
      return {
        level: 'Attested',
        detail: 'The gateway verified a Secure Enclave co-signature over a hardened posture from a released app.',
      };
    case 'signed':
      return {
        level: 'Signed',
        detail:
          'The gateway verified this Mac’s bundle signature and it answers every challenge. ' +
          'Clients asking for “attested” Macs will not choose it.',
      };
    default:
      return { level: 'Not known yet', detail: 'The gateway says how far it trusts this Mac when it connects.' };
  }
}
