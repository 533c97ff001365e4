/**
 * Nightjar errors in the shapes OpenAI, Anthropic and Ollama clients understand: an HTTP status
 * their SDKs map to the right error class, a body in each API's own form (Ollama's is
 * `{ "error": "message" }`), and retry headers the SDKs obey (x-should-retry, retry-after-ms).
 */
import type { ErrorCode } from '../../shared/index.js';
import { NightjarError } from '../../shared/index.js';

/**
 * A request error about one parameter: `param` names it as the API spells it (OpenAI's error
 * `param`, e.g. `messages[2].tool_call_id`, `n`, `response_format`).
 */
export class ParamError extends NightjarError {
  /** The parameter, in the API's own field names. */
  readonly param: string;

  constructor(code: 'NJ_BAD_REQUEST' | 'NJ_UNSUPPORTED_FEATURE', param: string, message: string) {
    super(code, message);
    this.param = param;
  }
}

/** Which API a request speaks. */
export type ApiFlavor = 'openai' | 'anthropic' | 'ollama';

/** An error answer, ready to send. */
export interface ApiErrorAnswer {
  status: number;
  headers: Record<string, string>;
  body: unknown;
}

/** Codes a client may usefully send again as they are (after a wait). */
const RETRYABLE: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'NJ_NO_CAPACITY',
  'NJ_SHUTTING_DOWN',
  'NJ_AGENT_FAILED',
  'NJ_JOB_TIMEOUT',
  'NJ_GATEWAY_UNREACHABLE',
]);

/** The HTTP status a compatible client gets for `error` in `flavor`. */
export function statusFor(error: NightjarError, flavor: ApiFlavor): number {
  switch (error.code) {
    // The gateway speaking another protocol version is the proxy's upstream problem, not the caller's.
    case 'NJ_PROTOCOL_VERSION':
      return 502;
    // Both APIs answer a prompt that does not fit with 400, and clients look for it there.
    case 'NJ_CONTEXT_OVERFLOW':
      return 400;
    // Anthropic's API answers 529 when it is overloaded, and its SDK knows that status.
    case 'NJ_NO_CAPACITY':
      return flavor === 'anthropic' ? 529 : 503;
    default:
      return error.status;
  }
}

function openaiType(status: number): string {
  if (status === 401) return 'authentication_error';
  if (status === 403) return 'permission_error';
  if (status === 429) return 'rate_limit_error';
  if (status >= 500) return 'server_error';
  return 'invalid_request_error';
}

function openaiCode(code: ErrorCode): string {
  if (code === 'NJ_CONTEXT_OVERFLOW') return 'context_length_exceeded';
  if (code === 'NJ_MODEL_UNKNOWN') return 'model_not_found';
  if (code === 'NJ_PROXY_UNAUTHORIZED') return 'invalid_api_key';
  return code;
}

function anthropicType(status: number): string {
  switch (status) {
    case 400:
      return 'invalid_request_error';
    case 401:
      return 'authentication_error';
    case 403:
      return 'permission_error';
    case 404:
      return 'not_found_error';
    case 413:
      return 'request_too_large';
    case 429:
      return 'rate_limit_error';
    case 504:
      return 'timeout_error';
    case 529:
      return 'overloaded_error';
    default:
      return status < 500 ? 'invalid_request_error' : 'api_error';
  }
}

/**
 * The error object of one API, as it appears inside a body or a stream event (Ollama's is the
 * whole body, and the last line of a stream that broke off).
 */
export function errorObject(error: NightjarError, flavor: ApiFlavor, status = statusFor(error, flavor)): Record<string, unknown> {
  // The message carries the stable code and what to do, since generic clients show only the message.
  const message = `${error.code}: ${error.message}. ${error.hint}`;
  if (flavor === 'ollama') return { error: message };
  return flavor === 'openai'
    ? { message, type: openaiType(status), param: error instanceof ParamError ? error.param : null, code: openaiCode(error.code) }
    : { type: anthropicType(status), message };
}

/** The whole error answer for `error` in `flavor`. */
export function errorAnswer(error: NightjarError, flavor: ApiFlavor, requestId: string): ApiErrorAnswer {
  const status = statusFor(error, flavor);
  const headers: Record<string, string> = {
    'x-should-retry': RETRYABLE.has(error.code) ? 'true' : 'false',
    'request-id': requestId,
    'x-request-id': requestId,
  };
  if (error.retryAfterMs !== undefined) {
    headers['retry-after-ms'] = String(error.retryAfterMs);
    headers['retry-after'] = String(Math.ceil(error.retryAfterMs / 1000));
  }
  const body =
    flavor === 'ollama'
      ? errorObject(error, flavor, status)
      : flavor === 'openai'
        ? { error: errorObject(error, flavor, status) }
        : { type: 'error', error: errorObject(error, flavor, status), request_id: requestId };
  return { status, headers, body };
}

/** Any thrown value as a NightjarError (an unexpected one is a bug: NJ_INTERNAL). */
export function asNightjarError(err: unknown): NightjarError {
  if (err instanceof NightjarError) return err;
  return new NightjarError('NJ_INTERNAL', 'the proxy failed unexpectedly', { cause: err });
}
