/** The agent as the shell sees it: an AgentService's control methods, events and stop. */
import type { ControlEvent } from '../../shared/index.js';
import type { ControlHandlers } from '../agent/index.js';

/** What the shell needs of the agent (AgentService satisfies it). */
export interface AgentLike {
  /** The control methods (the same the loopback API serves). */
  readonly handlers: ControlHandlers;
  /** Subscribes to control events; returns the unsubscribe. */
  onEvent(listener: (event: ControlEvent) => void): () => void;
  /** Stops taking jobs, drains running ones within the policy's grace, says goodbye, stops. */
  stop(): Promise<void>;
}
