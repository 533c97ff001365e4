/**
 * Challenge-response: the gateway sends a fresh nonce and its time; the agent signs them, with
 * the gateway's id and its own agent id, under a domain tag no other signature uses.
 */
import { signingBytes, fromBase64Url, toBase64Url } from '../encoding.js';
import { cryptoBackend } from './backend.js';
import type { IdentityKeyPair } from './keys.js';

/** Signing domain of challenge answers. */
export const AUTH_DOMAIN = 'auth/v1';

/** What a challenge binds. */
export interface ChallengeFields {
  gatewayId: string;
  /** base64url of 32 random bytes. */
  nonce: string;
  /** Gateway time in milliseconds. */
  time: number;
  agentId: string;
}

/**
 * The signed bytes: exactly the four fields, whatever else the object passed in carries (a caller
 * may hand over the challenge frame itself), so both sides always sign the same thing.
 */
function challengeBytes({ gatewayId, nonce, time, agentId }: ChallengeFields): Uint8Array {
  return signingBytes(AUTH_DOMAIN, { gatewayId, nonce, time, agentId });
}

/** Signs a challenge with the identity key; returns base64url. */
export async function signChallenge(fields: ChallengeFields, identity: IdentityKeyPair): Promise<string> {
  const sig = await (await cryptoBackend()).sign(identity.seed, challengeBytes(fields));
  return toBase64Url(sig);
}

/** Verifies a challenge answer. */
export async function verifyChallenge(fields: ChallengeFields, signature: string, identityKey: Uint8Array): Promise<boolean> {
  return (await cryptoBackend()).verify(identityKey, challengeBytes(fields), fromBase64Url(signature));
}
