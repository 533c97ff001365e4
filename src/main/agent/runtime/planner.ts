/**
 * What the runtime does next, decided without doing it: a pure function from what the runtime
 * knows (the policy's decision, an error it holds, what the owner asked for, what is loaded,
 * connected and draining) to the one next {@link Step}. The runtime (runtime.ts) carries each step
 * out — it owns the timers, the Agent, the engine and the power-save blocker — and asks again,
 * until the answer is `rest`. The policy is therefore tested as a table (planner.test.ts).
 *
 * Order of concerns, first match wins:
 * 1. No decision yet: rest.
 * 2. The selected model changed: drain running jobs, unload the model, forget the choice.
 * 3. The gateway changed: drain running jobs, drop the link (the next connect goes to the new one).
 * 4. Paused: stand down (drain, goodbye 'paused', disconnect), whatever else holds.
 * 5. An error is held: retry it once its time has come; else drain, say 'error', disconnect and
 *    unload, and stay there.
 * 6. Serve: link known, model chosen, connected, model kept, loaded, then serving.
 * 7. Wait (owner active, on battery, too hot, no reading): drain, stay connected as 'waiting',
 *    unload after the delay. Off (outside the schedule): drain, goodbye 'schedule', disconnect.
 */
import type { AgentState, Decision, StateReason } from '../../../shared/index.js';
import { describeDecision } from '../policy/policy.js';

/** What the runtime knows when it plans. */
export interface PlanInput {
  /** The policy's last decision; null before the first reading. */
  readonly decision: Decision | null;
  /** The error the runtime holds: why, and when it may be retried (null: only the owner clears it). */
  readonly error: { readonly reason: StateReason; readonly retryAt: number | null } | null;
  /** The time now (ms since the epoch). */
  readonly now: number;
  /** The owner selected another model: the current one must go first. */
  readonly reloadRequested: boolean;
  /** The owner linked another gateway (or gave a new enrollment token): the current link must go. */
  readonly relinkRequested: boolean;
  /** A gateway URL is known. */
  readonly linked: boolean;
  /** A model choice is in hand. */
  readonly chosen: boolean;
  /** The gateway side (an Agent) exists. */
  readonly agent: boolean;
  /** Its link is open or reopening (not idle, not stopped). */
  readonly connected: boolean;
  /** An engine is loaded. */
  readonly loaded: boolean;
  /** The state now, and why. */
  readonly state: AgentState;
  readonly reason: StateReason | null;
  /** The jobs of the current draining spell have settled (finished or aborted). */
  readonly drained: boolean;
  /** The unload delay has passed since serving stopped. */
  readonly unloadDue: boolean;
  /** The unload delay is running. */
  readonly unloadScheduled: boolean;
}

/** Why the link is closed, as the goodbye the runtime sends says it. */
export type StandDownGoodbye = 'paused' | 'schedule' | 'error';

/** The next thing the runtime does. */
export type Step =
  /** Nothing until something changes (a reading, a timer, the owner). */
  | { readonly kind: 'rest' }
  /** Stop taking jobs if still serving, and let running jobs finish within the grace. */
  | { readonly kind: 'drain'; readonly reason: string }
  /** Unload the model now: memory goes back to the owner. */
  | { readonly kind: 'unload' }
  /** Forget the model choice (the selection changed); the next serve asks again. */
  | { readonly kind: 'forget-model' }
  /** Drop the gateway side and its link; the next connect uses the new gateway. */
  | { readonly kind: 'relink' }
  /** The held error's retry time came: try again. */
  | { readonly kind: 'clear-error' }
  /** Enter the error state for a reason found while planning. */
  | { readonly kind: 'fail'; readonly code: 'NJ_NOT_LINKED' }
  /** Ask which model to serve. */
  | { readonly kind: 'choose-model' }
  /** Create the gateway side if needed and open its link. */
  | { readonly kind: 'connect' }
  /** Cancel a pending unload: serving again with the model in memory. */
  | { readonly kind: 'keep-model' }
  /** Load the chosen model (state 'loading'). */
  | { readonly kind: 'load' }
  /** Take jobs (state 'serving'); keep the Mac awake. */
  | { readonly kind: 'serve'; readonly reason: StateReason }
  /** Say goodbye and close the link. */
  | { readonly kind: 'disconnect'; readonly goodbye: StandDownGoodbye }
  /** Enter a state that takes no jobs; let the Mac sleep. */
  | { readonly kind: 'enter'; readonly state: 'waiting' | 'paused' | 'error'; readonly reason: StateReason }
  /** Start the unload delay. */
  | { readonly kind: 'schedule-unload' };

