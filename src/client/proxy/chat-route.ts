/**
 * Serving one chat request through the SDK, whichever API asked: a slot, the SDK request (that
 * the caller hanging up or the proxy's shutdown cancels), the whole answer or a stream
 * (server-sent events, or NDJSON lines for Ollama), and one log line without any text. What
 * differs between the APIs — the request's shape, the answer's, the events' — is a
 * {@link ChatDialect}.
 */
import type { OutgoingHttpHeaders } from 'node:http';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { NightjarError, type ChatMessage, type ResponseFormat, type Tool, type ToolChoice } from '../../shared/index.js';
import type { ChatResult, ServedBy } from '../sdk/index.js';
import { asNightjarError, type ApiFlavor } from './api-errors.js';
import type { ProxyContext } from './proxy-options.js';

/** A chat request as either API's parser returns it. */
export interface ParsedChat {
  model: string;
  messages: ChatMessage[];
  stream: boolean;
  maxTokens: number | undefined;
  temperature: number | undefined;
  topP: number | undefined;
  topK?: number | undefined;
  seed?: number | undefined;
  stop: string[] | undefined;
  frequencyPenalty?: number | undefined;
  presencePenalty?: number | undefined;
  tools?: Tool[] | undefined;
  toolChoice?: ToolChoice | undefined;
  responseFormat?: ResponseFormat | undefined;
}

/**
 * When a reply's parts happened, in ms on the proxy's clock: the request arriving, the first
 * chunk (undefined if none came), the end. What the proxy measured, not what the agent says.
 */
export interface ReplyTiming {
  startedMs: number;
  firstChunkMs: number | undefined;
  endedMs: number;
}

/** The events of one streamed reply, each method returning ready-to-write text. */
export interface DialectStream {
  /** What goes before the first piece of text. */
  start(): string;
  /** A piece of text. */
  delta(text: string): string;
  /** The end of a reply that finished; throws for one the agent cut short. */
  end(result: ChatResult, timing: ReplyTiming): string;
  /** The event that ends a stream which broke off. */
  error(error: NightjarError): string;
}

/** How one API's chat endpoint reads requests and writes answers. */
export interface ChatDialect<P extends ParsedChat> {
  readonly api: ApiFlavor;
  /** The content type of a streamed reply. Defaults to server-sent events (`text/event-stream; charset=utf-8`). */
  readonly streamContentType?: string;
  /** Parses and checks a request body; throws NJ_BAD_REQUEST or NJ_UNSUPPORTED_FEATURE. */
  parse(body: unknown): P;
  /** The answer to a request that did not ask to stream (`parsed` is its request). */
  body(result: ChatResult, created: number, timing: ReplyTiming, parsed: P): unknown;
  /** The events of a streamed reply served by `served`. */
  stream(served: ServedBy, parsed: P, created: number): DialectStream;
}

/** The error of a reply the agent stopped before it finished. */
export function agentStopped(): NightjarError {
  return new NightjarError('NJ_AGENT_FAILED', 'the agent stopped the reply before it finished (it may be shutting down); retry');
}

function servedHeaders(s: ServedBy, requestId: string): Record<string, string> {
  return {
    'request-id': requestId,
    'x-request-id': requestId,
    'x-nightjar-agent': s.agentId,
    'x-nightjar-trust': s.trust,
    'x-nightjar-job': s.jobId,
  };
}

