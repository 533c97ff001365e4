/**
 * The agent's state — stopped, waiting, loading, serving, draining, paused or error — with why
 * and since when, kept in one place. One owner writes it: the {@link AgentRuntime} when it drives
 * the agent, or an {@link Agent} that runs on its own (`nightjar up`, tests). Everything else
 * reads it and hears each change: the Agent sends a heartbeat when the state changes and takes
 * jobs only while it is 'serving'; the service streams it to the dashboard.
 */
import { loggedEmitter } from '../../shared/index.js';
import type { AgentState, Clock, Decision, Event, Logger, StateReason } from '../../shared/index.js';

/** The state with why and since when, as the state event carries it. */
export interface AgentStateChange {
  readonly state: AgentState;
  /** When the state last changed (ms since the epoch). */
  readonly since: number;
  /** Why the agent is in this state, in words a person can act on. */
  readonly reason: StateReason | null;
  /** The policy's decision when the state was set. */
  readonly decision: Decision | null;
}

/** The state as its readers see it. */
export interface AgentStateSource {
  /** The state now. */
  readonly state: AgentState;
  /** The state now, with why and since when. */
  readonly current: AgentStateChange;
  /** Fires when the state or its reason changes. */
  readonly onChange: Event<AgentStateChange>;
}

/** Options of {@link AgentStateStore}. */
export interface AgentStateStoreOptions {
  /** Stamps `since`. Required. */
  clock: Clock;
  /** Where a throwing listener is logged. Required. */
  logger: Logger;
}

/** The one place the agent's state is kept, written by its owner. */
export class AgentStateStore implements AgentStateSource {
  readonly #clock: Clock;
  readonly #emitter;
  #current: AgentStateChange;

  constructor(options: AgentStateStoreOptions) {
    this.#clock = options.clock;
    this.#emitter = loggedEmitter<AgentStateChange>(options.logger, 'agent state');
    this.#current = { state: 'stopped', since: this.#clock.now(), reason: null, decision: null };
    this.onChange = this.#emitter.event;
  }

  readonly onChange: Event<AgentStateChange>;

  get state(): AgentState {
    return this.#current.state;
  }

  get current(): AgentStateChange {
    return this.#current;
  }

  /**
   * Sets the state and why; `since` moves only when the state changes. Fires (and returns true)
   * when the state or the reason's code or message changed.
   */
  set(state: AgentState, reason: StateReason | null = null, decision: Decision | null = this.#current.decision): boolean {
    const was = this.#current;
    if (state === was.state && reason?.code === was.reason?.code && reason?.message === was.reason?.message) return false;
    this.#current = { state, since: state === was.state ? was.since : this.#clock.now(), reason, decision };
    this.#emitter.fire(this.#current);
    return true;
  }

  /** Drops every listener. */
  dispose(): void {
    this.#emitter.dispose();
  }
}
