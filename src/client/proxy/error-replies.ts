/**
 * Every failure of the proxy answered in the caller's own API shape (api-errors.ts): a refusal
 * of the gate, a body too large or unreadable, an unknown path, an SDK error, a bug.
 */
import type { FastifyError, FastifyPluginCallback, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { NightjarError, type Logger } from '../../shared/index.js';
import { asNightjarError, errorAnswer, type ApiFlavor } from './api-errors.js';

/** Which API a request speaks: by its path, else by the header only Anthropic clients send. */
export function flavorOf(request: FastifyRequest): ApiFlavor {
  const path = request.url;
  if (path.startsWith('/v1/messages')) return 'anthropic';
  if (path.startsWith('/v1/chat/') || path.startsWith('/v1/responses')) return 'openai';
  if (path.startsWith('/api/')) return 'ollama';
  return request.headers['anthropic-version'] !== undefined ? 'anthropic' : 'openai';
}

/** Answers `error` in `api`'s shape; `status` overrides the status its code maps to. */
export function sendApiError(reply: FastifyReply, error: NightjarError, api: ApiFlavor, status?: number): FastifyReply {
  const answer = errorAnswer(error, api, reply.request.id);
  return reply
    .code(status ?? answer.status)
    .headers({ ...answer.headers, 'cache-control': 'no-store' })
    .send(answer.body);
}

/** Answers a request for a path the proxy does not serve: 404, in the caller's API shape. */
export function sendNotFound(request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const path = request.url.split('?')[0] ?? '/';
  const unknown = new NightjarError('NJ_BAD_REQUEST', `no such endpoint: ${request.method} ${path.slice(0, 100)}`);
  return sendApiError(reply, unknown, flavorOf(request), 404);
}

/** Options of {@link apiErrorReplies}. */
export interface ApiErrorRepliesOptions {
  /** The body limit, for the message of a body too large. Required. */
  maxBodyBytes: number;
  /** Where unexpected failures are logged (their message only, never a body). Required. */
  logger: Logger;
}

/** The NightjarError a failure that reached fastify's error handler stands for. */
function asProxyError(err: FastifyError | NightjarError, maxBodyBytes: number): NightjarError {
  if (err instanceof NightjarError) return err;
  if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE' || err.statusCode === 413) {
    return new NightjarError('NJ_PAYLOAD_TOO_LARGE', `the request body exceeds ${maxBodyBytes} bytes`);
  }
  if (err.code?.startsWith('FST_ERR_CTP_') || err instanceof SyntaxError) {
    return new NightjarError('NJ_BAD_REQUEST', 'the request body is not JSON');
  }
  if (err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500) {
    return new NightjarError('NJ_BAD_REQUEST', 'the request could not be read');
  }
  return asNightjarError(err);
}

/** The error handler and not-found handler of the server it is registered on. */
export const apiErrorReplies: FastifyPluginCallback<ApiErrorRepliesOptions> = fp<ApiErrorRepliesOptions>(
  async (app, o) => {
    app.setErrorHandler((err: FastifyError | NightjarError, request, reply) => {
      const error = asProxyError(err, o.maxBodyBytes);
      if (error.code === 'NJ_INTERNAL') o.logger.error('proxy request failed', { err: err.message });
      return sendApiError(reply, error, flavorOf(request));
    });
    app.setNotFoundHandler(sendNotFound);
  },
  { name: 'nightjar-proxy-error-replies' },
);