/** Writes `text`, waiting while the socket is full (or until it closes). */
async function write(res: FastifyReply['raw'], text: string): Promise<void> {
  if (res.destroyed || res.writableEnded) return;
  if (res.write(text)) return;
  await new Promise<void>((resolve) => {
    const done = (): void => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

/** The error to report when `controller` was aborted: the proxy's reason (shutdown), else `err`. */
function endingError(controller: AbortController, err: unknown): NightjarError {
  const reason: unknown = controller.signal.aborted ? controller.signal.reason : undefined;
  return reason instanceof NightjarError ? reason : asNightjarError(err);
}

/**
 * Serves one chat request with `dialect`. Resolves once the answer is written (null) or the
 * stream ended in an error event (that error); rejects with an error not yet answered.
 */
async function answer<P extends ParsedChat>(
  ctx: ProxyContext,
  dialect: ChatDialect<P>,
  request: FastifyRequest,
  reply: FastifyReply,
  controller: AbortController,
): Promise<NightjarError | null> {
  const { client, clock, logger, defaultMaxTokens } = ctx.options;
  const parsed = dialect.parse(request.body);
  const started = clock.now();
  const created = Math.floor(started / 1000);
  const stream = client.chat({
    model: parsed.model,
    messages: parsed.messages,
    maxTokens: parsed.maxTokens ?? defaultMaxTokens,
    temperature: parsed.temperature,
    topP: parsed.topP,
    topK: parsed.topK,
    seed: parsed.seed,
    stop: parsed.stop,
    frequencyPenalty: parsed.frequencyPenalty,
    presencePenalty: parsed.presencePenalty,
    tools: parsed.tools,
    toolChoice: parsed.toolChoice,
    responseFormat: parsed.responseFormat,
    signal: controller.signal,
  });
  let firstChunkMs: number | undefined;
  // Settles with the first chunk, whole replies too; its failure is the result's, handled below.
  void stream.served.then(
    () => (firstChunkMs ??= clock.now()),
    () => undefined,
  );
  const timing = (): ReplyTiming => ({ startedMs: started, firstChunkMs, endedMs: clock.now() });
  const logEnd = (result: ChatResult | null, error: NightjarError | null): void =>
    logger.info('proxy request', {
      api: dialect.api,
      stream: parsed.stream,
      model: parsed.model,
      agentId: result?.agentId ?? null,
      promptTokens: result?.usage.promptTokens ?? null,
      completionTokens: result?.usage.completionTokens ?? null,
      code: error?.code ?? null,
      ms: clock.now() - started,
    });
  const fail = (err: unknown): never => {
    const error = endingError(controller, err);
    logEnd(null, error);
    throw error;
  };

  if (!parsed.stream) {
    const result = await stream.result.catch(fail);
    if (result.finishReason === 'cancelled') fail(agentStopped());
    logEnd(result, null);
    reply
      .code(200)
      .headers(servedHeaders(result, request.id))
      .header('cache-control', 'no-store')
      .send(dialect.body(result, created, timing(), parsed));
    return null;
  }

  // Headers wait for the first chunk, so a failure before it is a proper HTTP error the
  // caller's SDK can classify and retry.
  const served = await stream.served.catch(fail);
  firstChunkMs ??= clock.now();
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, {
    ...(reply.getHeaders() as OutgoingHttpHeaders),
    'content-type': dialect.streamContentType ?? 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    'x-accel-buffering': 'no',
    ...servedHeaders(served, request.id),
  });
  const events = dialect.stream(served, parsed, created);
  try {
    await write(res, events.start());
    for await (const delta of stream) await write(res, events.delta(delta));
    const result = await stream.result;
    await write(res, events.end(result, timing()));
    logEnd(result, null);
    return null;
  } catch (err) {
    const error = endingError(controller, err);
    logEnd(null, error);
    // The stream ends with an error event and no finish: the text so far is not a complete
    // answer. A caller that hung up is told nothing.
    await write(res, events.error(error));
    return error;
  } finally {
    res.end();
  }
}

/** Serves a chat request in a slot of the proxy; a full proxy answers NJ_NO_CAPACITY at once. */
export async function serveChat<P extends ParsedChat>(
  ctx: ProxyContext,
  dialect: ChatDialect<P>,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<void> {
  const controller = ctx.requests.begin();
  // The caller closing its connection (or its SDK aborting) cancels the job at the agent.
  reply.raw.on('close', () => {
    if (!reply.raw.writableFinished) controller.abort();
  });
  let code: NightjarError['code'] | null = null;
  try {
    code = (await answer(ctx, dialect, request, reply, controller))?.code ?? null;
  } catch (err) {
    code = asNightjarError(err).code;
    throw err;
  } finally {
    ctx.requests.end(controller, dialect.api, code);
  }
}
