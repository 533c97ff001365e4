/**
 * The OpenAI Chat Completions endpoint: POST /v1/chat/completions, whole or streamed as
 * `chat.completion.chunk` events ending in `data: [DONE]`, with the usage chunk when
 * `stream_options.include_usage` asks for it.
 */
import type { FastifyPluginCallback } from 'fastify';
import { errorObject } from './api-errors.js';
import { agentStopped, serveChat, type ChatDialect } from './chat-route.js';
import { OpenAiChunks, completionBody, openAiFinishReason, parseOpenAiRequest, type OpenAiRequest } from './openai.js';
import type { ProxyContext } from './proxy-options.js';

const data = (o: unknown): string => `data: ${JSON.stringify(o)}\n\n`;

/** How the Chat Completions API reads requests and writes answers. */
export const openAiDialect: ChatDialect<OpenAiRequest> = {
  api: 'openai',
  parse: parseOpenAiRequest,
  body: completionBody,
  stream(served, parsed, created) {
    const chunks = new OpenAiChunks(served.jobId, parsed.model, created, parsed.includeUsage);
    return {
      start: () => data(chunks.role()),
      delta: (text) => data(chunks.content(text)),
      end(result) {
        const reason = openAiFinishReason(result.finishReason);
        if (reason === null) throw agentStopped();
        const calls = result.toolCalls ? data(chunks.toolCalls(result.toolCalls)) : '';
        return calls + data(chunks.finish(reason)) + (parsed.includeUsage ? data(chunks.usage(result)) : '') + 'data: [DONE]\n\n';
      },
      error: (error) => data({ error: errorObject(error, 'openai') }),
    };
  },
};

/** Registers POST /v1/chat/completions. */
export const openAiRoutes: FastifyPluginCallback<{ ctx: ProxyContext }> = (app, { ctx }, done) => {
  app.post('/v1/chat/completions', async (request, reply) => {
    await serveChat(ctx, openAiDialect, request, reply);
  });
  done();
};
