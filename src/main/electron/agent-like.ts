/** The agent as the shell sees it: an AgentService's control methods, events and lifecycle end. */
import type { AsyncResource, ControlEvent, Event } from '../../shared/index.js';
import type { ControlHandlers } from '../agent/index.js';

/** What the shell needs of the agent (AgentService satisfies it). */
export interface AgentLike extends AsyncResource {
  /** The control methods (the same the loopback API serves). */
  readonly handlers: ControlHandlers;
  /** Every control event. */
  readonly onEvent: Event<ControlEvent>;
  /** Stops taking jobs, drains running ones within the policy's grace, says goodbye, stops. */
  dispose(): Promise<void>;
}
