/**
 * src/shared: the protocol and the crypto every part of Nightjar speaks. Pure TypeScript that
 * runs unchanged in Node, Electron and the browser.
 */
export * from './errors.js';
export * from './encoding.js';
export * from './format.js';
export * from './lifecycle.js';
export * from './event.js';
export * from './backoff.js';
export * from './page-policy.js';
export * from './options.js';
export * from './log.js';
export * from './clock.js';
export * from './protocol/limits.js';
export * from './protocol/schemas.js';
export * from './protocol/codec.js';
export * from './protocol/json-depth.js';
export { cryptoBackend, naclBackend, createWebCryptoBackend, randomBytes, type CryptoBackend } from './crypto/backend.js';
export * from './crypto/hash.js';
export * from './crypto/keys.js';
export * from './crypto/bundle.js';
export * from './crypto/auth.js';
export * from './crypto/attestation.js';
export * from './crypto/envelope.js';
export * from './crypto/reply.js';
export * from './crypto/receipt.js';
export * from './crypto/countersign.js';
export * from './crypto/evidence.js';
export * from './crypto/catalog.js';
export * from './crypto/gateway-word.js';
export { pad, unpad, powerOfTwoBucket } from './crypto/padding.js';
export * from './control/contract.js';
export { ControlClient, parseSseBlock, type ControlClientOptions } from './control/client.js';
export type { BridgeResult, NightjarBridge, PreloadApi } from './control/bridge.js';
export * from './control/view.js';
export * from './operator-api.js';
export type * from './honesty/audit.js';
export * from './honesty/judge.js';
export * from './honesty/reveal.js';
