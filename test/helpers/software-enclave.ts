/**
 * A software stand-in for the Secure Enclave, for tests only: a P-256 key made by WebCrypto (not
 * extractable) that signs as the enclave does (ECDSA over SHA-256, DER). Its kind is `software`,
 * which a production agent refuses (AgentOptions.allowSoftwareEnclave), and it lives under test/
 * so no build ships it.
 */
import { rawToDerSignature, type EnclaveSigner, type Posture } from '../../src/shared/index.js';

/** An app hash the attestation tests list as a release. */
export const RELEASED_APP_HASH = 'ab'.repeat(32);

/** The posture `attested` asks for (SIP on, hardened runtime, debugger denied), of the released app. */
export const HARDENED_POSTURE: Posture = {
  sip: true,
  hardenedRuntime: true,
  debuggerDenied: true,
  secureEnclave: true,
  appVersion: '1.0.0',
  appHash: RELEASED_APP_HASH,
};

/** A fresh software enclave key. */
export async function softwareEnclave(): Promise<EnclaveSigner> {
  const pair = (await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify'])) as CryptoKeyPair;
  const publicKey = new Uint8Array(await crypto.subtle.exportKey('raw', pair.publicKey));
  return {
    kind: 'software',
    publicKey,
    async sign(message) {
      const raw = new Uint8Array(
        await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, pair.privateKey, message as Uint8Array<ArrayBuffer>),
      );
      return rawToDerSignature(raw);
    },
  };
}
