/**
 * src/node: what every Node-side layer shares (the agent, the gateway, the client's Node half and
 * the CLI) but the browser cannot run — the pino-backed logger, the machine's Nightjar folders,
 * and the fastify plugins for security headers, static pages and error answers. It imports only
 * src/shared.
 */
export { createLogger, REDACTED, REDACTED_FIELDS, type LoggerOptions } from './logger.js';
export { nightjarDirs, type NightjarDirs, type NightjarDirsOptions } from './paths.js';
export {
  cheapRefusals,
  nightjarErrors,
  securityHeaders,
  sendNightjarError,
  staticPages,
  type CheapRefusalsOptions,
  type NightjarErrorsOptions,
  type SecurityHeadersOptions,
  type StaticPagesOptions,
  type StaticSite,
} from './web.js';
