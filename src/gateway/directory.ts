/**
 * The directory: agents that are connected, authenticated and have a verified bundle, with what
 * they last said about themselves, what the gateway measured of them, and whether they answered
 * their last challenge. It filters and ranks them for the router. In the embedded default it
 * lives in memory.
 */
import type { Emitter } from '../shared/index.js';
import {
  TRUST_LEVELS,
  silentLogger,
  withDefaults,
  type AgentState,
  type Disposable,
  type Event,
  type Logger,
  type MemoryPressure,
  type Trust,
  type VerifiedBundle,
  loggedEmitter,
} from '../shared/index.js';

/** What an agent's last heartbeat said. */
export interface AgentStatus {
  state: AgentState;
  model: string | null;
  freeSlots: number;
  totalSlots: number;
  tokensPerSecond: number;
  ttftMs: number;
  /** The machine's memory pressure; absent counts as normal. */
  memoryPressure?: MemoryPressure;
}

/** What the gateway measured of an agent itself (harder to game than what the agent reports). */
export interface AgentHealth {
  /** Recent failures, decaying with {@link DirectoryOptions.failureHalfLifeMs}. */
  failureScore: number;
  /** When failureScore was last updated. */
  failureAt: number;
  /** Smoothed time from dispatch to first chunk, ms; 0 until measured. */
  ttftMs: number;
  /** Jobs this session has finished with a verified receipt. */
  jobsDone: number;
  /** Attempts that failed on this agent. */
  jobsFailed: number;
}

/** The part of a connected agent the router needs. */
export interface DirectoryEntry {
  readonly agentId: string;
  bundle: VerifiedBundle;
  trust: Trust;
  status: AgentStatus | null;
  /** Jobs this gateway has dispatched to the agent and not seen end. */
  inFlight: number;
  /** inFlight when the last status arrived (to correct the agent's freeSlots for jobs since). */
  inFlightAtStatus: number;
  connectedAt: number;
  lastSeenAt: number;
  /** When the agent last answered a challenge. */
  challengedAt: number;
  /** False once the agent missed a challenge, until it answers the next one. */
  challengeFresh(now: number): boolean;
  /** The operator the agent is bound to; null for an agent without an enrollment. */
  operatorId: string | null;
  /** True after the agent said goodbye, or while it is not ready. */
  readonly accepting: boolean;
  health: AgentHealth;
}

/** A model as clients see it. */
export interface DirectoryModel {
  id: string;
  /** True if every offered file of it says it is synthetic (informational: prices follow the catalog). */
  synthetic: boolean;
  /** True if the catalog lists the id: only its catalogued files are offered, at its price. */
  catalogued: boolean;
  agents: number;
  freeSlots: number;
}

/**
 * Which agents' files may be offered, and which are catalogued (priced). The gateway's
 * {@link ModelCatalog} is one; {@link OPEN_CATALOG} offers every file and catalogues none.
 */
export interface FileCatalog {
  /** True if the catalog lists model id `id`. */
  lists(id: string): boolean;
  /** True if the catalog lists the file `sha256` as model `id`. */
  catalogued(id: string, sha256: string): boolean;
  /** True if the file `sha256`, served as `id`, may be offered to clients at all. */
  offers(id: string, sha256: string): boolean;
}

/** A catalog that lists nothing and offers every file (free): a directory on its own, in tests. */
export const OPEN_CATALOG: FileCatalog = { lists: () => false, catalogued: () => false, offers: () => true };

/** What a job needs of an agent. */
export interface EligibilityNeeds {
  model: string;
  /** Lowest trust accepted. Defaults to 'signed'. */
  minTrust?: Trust;
  /** The job costs money: only agents bound to an operator may serve it. Defaults to false. */
  paid?: boolean;
  /**
   * The job was priced from the catalog: only agents whose file the catalog lists for the model
   * may serve it, whatever the catalog says by the time it is routed. Defaults to false.
   */
  catalogued?: boolean;
  now: number;
}

