/**
 * The compatible proxy's options, their one defaults object, and what every part of the proxy
 * shares once they are resolved.
 */
import { LIMITS, NightjarError, silentLogger, systemClock, withDefaults, type Clock, type Logger } from '../../shared/index.js';
import type { NightjarClient } from '../sdk/index.js';
import type { ActiveRequests } from './active-requests.js';

/** Options of {@link CompatProxy.start}. */
export interface CompatProxyOptions {
  /** The SDK client every request goes through (gateway, API key, trust policy, retries). Required. */
  client: NightjarClient;
  /** Interface to listen on. Anything but a loopback address needs `token`. Defaults to '127.0.0.1'. */
  host?: string;
  /** TCP port; 0 picks a free one. Defaults to 8788. */
  port?: number;
  /**
   * Local token callers must send, as `Authorization: Bearer <token>` (OpenAI clients) or
   * `x-api-key: <token>` (Anthropic clients). Defaults to none: any local program may call.
   */
  token?: string;
  /** Web origins allowed to call the proxy from a page (CORS); no other origin is. Defaults to none. */
  allowOrigins?: readonly string[];
  /** List synthetic development models under /v1/models. Defaults to false. */
  listSynthetic?: boolean;
  /** max tokens of an OpenAI request that names none (at most the protocol's limit). Defaults to 1024. */
  defaultMaxTokens?: number;
  /** Largest request body; a larger one is answered 413 in the caller's API shape. Defaults to 8 MiB. */
  maxBodyBytes?: number;
  /** Deepest nesting of a JSON body, checked by a byte scan before it is parsed (at most LIMITS.maxJsonDepth). Defaults to 64. */
  maxJsonDepth?: number;
  /** Concurrent chat requests; more are answered "no capacity" at once. Defaults to 64. */
  maxConcurrent?: number;
  /** How long dispose() lets running replies finish before cancelling them. Defaults to 5 000 ms. */
  shutdownGraceMs?: number;
  /** Clock for the `created` times of responses, request timings and the shutdown grace. Defaults to the system clock. */
  clock?: Clock;
  /** Where request lines go (never prompt or reply text). Defaults to a silent logger. */
  logger?: Logger;
}

/** {@link CompatProxyOptions} with every default filled in. */
export interface ResolvedProxyOptions extends Readonly<Required<Omit<CompatProxyOptions, 'token'>>> {
  readonly token: string | undefined;
}

/** The defaults of {@link CompatProxyOptions}. */
export const PROXY_DEFAULTS: Readonly<Omit<ResolvedProxyOptions, 'client'>> = {
  host: '127.0.0.1',
  port: 8788,
  token: undefined,
  allowOrigins: [],
  listSynthetic: false,
  defaultMaxTokens: 1024,
  maxBodyBytes: 8 * 1024 * 1024,
  maxJsonDepth: LIMITS.maxJsonDepth,
  maxConcurrent: 64,
  shutdownGraceMs: 5000,
  clock: systemClock,
  logger: silentLogger,
};

const LOOPBACK_NAMES = new Set(['localhost', '127.0.0.1', '::1', '[::1]']);

/** True if `host` names the loopback interface. */
export function isLoopbackHost(host: string): boolean {
  return LOOPBACK_NAMES.has(host) || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** `options` over {@link PROXY_DEFAULTS}, checked. Throws NJ_CONFIG_INVALID for a setup that is not safe. */
export function resolveProxyOptions(options: CompatProxyOptions): ResolvedProxyOptions {
  const o = withDefaults(PROXY_DEFAULTS, options);
  if (!isLoopbackHost(o.host) && !o.token) {
    throw new NightjarError(
      'NJ_CONFIG_INVALID',
      `listening on ${o.host} (not loopback) needs a token; pass one with --token-file or NIGHTJAR_PROXY_TOKEN`,
    );
  }
  // An empty token is no token.
  return {
    ...o,
    client: options.client,
    token: o.token || undefined,
    defaultMaxTokens: Math.min(o.defaultMaxTokens, LIMITS.maxTokens),
    maxJsonDepth: Math.min(o.maxJsonDepth, LIMITS.maxJsonDepth),
  };
}

/** What the proxy's plugins share: the options, the requests being served, and whether it is stopping. */
export interface ProxyContext {
  readonly options: ResolvedProxyOptions;
  readonly requests: ActiveRequests;
  /** True once dispose() began: new requests are answered NJ_SHUTTING_DOWN. */
  readonly closing: () => boolean;
}
