/**
 * The Anthropic Messages endpoint: POST /v1/messages, whole or streamed as the Messages API's
 * events (message_start … message_stop, or an `error` event when the reply breaks off).
 */
import type { FastifyPluginCallback } from 'fastify';
import {
  anthropicEvents,
  anthropicStopReason,
  messageBody,
  parseAnthropicRequest,
  type AnthropicEvent,
  type AnthropicRequest,
} from './anthropic.js';
import { errorObject } from './api-errors.js';
import { agentStopped, serveChat, type ChatDialect } from './chat-route.js';
import type { ProxyContext } from './proxy-options.js';

const event = (e: AnthropicEvent): string => `event: ${e.event}\ndata: ${JSON.stringify(e.data)}\n\n`;

/** How the Messages API reads requests and writes answers. */
export const anthropicDialect: ChatDialect<AnthropicRequest> = {
  api: 'anthropic',
  parse: parseAnthropicRequest,
  body: (result) => messageBody(result),
  stream(served, parsed) {
    return {
      start: () => anthropicEvents.start(served, parsed.model).map(event).join(''),
      delta: (text) => event(anthropicEvents.delta(text)),
      end(result) {
        const reason = anthropicStopReason(result.finishReason, result.stopSequence);
        if (reason === null) throw agentStopped();
        return anthropicEvents.end(result, reason).map(event).join('');
      },
      error: (error) => event({ event: 'error', data: { type: 'error', error: errorObject(error, 'anthropic') } }),
    };
  },
};

/** Registers POST /v1/messages. */
export const anthropicRoutes: FastifyPluginCallback<{ ctx: ProxyContext }> = (app, { ctx }, done) => {
  app.post('/v1/messages', async (request, reply) => {
    await serveChat(ctx, anthropicDialect, request, reply);
  });
  done();
};
