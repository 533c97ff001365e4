/**
 * The gateway's Prometheus metrics, on prom-client: one Registry per gateway (never the global
 * default registry, so two gateways in one process — tests, benches — keep their own figures).
 * Counters and histograms are updated as things happen; gauges are read at scrape time. Label
 * sets are bounded by what the gateway puts in them (outcomes, codes, limits). The names, labels
 * and help texts are the ones docs/gateway.md lists.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { withDefaults } from '../shared/index.js';

/** Options of {@link GatewayMetrics}. */
export interface GatewayMetricsOptions {
  /**
   * Also export prom-client's default process metrics (CPU, memory, event-loop lag, handles).
   * Defaults to false: they describe the process, not the gateway, and their event-loop monitor
   * stays enabled for the life of the process.
   */
  processMetrics?: boolean;
}

const METRICS_DEFAULTS: Required<GatewayMetricsOptions> = { processMetrics: false };

/** The gateway's metrics, in a registry of their own. */
export class GatewayMetrics {
  /** The registry every metric below is registered in. */
  readonly registry = new Registry();
  /** Jobs finished, by outcome and error code. */
  readonly jobs = new Counter<'code' | 'outcome'>({
    name: 'nightjar_jobs_total',
    help: 'Jobs finished, by outcome (done, failed, cancelled) and error code.',
    labelNames: ['code', 'outcome'],
    registers: [this.registry],
  });
  /** Tokens in verified receipts, by kind. */
  readonly tokens = new Counter<'kind'>({
    name: 'nightjar_tokens_total',
    help: 'Tokens in verified receipts, by kind (prompt, completion).',
    labelNames: ['kind'],
    registers: [this.registry],
  });
  /** Attempts that failed on an agent, by code. */
  readonly attemptsFailed = new Counter<'code'>({
    name: 'nightjar_attempts_failed_total',
    help: 'Attempts that failed on an agent, by code.',
    labelNames: ['code'],
    registers: [this.registry],
  });
  /** Ledger outcomes of jobs. */
  readonly settlements = new Counter<'result'>({
    name: 'nightjar_settlements_total',
    help: 'Ledger outcomes of jobs (settled, released, duplicate).',
    labelNames: ['result'],
    registers: [this.registry],
  });
  /** Receipt claims cut to the bound of what the gateway relayed, by field (prompt, completion). */
  readonly claimsCapped = new Counter<'field'>({
    name: 'nightjar_receipt_claims_capped_total',
    help: 'Receipts that claimed more tokens than the bytes relayed could hold, billed at the bound, by field.',
    labelNames: ['field'],
    registers: [this.registry],
  });
  /** Client countersignatures taken, by result (stored, disputed, late, duplicate). */
  readonly countersigns = new Counter<'result'>({
    name: 'nightjar_countersigns_total',
    help: 'Client countersignatures of replies, by result (stored, disputed: the receipt claimed more, late, duplicate).',
    labelNames: ['result'],
    registers: [this.registry],
  });
  /** Revealed jobs the gateway re-checked, by result. */
  readonly reveals = new Counter<'result'>({
    name: 'nightjar_reveals_total',
    help: 'Revealed jobs re-checked by the reply checker, by result (passed, forfeited, failed-payable: failed after the pending window).',
    labelNames: ['result'],
    registers: [this.registry],
  });
  /** Receipts agents delivered after their job ended here (a dropped link, a restart), by outcome. */
  readonly lateReceipts = new Counter<'outcome'>({
    name: 'nightjar_late_receipts_total',
    help: 'Receipts delivered after their job ended at the gateway, by outcome (settled, duplicate, refused, unknown, retry).',
    labelNames: ['outcome'],
    registers: [this.registry],
  });
  /** Requests and connections refused at a limit. */
  readonly rejected = new Counter<'limit'>({
    name: 'nightjar_rejected_total',
    help: 'Requests and connections refused at a limit, by limit.',
    labelNames: ['limit'],
    registers: [this.registry],
  });
  /** Request rate-limit takes that used this node's own bucket instead of the cluster's shared one, by reason. */
  readonly rateLimitFallbacks = new Counter<'reason'>({
    name: 'nightjar_rate_limit_fallbacks_total',
    help:
      "Rate-limit takes that used this node's own bucket instead of the cluster's shared one, " +
      'by reason (unreachable: NATS down or slow, conflict, busy).',
    labelNames: ['reason'],
    registers: [this.registry],
  });
  /** From job admission to its first reply chunk reaching the client, in seconds. */
  readonly ttft = new Histogram({
    name: 'nightjar_time_to_first_token_seconds',
    help: 'From job admission to its first reply chunk reaching the client.',
    buckets: [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [this.registry],
  });
  /** From a reply chunk arriving from the agent to its write to the client, in seconds. */
  readonly relay = new Histogram({
    name: 'nightjar_relay_latency_seconds',
    help: 'From a reply chunk arriving from the agent to its write to the client.',
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1],
    registers: [this.registry],
  });

  constructor(options: GatewayMetricsOptions = {}) {
    const o = withDefaults(METRICS_DEFAULTS, options);
    if (o.processMetrics) collectDefaultMetrics({ register: this.registry });
  }

  /** Adds a gauge without labels whose value `read` gives at scrape time. */
  gauge(name: string, help: string, read: () => number): void {
    new Gauge({
      name,
      help,
      registers: [this.registry],
      collect() {
        this.set(read());
      },
    });
  }

  /** The value of one series of a counter (0 if it was never incremented). */
  async value(counter: Counter, labels: Readonly<Record<string, string>> = {}): Promise<number> {
    const want = Object.entries(labels);
    const { values } = await counter.get();
    const row = values.find((v) => {
      const have = Object.entries(v.labels);
      return have.length === want.length && want.every(([k, x]) => v.labels[k] === x);
    });
    return row?.value ?? 0;
  }

  /** The Content-Type of {@link GatewayMetrics.render}'s text. */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** Every metric in the text exposition format (version 0.0.4). */
  render(): Promise<string> {
    return this.registry.metrics();
  }
}