/** Options of {@link Directory}. */
export interface DirectoryOptions {
  /** Which files may be offered and which are catalogued. Defaults to {@link OPEN_CATALOG}. */
  catalog?: FileCatalog;
  /** Ranking penalty per recent failure, ms of expected latency. Defaults to 5000. */
  failurePenaltyMs?: number;
  /**
   * Ranking penalty for an agent whose machine reports critical memory pressure (a tenth of it
   * for 'warn'), ms of expected latency: such a machine swaps, and another job makes it worse.
   * Defaults to 10 000.
   */
  pressurePenaltyMs?: number;
  /** Half-life of the failure score. Defaults to 60 000 ms. */
  failureHalfLifeMs?: number;
  /** Generation speed assumed for an agent that has not measured its own yet. Defaults to 10 tokens/s. */
  defaultTokensPerSecond?: number;
  /** Completion length the ranking assumes for a job. Defaults to 256 tokens. */
  typicalTokens?: number;
  /**
   * What the gateway measured of an agent serving a model (its own timing of its jobs): the
   * ranking uses these, never the speed the agent claims. Defaults to nothing measured.
   */
  measured?: (agentId: string, model: string) => { tokensPerSecond: number; ttftMs: number } | undefined;
  /**
   * An agent's honesty score in (0, 1] (honesty/score.ts): the ranking treats each of its jobs as
   * 1/score times as long. Defaults to 1 for every agent.
   */
  score?: (agentId: string, now: number) => number;
  /** Below this score an agent is not eligible at all. Defaults to 0 (none barred). */
  minScore?: number;
  /** Where a throwing event listener is logged. Defaults to a silent logger. */
  logger?: Logger;
}

/** The defaults of {@link DirectoryOptions}. */
export const DIRECTORY_DEFAULTS: Required<DirectoryOptions> = {
  catalog: OPEN_CATALOG,
  failurePenaltyMs: 5000,
  pressurePenaltyMs: 10_000,
  failureHalfLifeMs: 60_000,
  defaultTokensPerSecond: 10,
  typicalTokens: 256,
  measured: () => undefined,
  score: () => 1,
  minScore: 0,
  logger: silentLogger,
};

/** A fresh health record. */
export function newHealth(now: number): AgentHealth {
  return { failureScore: 0, failureAt: now, ttftMs: 0, jobsDone: 0, jobsFailed: 0 };
}

/**
 * Connected agents, by id. Its events let callers await an agent's arrival, a change in what it
 * said or can take, and its departure instead of polling.
 */
export class Directory<E extends DirectoryEntry = DirectoryEntry> implements Disposable {
  readonly #agents = new Map<string, E>();
  readonly #o: Required<DirectoryOptions>;
  readonly #connected: Emitter<E>;
  readonly #changed: Emitter<E>;
  readonly #disconnected: Emitter<E>;
  /** An agent joined (or a new connection replaced its old one). */
  readonly onAgentConnected: Event<E>;
  /** What a listed agent said about itself or can take may have changed (a heartbeat, a job ending, a challenge, a new bundle). */
  readonly onAgentChanged: Event<E>;
  /** An agent left: its last connection closed. */
  readonly onAgentDisconnected: Event<E>;

  constructor(options: DirectoryOptions = {}) {
    this.#o = withDefaults(DIRECTORY_DEFAULTS, options);
    const log = this.#o.logger;
    this.#connected = loggedEmitter<E>(log, 'agent connected');
    this.#changed = loggedEmitter<E>(log, 'agent changed');
    this.#disconnected = loggedEmitter<E>(log, 'agent disconnected');
    this.onAgentConnected = this.#connected.event;
    this.onAgentChanged = this.#changed.event;
    this.onAgentDisconnected = this.#disconnected.event;
  }

  /** Adds or replaces an agent; returns the entry it replaced, if any. */
  set(entry: E): E | undefined {
    const previous = this.#agents.get(entry.agentId);
    this.#agents.set(entry.agentId, entry);
    this.#connected.fire(entry);
    return previous;
  }

