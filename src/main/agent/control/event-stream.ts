/**
 * The control API's event stream: server-sent events, each control event as `event: <type>` with
 * its JSON, starting with the events that say how things stand, and a keep-alive comment on the
 * clock. Every open stream is a child of the server: disposing the streams ends them.
 */
import { TimerSlot } from '../../../shared/index.js';
import type { ServerResponse } from 'node:http';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ControlEvent, Disposable, Event } from '../../../shared/index.js';
import type { Clock } from '../../../shared/index.js';

/** Options of {@link EventStreams}. */
export interface EventStreamsOptions {
  /** The agent's control events. */
  events: Event<ControlEvent>;
  /** What every new stream starts with (the current state). */
  initialEvents: () => ControlEvent[];
  /** Interval of the keep-alive comment. */
  keepAliveMs: number;
  clock: Clock;
}

/** The open event streams. */
export class EventStreams implements Disposable {
  readonly #o: EventStreamsOptions;
  readonly #open = new Set<ServerResponse>();

  constructor(options: EventStreamsOptions) {
    this.#o = options;
  }

  /** Answers `request` with a stream that lasts until the client goes or the streams are disposed. */
  serve(request: FastifyRequest, reply: FastifyReply): void {
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      connection: 'keep-alive',
    });
    const send = (event: ControlEvent): void => {
      if (!res.writableEnded) res.write(`event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`);
    };
    for (const e of this.#o.initialEvents()) send(e);
    const subscription = this.#o.events(send);
    const keepAlive = new TimerSlot(this.#o.clock);
    const beat = (): void =>
      keepAlive.set(this.#o.keepAliveMs, () => {
        if (!res.writableEnded) res.write(': keep-alive\n\n');
        beat();
      });
    beat();
    this.#open.add(res);
    request.raw.on('close', () => {
      keepAlive.dispose();
      subscription.dispose();
      this.#open.delete(res);
    });
  }

  /** Ends every open stream. */
  dispose(): void {
    for (const res of this.#open) res.end();
  }
}
