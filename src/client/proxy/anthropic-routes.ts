/**
 * The Anthropic Messages endpoints: POST /v1/messages, whole or streamed as the Messages API's
 * events (message_start … message_stop, or an `error` event when the reply breaks off), and
 * POST /v1/messages/count_tokens, refused (501) with the reason.
 */
import type { FastifyPluginCallback } from 'fastify';
import { NightjarError } from '../../shared/index.js';
import {
  AnthropicEvents,
  anthropicStopReason,
  messageBody,
  parseAnthropicRequest,
  type AnthropicEvent,
  type AnthropicRequest,
} from './anthropic.js';
import { errorObject } from './api-errors.js';
import { agentStopped, serveChat, type ChatDialect } from './chat-route.js';
import { sendApiError } from './error-replies.js';
import type { ProxyContext } from './proxy-options.js';

const event = (e: AnthropicEvent): string => `event: ${e.event}\ndata: ${JSON.stringify(e.data)}\n\n`;
const events = (list: readonly AnthropicEvent[]): string => list.map(event).join('');

/** How the Messages API reads requests and writes answers. */
export const anthropicDialect: ChatDialect<AnthropicRequest> = {
  api: 'anthropic',
  parse: parseAnthropicRequest,
  body: (result) => messageBody(result),
  stream(served, parsed) {
    const stream = new AnthropicEvents(served, parsed.model, parsed.tools !== undefined);
    return {
      start: () => events(stream.start()),
      delta: (text) => events(stream.delta(text)),
      end(result) {
        const reason = anthropicStopReason(result.finishReason, result.stopSequence);
        if (reason === null) throw agentStopped();
        return events(stream.end(result, reason));
      },
      error: (error) => event({ event: 'error', data: { type: 'error', error: errorObject(error, 'anthropic') } }),
    };
  },
};

/**
 * Why token counting is refused: an honest count is the model's own tokenizer on the prompt as
 * its chat template renders it, and only an agent has both; the proxy will not guess.
 */
export function countTokensRefusal(): NightjarError {
  return new NightjarError(
    'NJ_UNSUPPORTED_FEATURE',
    "POST /v1/messages/count_tokens is not served: an honest count needs the model's own tokenizer on the rendered prompt, " +
      'which only the agent has; send the request to /v1/messages and read usage.input_tokens (a billed job)',
  );
}

/** Registers POST /v1/messages and POST /v1/messages/count_tokens. */
export const anthropicRoutes: FastifyPluginCallback<{ ctx: ProxyContext }> = (app, { ctx }, done) => {
  app.post('/v1/messages', async (request, reply) => {
    await serveChat(ctx, anthropicDialect, request, reply);
  });
  app.post('/v1/messages/count_tokens', async (_request, reply) => sendApiError(reply, countTokensRefusal(), 'anthropic', 501));
  done();
};
