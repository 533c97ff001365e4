/**
 * Ollama's REST API on the proxy, so tools built for Ollama work unchanged: POST /api/chat and
 * /api/generate (streamed by default as NDJSON lines, `application/x-ndjson`, the last one
 * `done: true` with the figures; or one object with `stream: false`), GET /api/tags, /api/ps and
 * /api/version, POST /api/show, and GET or HEAD / (the "is it up" check); /api/embed and
 * /api/embeddings are in embeddings-routes.ts. Model management is refused with Ollama's
 * `{ "error": … }` (501), as every other failure is answered in that shape (error-replies.ts),
 * unknown /api/* paths included (404).
 */
import type { FastifyPluginCallback, FastifyReply, FastifyRequest } from 'fastify';
import { NightjarError, type Clock } from '../../shared/index.js';
import { errorObject } from './api-errors.js';
import { agentStopped, serveChat, type ChatDialect } from './chat-route.js';
import { sendApiError } from './error-replies.js';
import {
  HONOURED_OPTIONS,
  OLLAMA_API_VERSION,
  UNKNOWN_TIME,
  ollamaBody,
  ollamaDoneReason,
  ollamaFigures,
  ollamaMessage,
  ollamaShow,
  ollamaTagRow,
  parseOllamaChat,
  parseOllamaGenerate,
  type OllamaModelFacts,
  type OllamaRequest,
} from './ollama.js';
import type { ProxyContext } from './proxy-options.js';

const line = (o: unknown): string => `${JSON.stringify(o)}\n`;

/** How /api/chat or /api/generate reads requests and writes answers; `clock` stamps each object's created_at. */
export function ollamaDialect(kind: OllamaRequest['kind'], clock: Clock): ChatDialect<OllamaRequest> {
  const now = (): string => new Date(clock.now()).toISOString();
  return {
    api: 'ollama',
    streamContentType: 'application/x-ndjson',
    parse: kind === 'chat' ? parseOllamaChat : parseOllamaGenerate,
    body: (result, _created, timing) => ollamaBody(kind, result, now(), timing),
    stream(_served, parsed) {
      const piece = (content: string): Record<string, unknown> =>
        kind === 'chat' ? { message: { role: 'assistant', content } } : { response: content };
      return {
        start: () => '',
        delta: (text) => line({ model: parsed.model, created_at: now(), ...piece(text), done: false }),
        end(result, timing) {
          const reason = ollamaDoneReason(result.finishReason);
          if (reason === null) throw agentStopped();
          // Ollama sends a stream's tool calls in a line of their own before the final one.
          const calls = result.toolCalls?.length
            ? line({ model: result.model, created_at: now(), message: ollamaMessage('', result.toolCalls), done: false })
            : '';
          return (
            calls +
            line({
              model: result.model,
              created_at: now(),
              ...piece(''),
              done: true,
              done_reason: reason,
              ...ollamaFigures(result, timing),
            })
          );
        },
        error: (error) => line(errorObject(error, 'ollama')),
      };
    },
  };
}

/** The offered models with what the gateway's signed catalog says of their files (nothing, if it cannot be had). */
async function offered(ctx: ProxyContext, signal: AbortSignal): Promise<OllamaModelFacts[]> {
  const { client, listSynthetic } = ctx.options;
  const models = (await client.models(signal)).filter((m) => listSynthetic || !m.synthetic);
  const catalog = await client.catalog(signal).catch((err: unknown) => {
    // The rows still list the models, with placeholders; a forged catalog also fails every chat, which says so.
    ctx.options.logger.warn('the gateway catalog could not be read; Ollama model rows show placeholders', {
      code: err instanceof NightjarError ? err.code : 'NJ_INTERNAL',
    });
    return null;
  });
  return models.map((m): OllamaModelFacts => {
    const files = catalog?.catalog.models.find((c) => c.id === m.id)?.files ?? [];
    const one = files.length === 1 ? files[0] : undefined;
    const same = <T>(pick: (f: (typeof files)[number]) => T): T | undefined =>
      files.length > 0 && files.every((f) => pick(f) === pick(files[0]!)) ? pick(files[0]!) : undefined;
    return {
      id: m.id,
      synthetic: m.synthetic,
      bytes: one?.bytes,
      sha256: one?.sha256,
      quantization: same((f) => f.quantization),
      contextLength: same((f) => f.contextLength),
    };
  });
}

function modelNotFound(model: string): NightjarError {
  return new NightjarError('NJ_MODEL_UNKNOWN', `model "${model.slice(0, 100)}" not found: no connected agent serves it (see /api/tags)`);
}

/** The model a body names, if it names one as a string. */
function modelOf(body: unknown): string | undefined {
  const m = typeof body === 'object' && body !== null ? (body as Record<string, unknown>)['model'] : undefined;
  return typeof m === 'string' && m !== '' ? m : undefined;
}

