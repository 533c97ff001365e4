/**
 * The OpenAI Responses endpoint: POST /v1/responses, a whole `response` object or its typed
 * server-sent events (`event: response.created` … `event: response.completed`, or an `error`
 * event when the reply breaks off), served through the same chat path as Chat Completions.
 */
import type { FastifyPluginCallback } from 'fastify';
import { agentStopped, serveChat, type ChatDialect } from './chat-route.js';
import type { ProxyContext } from './proxy-options.js';
import { ResponsesEvents, parseResponsesRequest, responseBody, type ResponsesEvent, type ResponsesRequest } from './responses.js';

const sse = (e: ResponsesEvent): string => `event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`;
const sseAll = (list: readonly ResponsesEvent[]): string => list.map(sse).join('');

/** How the Responses API reads requests and writes answers (errors in OpenAI's shape). */
export const responsesDialect: ChatDialect<ResponsesRequest> = {
  api: 'openai',
  parse: parseResponsesRequest,
  body: (result, created, _timing, parsed) => responseBody(result, created, parsed),
  stream(served, parsed, created) {
    const events = new ResponsesEvents(served, parsed, created);
    return {
      start: () => sseAll(events.start()),
      delta: (text) => sseAll(events.delta(text)),
      end(result) {
        if (result.finishReason === 'cancelled') throw agentStopped();
        return sseAll(events.end(result));
      },
      error: (error) => sse(events.error(error)),
    };
  },
};

/** Registers POST /v1/responses. */
export const responsesRoutes: FastifyPluginCallback<{ ctx: ProxyContext }> = (app, { ctx }, done) => {
  app.post('/v1/responses', async (request, reply) => {
    await serveChat(ctx, responsesDialect, request, reply);
  });
  done();
};