const REST: Step = { kind: 'rest' };

/** A decision as a reason a person can read. */
export function reasonOf(decision: Decision): StateReason {
  const { message, hint } = describeDecision(decision);
  return { code: decision.reason, message, hint };
}

function sameReason(a: StateReason | null, b: StateReason | null): boolean {
  return a?.code === b?.code && a?.message === b?.message;
}

/** In this state, whether jobs may still be running that a drain must settle first. */
function needsDrain(i: PlanInput): boolean {
  return i.agent && (i.state === 'serving' || (i.state === 'draining' && !i.drained));
}

/**
 * Whether a decision, applied now, must stop the taking of jobs at once (synchronously, before
 * any step runs): serving, and the decision no longer says serve.
 */
export function stopsAccepting(decision: Decision, state: AgentState): boolean {
  return decision.action !== 'serve' && state === 'serving';
}

/** The next step. Pure: the same input always gives the same step. */
export function plan(i: PlanInput): Step {
  const d = i.decision;
  if (!d) return REST;
  if (i.reloadRequested) {
    if (needsDrain(i)) return { kind: 'drain', reason: 'model-change' };
    if (i.loaded) return { kind: 'unload' };
    return { kind: 'forget-model' };
  }
  if (i.relinkRequested) {
    if (needsDrain(i)) return { kind: 'drain', reason: 'relink' };
    return { kind: 'relink' };
  }
  if (d.action === 'off' && d.reason === 'paused') return standDown(i, d);
  if (i.error) {
    if (i.error.retryAt !== null && i.now >= i.error.retryAt) return { kind: 'clear-error' };
    return holdError(i, i.error.reason);
  }
  if (d.action === 'serve') return serve(i, d);
  return standDown(i, d);
}

/** The gateway side exists and is connected, or the step that gets it there. */
function ready(i: PlanInput): Step | null {
  if (!i.linked) return { kind: 'fail', code: 'NJ_NOT_LINKED' };
  if (!i.chosen) return { kind: 'choose-model' };
  if (!i.agent || !i.connected) return { kind: 'connect' };
  return null;
}

function serve(i: PlanInput, d: Decision): Step {
  const missing = ready(i);
  if (missing) return missing;
  if (i.unloadScheduled || i.unloadDue) return { kind: 'keep-model' };
  if (!i.loaded) return { kind: 'load' };
  const reason = reasonOf(d);
  if (i.state !== 'serving' || !sameReason(i.reason, reason)) return { kind: 'serve', reason };
  return REST;
}

function standDown(i: PlanInput, d: Extract<Decision, { action: 'wait' | 'off' }>): Step {
  if (needsDrain(i)) return { kind: 'drain', reason: d.reason };
  const reason = reasonOf(d);
  if (d.action === 'off') {
    if (i.connected) return { kind: 'disconnect', goodbye: d.reason === 'paused' ? 'paused' : 'schedule' };
    const state = d.reason === 'paused' ? 'paused' : 'waiting';
    if (i.state !== state || !sameReason(i.reason, reason)) return { kind: 'enter', state, reason };
  } else {
    // Waiting stays connected, so the gateway knows the agent and serving resumes at once.
    const missing = ready(i);
    if (missing) return missing;
    if (i.state !== 'waiting' || !sameReason(i.reason, reason)) return { kind: 'enter', state: 'waiting', reason };
  }
  if (i.loaded) {
    if (i.unloadDue) return { kind: 'unload' };
    if (!i.unloadScheduled) return { kind: 'schedule-unload' };
  }
  return REST;
}

function holdError(i: PlanInput, reason: StateReason): Step {
  if (needsDrain(i)) return { kind: 'drain', reason: reason.code };
  if (i.state !== 'error' || !sameReason(i.reason, reason)) return { kind: 'enter', state: 'error', reason };
  if (i.connected) return { kind: 'disconnect', goodbye: 'error' };
  if (i.loaded) return { kind: 'unload' };
  return REST;
}