/**
 * Ollama's "load" request — a chat with no messages, a generate with no prompt — answered at once
 * with done_reason "load" ("unload" for keep_alive 0) when the model is offered: agents keep their
 * models loaded, and no request goes out. True if it was one.
 */
async function answeredLoad(
  ctx: ProxyContext,
  kind: OllamaRequest['kind'],
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<boolean> {
  const body = request.body as Record<string, unknown> | null;
  const model = modelOf(body);
  if (model === undefined || body === null) return false;
  const messages = body['messages'];
  const empty =
    kind === 'chat' ? messages === undefined || messages === null || (Array.isArray(messages) && messages.length === 0) : !body['prompt'];
  if (!empty) return false;
  const abort = new AbortController();
  reply.raw.on('close', () => abort.abort());
  if (!(await offered(ctx, abort.signal)).some((m) => m.id === model)) throw modelNotFound(model);
  const reason = body['keep_alive'] === 0 || body['keep_alive'] === '0' ? 'unload' : 'load';
  const created_at = new Date(ctx.options.clock.now()).toISOString();
  const piece = kind === 'chat' ? { message: { role: 'assistant', content: '' } } : { response: '' };
  await reply.header('cache-control', 'no-store').send({ model, created_at, ...piece, done: true, done_reason: reason });
  return true;
}

/** The names of the options a request sent that are ignored, as a header (at most 16 names of a-z, 0-9, _). */
function ignoredOptionsHeader(body: unknown): string | undefined {
  const options = typeof body === 'object' && body !== null ? (body as Record<string, unknown>)['options'] : undefined;
  if (typeof options !== 'object' || options === null) return undefined;
  const names = Object.keys(options)
    .filter((k) => /^[a-z0-9_]{1,40}$/.test(k) && !HONOURED_OPTIONS.has(k))
    .slice(0, 16);
  return names.length ? names.join(',') : undefined;
}

const NO_MANAGEMENT =
  "models cannot be pulled, pushed, created, copied or deleted through Nightjar's proxy: " +
  "each agent's owner chooses what it serves; /api/tags lists what the gateway offers";

/** Registers Ollama's endpoints (see the module comment). */
export const ollamaRoutes: FastifyPluginCallback<{ ctx: ProxyContext }> = (app, { ctx }, done) => {
  const chat = ollamaDialect('chat', ctx.options.clock);
  const generate = ollamaDialect('generate', ctx.options.clock);
  for (const [path, dialect] of [
    ['/api/chat', chat],
    ['/api/generate', generate],
  ] as const) {
    app.post(path, async (request, reply) => {
      if (await answeredLoad(ctx, dialect === chat ? 'chat' : 'generate', request, reply)) return;
      const ignored = ignoredOptionsHeader(request.body);
      if (ignored !== undefined) reply.header('x-nightjar-ignored-options', ignored);
      await serveChat(ctx, dialect, request, reply);
    });
  }
  // Ollama's CLI and some tools check the server is up with HEAD / (or GET /) before anything else.
  const alive = async (_request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> =>
    reply.header('cache-control', 'no-store').type('text/plain; charset=utf-8').send('Nightjar proxy is running');
  app.get('/', alive);
  app.head('/', alive);
  app.get('/api/version', async (_request, reply) => reply.header('cache-control', 'no-store').send({ version: OLLAMA_API_VERSION }));
  app.get('/api/tags', async (request, reply) => {
    const models = await offered(ctx, AbortSignal.timeout(30_000));
    return reply
      .header('request-id', request.id)
      .header('cache-control', 'no-store')
      .send({ models: models.map(ollamaTagRow) });
  });
  app.get('/api/ps', async (request, reply) => {
    const models = await offered(ctx, AbortSignal.timeout(30_000));
    const rows = models.map((m) => ({ ...ollamaTagRow(m), expires_at: UNKNOWN_TIME, size_vram: 0 }));
    return reply.header('request-id', request.id).header('cache-control', 'no-store').send({ models: rows });
  });
  app.post('/api/show', async (request, reply) => {
    const body = request.body as Record<string, unknown> | null;
    // Older clients send `name`.
    const model = modelOf(body) ?? modelOf({ model: body?.['name'] });
    if (model === undefined) throw new NightjarError('NJ_BAD_REQUEST', 'model is required');
    const found = (await offered(ctx, AbortSignal.timeout(30_000))).find((m) => m.id === model);
    if (found === undefined) throw modelNotFound(model);
    return reply.header('request-id', request.id).header('cache-control', 'no-store').send(ollamaShow(found));
  });
  for (const path of ['/api/pull', '/api/push', '/api/create', '/api/copy']) {
    app.post(path, async (_request, reply) =>
      sendApiError(reply, new NightjarError('NJ_UNSUPPORTED_FEATURE', NO_MANAGEMENT), 'ollama', 501),
    );
  }
  app.delete('/api/delete', async (_request, reply) =>
    sendApiError(reply, new NightjarError('NJ_UNSUPPORTED_FEATURE', NO_MANAGEMENT), 'ollama', 501),
  );
  done();
};
