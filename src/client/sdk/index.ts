/**
 * The client SDK's front door; runs in Node and in the browser (fetch and WebCrypto only).
 */
export {
  NightjarClient,
  IncompleteReplyError,
  newCacheKey,
  CLIENT_DEFAULTS,
  TRUST_DEFAULTS,
  type NightjarClientOptions,
  type ChatRequest,
  type ChatResult,
  type EmbeddingsRequest,
  type EmbeddingsResult,
  type RevealResult,
  type ChatStream,
  type RetryInfo,
  type ServedBy,
  type TrustPolicy,
} from './client.js';
export { MemoryPinStore, type PinStore } from './pins.js';
export { MemoryGatewayKeyStore, type GatewayKeyStore, type GatewayPinReason } from './gateway-pins.js';
export {
  DEFAULT_RETRY_ON,
  RETRY_DEFAULTS,
  resolveRetryPolicy,
  retryDelay,
  type RetryPolicy,
  type RetryState,
  type ResolvedRetryPolicy,
} from './retry.js';
export { readNdjson } from './ndjson.js';
