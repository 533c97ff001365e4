/**
 * Embeddings on the proxy: OpenAI's POST /v1/embeddings (`input` a string or an array of them,
 * `encoding_format` float or base64, `dimensions` only when it equals the model's width) and
 * Ollama's POST /api/embed (`input` a string or an array → `embeddings`, L2-normalised as Ollama
 * gives them) and its legacy POST /api/embeddings (`prompt` → `embedding`, as the model gives it).
 * Each request is one sealed embedding job through the SDK; refusals come in each API's shape.
 */
import type { FastifyPluginCallback, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { LIMITS, NightjarError } from '../../shared/index.js';
import type { EmbeddingsResult } from '../sdk/index.js';
import { ParamError, asNightjarError, type ApiFlavor } from './api-errors.js';
import { nightjarFields } from './openai.js';
import type { ProxyContext } from './proxy-options.js';

/** An embedding request as either API's parser returns it. */
export interface ParsedEmbeddings {
  model: string;
  input: string[];
  dimensions: number | undefined;
}

const inputSchema = z.union([z.string(), z.array(z.unknown()).max(LIMITS.maxEmbedInputs * 8)]);

/** Checks the texts of `input` (param named as the API names it): 1 to LIMITS.maxEmbedInputs non-empty strings of bounded length. */
function textsOf(input: unknown, param: string): string[] {
  if (input === undefined || input === null) throw new ParamError('NJ_BAD_REQUEST', param, `${param} is required`);
  const parsed = inputSchema.safeParse(input);
  if (!parsed.success) throw new ParamError('NJ_BAD_REQUEST', param, `${param} must be a string or an array of strings`);
  const list = typeof parsed.data === 'string' ? [parsed.data] : parsed.data;
  if (list.length === 0) throw new ParamError('NJ_BAD_REQUEST', param, `${param} must hold at least one text`);
  if (list.length > LIMITS.maxEmbedInputs) {
    throw new ParamError(
      'NJ_BAD_REQUEST',
      param,
      `${param} holds ${list.length} texts; at most ${LIMITS.maxEmbedInputs} per request (send several requests)`,
    );
  }
  return list.map((item, i) => {
    const at = typeof parsed.data === 'string' ? param : `${param}[${i}]`;
    if (typeof item !== 'string') {
      // Token arrays name tokens of OpenAI's tokenizers, not of the agent's model.
      throw new ParamError('NJ_UNSUPPORTED_FEATURE', at, `${at}: only text is supported (not token arrays); send the text itself`);
    }
    if (item === '') throw new ParamError('NJ_BAD_REQUEST', at, `${at} must not be empty`);
    if (item.length > LIMITS.maxEmbedInputLength) {
      throw new ParamError('NJ_BAD_REQUEST', at, `${at} is longer than ${LIMITS.maxEmbedInputLength} characters; split it`);
    }
    return item;
  });
}

const modelSchema = z.string().min(1).max(LIMITS.maxModelIdLength);

function modelOf(body: Record<string, unknown>): string {
  const parsed = modelSchema.safeParse(body['model']);
  if (!parsed.success) throw new ParamError('NJ_BAD_REQUEST', 'model', 'model is required: a model id the gateway offers');
  return parsed.data;
}

function bodyOf(body: unknown): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw new NightjarError('NJ_BAD_REQUEST', 'the body must be a JSON object');
  return body as Record<string, unknown>;
}

/** OpenAI's request: also `encoding_format`. */
export interface ParsedOpenAiEmbeddings extends ParsedEmbeddings {
  encodingFormat: 'float' | 'base64';
}

/** Parses and checks a POST /v1/embeddings body. */
export function parseOpenAiEmbeddings(raw: unknown): ParsedOpenAiEmbeddings {
  const body = bodyOf(raw);
  const format = body['encoding_format'] ?? 'float';
  if (format !== 'float' && format !== 'base64') {
    throw new ParamError('NJ_BAD_REQUEST', 'encoding_format', 'encoding_format must be float or base64');
  }
  const dimensions = body['dimensions'];
  if (dimensions !== undefined && dimensions !== null && (!Number.isInteger(dimensions) || (dimensions as number) < 1)) {
    throw new ParamError('NJ_BAD_REQUEST', 'dimensions', 'dimensions must be a positive integer');
  }
  if (typeof dimensions === 'number' && dimensions > LIMITS.maxEmbeddingDimensions) {
    throw new ParamError('NJ_BAD_REQUEST', 'dimensions', `dimensions may be at most ${LIMITS.maxEmbeddingDimensions}`);
  }
  return {
    model: modelOf(body),
    input: textsOf(body['input'], 'input'),
    dimensions: typeof dimensions === 'number' ? dimensions : undefined,
    encodingFormat: format,
  };
}

/** Parses and checks a POST /api/embed body (`input`) or, `legacy`, a POST /api/embeddings body (`prompt`). */
export function parseOllamaEmbed(raw: unknown, legacy: boolean): ParsedEmbeddings {
  const body = bodyOf(raw);
  const param = legacy ? 'prompt' : 'input';
  if (legacy && typeof body['prompt'] !== 'string')
    throw new ParamError('NJ_BAD_REQUEST', 'prompt', 'prompt is required: the text to embed');
  const dimensions = body['dimensions'];
  if (
    dimensions !== undefined &&
    dimensions !== null &&
    (!Number.isInteger(dimensions) || (dimensions as number) < 1 || (dimensions as number) > LIMITS.maxEmbeddingDimensions)
  ) {
    throw new ParamError('NJ_BAD_REQUEST', 'dimensions', `dimensions must be an integer from 1 to ${LIMITS.maxEmbeddingDimensions}`);
  }
  return { model: modelOf(body), input: textsOf(body[param], param), dimensions: typeof dimensions === 'number' ? dimensions : undefined };
}

