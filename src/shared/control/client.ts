/**
 * A typed client of the agent's control API, for the CLI, tests and browser dashboards. Runs
 * wherever `fetch` does.
 */
import { NightjarError, errorFromPayload } from '../errors.js';
import { describeIssues } from '../protocol/codec.js';
import { httpErrorSchema } from '../protocol/schemas.js';
import {
  CONTROL_EVENTS_PATH,
  CONTROL_METHODS,
  controlEventSchema,
  controlPath,
  type ControlEvent,
  type ControlInput,
  type ControlMethod,
  type ControlOutput,
} from './contract.js';

/** Options of {@link ControlClient}. */
export interface ControlClientOptions {
  /** The agent's control address, e.g. http://127.0.0.1:49152. Required. */
  baseUrl: string;
  /** The bearer token from the agent's control file. Required. */
  token: string;
  /** The fetch to use. Defaults to the global fetch. */
  fetch?: typeof fetch;
}

/** Calls a running agent's control methods and reads its event stream. */
export class ControlClient {
  readonly #o: ControlClientOptions;
  readonly #fetch: typeof fetch;

  constructor(options: ControlClientOptions) {
    this.#o = options;
    this.#fetch = options.fetch ?? ((input, init) => fetch(input, init));
  }

  /**
   * Calls `method`. Throws the agent's error as a NightjarError (its code and message), or
   * NJ_AGENT_NOT_RUNNING when nothing answers at the address.
   */
  async call<M extends ControlMethod>(method: M, input: ControlInput<M>, signal?: AbortSignal): Promise<ControlOutput<M>> {
    const response = await this.#request(controlPath(method), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(input),
      ...(signal ? { signal } : {}),
    });
    const body: unknown = await response.json().catch(() => null);
    if (!response.ok) throw errorFrom(response.status, body);
    const parsed = CONTROL_METHODS[method].output.safeParse(body);
    if (!parsed.success) {
      throw new NightjarError('NJ_FRAME_INVALID', `the agent's ${method} answer is invalid at ${describeIssues(parsed.error)}`);
    }
    return parsed.data as ControlOutput<M>;
  }

  /** The event stream, until `signal` aborts or the agent closes it. Malformed events are skipped. */
  async *events(signal: AbortSignal): AsyncGenerator<ControlEvent> {
    const response = await this.#request(CONTROL_EVENTS_PATH, { method: 'GET', headers: { accept: 'text/event-stream' }, signal });
    if (!response.ok || !response.body) throw errorFrom(response.status, await response.json().catch(() => null));
    const decoder = new TextDecoder();
    let buffer = '';
    const reader = response.body.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read().catch((err: unknown) => {
          if (signal.aborted) return { done: true as const, value: undefined };
          throw err;
        });
        if (done) return;
        buffer += decoder.decode(value, { stream: true });
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event = parseSseBlock(block);
          if (event) yield event;
        }
      }
    } finally {
      await reader.cancel().catch(() => undefined);
    }
  }

  async #request(path: string, init: RequestInit): Promise<Response> {
    try {
      return await this.#fetch(new URL(path, this.#o.baseUrl), {
        ...init,
        headers: { ...(init.headers as Record<string, string>), authorization: `Bearer ${this.#o.token}` },
      });
    } catch (cause) {
      if (init.signal?.aborted) throw cause;
      throw new NightjarError('NJ_AGENT_NOT_RUNNING', `no agent answers at ${this.#o.baseUrl}`, { cause });
    }
  }
}

/** Parses one server-sent event block (`event:` and `data:` lines) into a control event. */
export function parseSseBlock(block: string): ControlEvent | undefined {
  const data = block
    .split('\n')
    .filter((line) => line.startsWith('data:'))
    .map((line) => line.slice(5).replace(/^ /, ''))
    .join('\n');
  if (data === '') return undefined;
  try {
    const parsed = controlEventSchema.safeParse(JSON.parse(data));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

function errorFrom(status: number, body: unknown): NightjarError {
  const parsed = httpErrorSchema.safeParse(body);
  if (parsed.success) return errorFromPayload(parsed.data.error);
  return new NightjarError(status === 401 ? 'NJ_CONTROL_UNAUTHORIZED' : 'NJ_INTERNAL', `the agent answered HTTP ${status}`);
}
