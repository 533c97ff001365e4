/**
 * src/client: the SDK (browser-safe, ./sdk), the OpenAI/Anthropic-compatible proxy, the client's
 * local files (pins, receipt log) and the builder of the browser chat page. The client's commands
 * (`nightjar chat`, `proxy`, `models offered`, `receipts --client`) live in src/cli/client.
 */
export * from './sdk/index.js';
export { createNodeFetch, nodeFetch, NODE_FETCH_DEFAULTS, type NodeFetch, type NodeFetchOptions } from './node-fetch.js';
export { CompatProxy } from './proxy/proxy.js';
export { PROXY_DEFAULTS, isLoopbackHost, type CompatProxyOptions } from './proxy/proxy-options.js';
export type { ProxyRequestFinished } from './proxy/active-requests.js';
export { clientDataDir, type ClientDataDirOptions } from './store/data-dir.js';
export { FilePinStore, PIN_FILE_DEFAULTS, PIN_FILE_NAME, type FilePinStoreOptions, type PinFile } from './store/pin-file.js';
export {
  FileGatewayKeyStore,
  GATEWAY_KEY_FILE_DEFAULTS,
  GATEWAY_KEY_FILE_NAME,
  type FileGatewayKeyStoreOptions,
  type GatewayKeyFileEntry,
} from './store/gateway-key-file.js';
export {
  VerifiedReceiptLog,
  RECEIPT_LOG_DEFAULTS,
  RECEIPT_LOG_NAME,
  type VerifiedReceiptLogEntry,
  type VerifiedReceiptLogContents,
  type VerifiedReceiptLogOptions,
} from './store/receipt-log.js';
export {
  buildChatPage,
  CHAT_PAGE_DEFAULTS,
  CHAT_PAGE_HTML,
  CHAT_PAGE_CSS,
  CHAT_PAGE_ICON,
  type BuildChatPageOptions,
  type BuiltChatPage,
} from './chat-page.js';
export * from './audit/index.js';