/** A vector as OpenAI's base64 encoding gives it: the float32 values, little-endian, in standard base64. */
export function base64Floats(vector: Float32Array): string {
  const bytes = new Uint8Array(vector.length * 4);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < vector.length; i++) view.setFloat32(i * 4, vector[i]!, true);
  return Buffer.from(bytes).toString('base64');
}

/** `vector` scaled to unit length (a zero vector stays zero), as Ollama's /api/embed returns them. */
export function normalized(vector: Float32Array): number[] {
  let sum = 0;
  for (const v of vector) sum += v * v;
  const norm = Math.sqrt(sum);
  return Array.from(vector, (v) => (norm > 0 ? v / norm : 0));
}

/** The `list` object OpenAI answers with. */
export function openAiEmbeddingsBody(result: EmbeddingsResult, format: 'float' | 'base64'): Record<string, unknown> {
  return {
    object: 'list',
    data: result.embeddings.map((v, index) => ({
      object: 'embedding',
      index,
      embedding: format === 'base64' ? base64Floats(v) : Array.from(v),
    })),
    model: result.model,
    usage: { prompt_tokens: result.usage.promptTokens, total_tokens: result.usage.promptTokens },
    nightjar: nightjarFields(result),
  };
}

/**
 * An agent's refusal of `dimensions` (its width differs) as a parameter error naming it: the agent
 * says NJ_BAD_REQUEST, and only a request that sent dimensions can be refused for them.
 */
function withParam(error: NightjarError, parsed: ParsedEmbeddings): NightjarError {
  if (
    error.code === 'NJ_BAD_REQUEST' &&
    parsed.dimensions !== undefined &&
    /dimensions/.test(error.message) &&
    !(error instanceof ParamError)
  ) {
    return new ParamError('NJ_BAD_REQUEST', 'dimensions', error.message);
  }
  return error;
}

/** Serves one embedding request in a slot of the proxy and answers with `body` of its result. */
async function serveEmbeddings<P extends ParsedEmbeddings>(
  ctx: ProxyContext,
  api: ApiFlavor,
  request: FastifyRequest,
  reply: FastifyReply,
  parse: (body: unknown) => P,
  body: (result: EmbeddingsResult, parsed: P, ms: number) => unknown,
): Promise<void> {
  const { client, clock, logger } = ctx.options;
  const controller = ctx.requests.begin();
  reply.raw.on('close', () => {
    if (!reply.raw.writableFinished) controller.abort();
  });
  let code: NightjarError['code'] | null = null;
  const started = clock.now();
  try {
    const parsed = parse(request.body);
    let result: EmbeddingsResult;
    try {
      result = await client.embeddings({
        model: parsed.model,
        input: parsed.input,
        ...(parsed.dimensions === undefined ? {} : { dimensions: parsed.dimensions }),
        signal: controller.signal,
      });
    } catch (err) {
      throw withParam(asNightjarError(err), parsed);
    }
    logger.info('proxy request', {
      api,
      embeddings: parsed.input.length,
      model: parsed.model,
      agentId: result.agentId,
      promptTokens: result.usage.promptTokens,
      code: null,
      ms: clock.now() - started,
    });
    reply
      .code(200)
      .headers({
        'request-id': request.id,
        'x-request-id': request.id,
        'x-nightjar-agent': result.agentId,
        'x-nightjar-trust': result.trust,
        'x-nightjar-job': result.jobId,
      })
      .header('cache-control', 'no-store')
      .send(body(result, parsed, clock.now() - started));
  } catch (err) {
    code = asNightjarError(err).code;
    throw err;
  } finally {
    ctx.requests.end(controller, api, code);
  }
}

/** Registers POST /v1/embeddings, /api/embed and /api/embeddings. */
export const embeddingsRoutes: FastifyPluginCallback<{ ctx: ProxyContext }> = (app, { ctx }, done) => {
  app.post('/v1/embeddings', async (request, reply) => {
    await serveEmbeddings(ctx, 'openai', request, reply, parseOpenAiEmbeddings, (result, parsed) =>
      openAiEmbeddingsBody(result, parsed.encodingFormat),
    );
  });
  app.post('/api/embed', async (request, reply) => {
    await serveEmbeddings(
      ctx,
      'ollama',
      request,
      reply,
      (b) => parseOllamaEmbed(b, false),
      (result, _parsed, ms) => ({
        model: result.model,
        embeddings: result.embeddings.map(normalized),
        // Ollama's figures are nanoseconds; the proxy measured the whole request, and loads nothing.
        total_duration: ms * 1_000_000,
        load_duration: 0,
        prompt_eval_count: result.usage.promptTokens,
      }),
    );
  });
  app.post('/api/embeddings', async (request, reply) => {
    await serveEmbeddings(
      ctx,
      'ollama',
      request,
      reply,
      (b) => parseOllamaEmbed(b, true),
      (result) => ({ embedding: Array.from(result.embeddings[0]!) }),
    );
  });
  done();
};