  /** Removes `entry` if it is still the current one for its agent. */
  delete(entry: E): void {
    if (this.#agents.get(entry.agentId) !== entry) return;
    this.#agents.delete(entry.agentId);
    this.#disconnected.fire(entry);
  }

  /** Says that what `entry` reported or can take may have changed (fires {@link Directory.onAgentChanged}). */
  changed(entry: E): void {
    if (this.#agents.get(entry.agentId) === entry) this.#changed.fire(entry);
  }

  /** Drops every listener. */
  dispose(): void {
    this.#connected.dispose();
    this.#changed.dispose();
    this.#disconnected.dispose();
  }

  /** The connected agent with this id. */
  get(agentId: string): E | undefined {
    return this.#agents.get(agentId);
  }

  /** Every connected agent. */
  all(): E[] {
    return [...this.#agents.values()];
  }

  /** How many agents are connected. */
  get size(): number {
    return this.#agents.size;
  }

  /**
   * True if `entry` serves `model` from a file clients may be offered (the catalog's rule); with
   * `catalogued`, only from a file the catalog lists for `model`.
   */
  serves(entry: E, model: string, catalogued = false): boolean {
    const catalog = this.#o.catalog;
    return entry.bundle.bundle.models.some(
      (m) => m.id === model && (catalogued ? catalog.catalogued(model, m.sha256) : catalog.offers(model, m.sha256)),
    );
  }

  /**
   * Free slots as the gateway sees them: the agent's last figure, less the jobs dispatched since
   * (plus those that ended since), never more than its slots less the jobs in flight.
   */
  freeSlots(entry: E): number {
    const total = entry.status?.totalSlots || entry.bundle.bundle.capacity.slots;
    const room = total - entry.inFlight;
    if (!entry.status) return Math.max(0, room);
    const corrected = entry.status.freeSlots - (entry.inFlight - entry.inFlightAtStatus);
    return Math.max(0, Math.min(corrected, room));
  }

  /**
   * True if `entry` may be given a job for `needs` at all (busy or not): it serves the model
   * from a file the catalog lets it (a catalogued one, for a job priced from the catalog), meets
   * the trust floor, is serving and accepting, answered its last challenge, its bundle has not
   * expired, its honesty score is not below minScore, and — for a paid job — it is bound to an operator.
   */
  eligible(entry: E, needs: EligibilityNeeds): boolean {
    const floor = TRUST_LEVELS.indexOf(needs.minTrust ?? 'signed');
    return (
      entry.accepting &&
      entry.status?.state === 'serving' &&
      this.serves(entry, needs.model, needs.catalogued ?? false) &&
      TRUST_LEVELS.indexOf(entry.trust) >= floor &&
      entry.challengeFresh(needs.now) &&
      // An expired bundle would be refused by every client anyway (agents rotate well before).
      entry.bundle.bundle.notAfter > needs.now &&
      this.#o.score(entry.agentId, needs.now) >= this.#o.minScore &&
      (!needs.paid || entry.operatorId !== null)
    );
  }

  /** True if `entry` is eligible and has a free slot now. */
  available(entry: E, needs: EligibilityNeeds): boolean {
    return this.eligible(entry, needs) && this.freeSlots(entry) > 0;
  }

  /** The failure score now, after decay. */
  failureScore(entry: E, now: number): number {
    const halfLife = this.#o.failureHalfLifeMs;
    const h = entry.health;
    return h.failureScore * 2 ** (-Math.max(0, now - h.failureAt) / halfLife);
  }

  /** Records a failed attempt on `entry`: it ranks lower for a while. */
  recordFailure(entry: E, now: number): void {
    entry.health.failureScore = this.failureScore(entry, now) + 1;
    entry.health.failureAt = now;
    entry.health.jobsFailed++;
  }

  /** Records a measured time to first chunk. */
  recordFirstChunk(entry: E, ms: number): void {
    const h = entry.health;
    h.ttftMs = h.ttftMs === 0 ? ms : h.ttftMs * 0.8 + ms * 0.2;
  }

  /**
   * Expected time, in ms, until a job of `tokens` completion tokens would see its first token on
   * `entry`: the time to first chunk the gateway measured, plus, when no slot is free, the wait
   * for one (a job's length at the measured speed, spread over the slots), plus the load slowing
   * parallel sequences, plus a penalty per recent failure and one for memory pressure, plus, for
   * an agent with strikes, (1/score − 1) job lengths (a score of ½ ranks it as if its jobs took
   * twice as long, so it is given jobs only when better agents are busy). The speed and time to
   * first token the agent claims are not used: until the gateway has timed a job of it, it is
   * ranked at defaultTokensPerSecond and no time to first token.
   */
  expectedLatencyMs(entry: E, now: number, tokens = this.#o.typicalTokens, model = entry.status?.model ?? null): number {
    const measured = model === null ? undefined : this.#o.measured(entry.agentId, model);
    const tps = measured?.tokensPerSecond || this.#o.defaultTokensPerSecond;
    const ttft = entry.health.ttftMs || measured?.ttftMs || 0;
    const total = Math.max(1, entry.status?.totalSlots || entry.bundle.bundle.capacity.slots);
    const jobMs = ttft + (tokens / tps) * 1000;
    const load = entry.inFlight / total;
    const wait = this.freeSlots(entry) > 0 ? 0 : jobMs / total;
    const pressure = entry.status?.memoryPressure === 'critical' ? 1 : entry.status?.memoryPressure === 'warn' ? 0.1 : 0;
    const score = Math.max(1e-6, Math.min(1, this.#o.score(entry.agentId, now)));
    return (
      ttft +
      load * jobMs * 0.5 +
      wait +
      this.failureScore(entry, now) * this.#o.failurePenaltyMs +
      pressure * this.#o.pressurePenaltyMs +
      (1 / score - 1) * jobMs
    );
  }

  /**
   * Up to `k` agents for `needs`, best first: those with a free slot before those without, then
   * by expected latency. Busy agents are included (a job sealed for them waits in the queue).
   */
  candidates(needs: EligibilityNeeds, k: number): E[] {
    return this.all()
      .filter((e) => this.eligible(e, needs))
      .sort(
        (a, b) => Number(this.freeSlots(b) > 0) - Number(this.freeSlots(a) > 0) || this.compare(a, b, needs.now, undefined, needs.model),
      )
      .slice(0, k);
  }

  /**
   * Orders two agents for a job of `tokens` completion tokens of `model` (each agent's current
   * model when absent): lower expected latency first;
   * on a tie, more free slots (spreading load), then agentId so the order is stable.
   */
  compare(a: E, b: E, now: number, tokens?: number, model?: string): number {
    return (
      this.expectedLatencyMs(a, now, tokens, model) - this.expectedLatencyMs(b, now, tokens, model) ||
      this.freeSlots(b) - this.freeSlots(a) ||
      a.agentId.localeCompare(b.agentId)
    );
  }

  /** True if any connected agent serves `model`, busy or not. */
  knows(model: string): boolean {
    return this.all().some((e) => this.serves(e, model));
  }

  /** The models on offer (the catalog's rule), with how many agents serve each and their free slots. */
  models(now: number): DirectoryModel[] {
    const catalog = this.#o.catalog;
    const byId = new Map<string, DirectoryModel>();
    for (const e of this.all()) {
      for (const m of e.bundle.bundle.models) {
        if (!catalog.offers(m.id, m.sha256)) continue;
        const row = byId.get(m.id) ?? { id: m.id, synthetic: m.synthetic, catalogued: catalog.lists(m.id), agents: 0, freeSlots: 0 };
        row.synthetic &&= m.synthetic;
        row.agents++;
        if (this.available(e, { model: m.id, now })) row.freeSlots += this.freeSlots(e);
        byId.set(m.id, row);
      }
    }
    return [...byId.values()].sort((a, b) => a.id.localeCompare(b.id));
  }
}
