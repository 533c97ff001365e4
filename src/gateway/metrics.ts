/**
 * Prometheus metrics, written by hand in the text exposition format (version 0.0.4): counters,
 * gauges (set, or read at scrape time) and histograms with fixed buckets. Label values are
 * escaped; label sets are bounded by what the gateway puts in them (outcomes, codes, models
 * agents serve).
 */

type Labels = Readonly<Record<string, string>>;

function escape(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function labelText(labels: Labels): string {
  const keys = Object.keys(labels).sort();
  return keys.length === 0 ? '' : `{${keys.map((k) => `${k}="${escape(labels[k]!)}"`).join(',')}}`;
}

function num(v: number): string {
  return Number.isFinite(v) ? String(v) : v > 0 ? '+Inf' : v < 0 ? '-Inf' : 'NaN';
}

interface Metric {
  readonly name: string;
  render(): string;
}

/** A counter that only goes up. */
export class Counter implements Metric {
  readonly #values = new Map<string, { labels: Labels; value: number }>();
  constructor(
    readonly name: string,
    readonly help: string,
  ) {}

  /** Adds `by` (default 1) to the series with `labels`. */
  inc(labels: Labels = {}, by = 1): void {
    const key = labelText(labels);
    const row = this.#values.get(key) ?? { labels, value: 0 };
    row.value += by;
    this.#values.set(key, row);
  }

  /** The value of one series. */
  get(labels: Labels = {}): number {
    return this.#values.get(labelText(labels))?.value ?? 0;
  }

  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    for (const { labels, value } of this.#values.values()) lines.push(`${this.name}${labelText(labels)} ${num(value)}`);
    return lines.join('\n');
  }
}

/** A gauge, read from a callback at scrape time. */
export class Gauge implements Metric {
  constructor(
    readonly name: string,
    readonly help: string,
    readonly read: () => readonly { labels?: Labels; value: number }[] | number,
  ) {}

  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} gauge`];
    const v = this.read();
    if (typeof v === 'number') lines.push(`${this.name} ${num(v)}`);
    else for (const s of v) lines.push(`${this.name}${labelText(s.labels ?? {})} ${num(s.value)}`);
    return lines.join('\n');
  }
}

/** A histogram with fixed upper bounds (in seconds for durations). */
export class Histogram implements Metric {
  readonly #counts: number[];
  #sum = 0;
  #count = 0;
  constructor(
    readonly name: string,
    readonly help: string,
    readonly buckets: readonly number[],
  ) {
    this.#counts = buckets.map(() => 0);
  }

  /** Records one observation. */
  observe(value: number): void {
    this.#sum += value;
    this.#count++;
    for (let i = 0; i < this.buckets.length; i++) if (value <= this.buckets[i]!) this.#counts[i]!++;
  }

  /** Observations so far. */
  get count(): number {
    return this.#count;
  }

  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    this.buckets.forEach((b, i) => lines.push(`${this.name}_bucket{le="${num(b)}"} ${this.#counts[i]}`));
    lines.push(`${this.name}_bucket{le="+Inf"} ${this.#count}`, `${this.name}_sum ${num(this.#sum)}`, `${this.name}_count ${this.#count}`);
    return lines.join('\n');
  }
}

/** The gateway's metrics. */
export class GatewayMetrics {
  readonly jobs = new Counter('nightjar_jobs_total', 'Jobs finished, by outcome (done, failed, cancelled) and error code.');
  readonly tokens = new Counter('nightjar_tokens_total', 'Tokens in verified receipts, by kind (prompt, completion).');
  readonly attemptsFailed = new Counter('nightjar_attempts_failed_total', 'Attempts that failed on an agent, by code.');
  readonly settlements = new Counter('nightjar_settlements_total', 'Ledger outcomes of jobs (settled, released, duplicate).');
  readonly rejected = new Counter('nightjar_rejected_total', 'Requests and connections refused at a limit, by limit.');
  readonly ttft = new Histogram(
    'nightjar_time_to_first_token_seconds',
    'From job admission to its first reply chunk reaching the client.',
    [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
  );
  readonly relay = new Histogram(
    'nightjar_relay_latency_seconds',
    'From a reply chunk arriving from the agent to its write to the client.',
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1],
  );
  readonly #gauges: Gauge[] = [];

  /** Adds a gauge read at scrape time. */
  gauge(name: string, help: string, read: Gauge['read']): void {
    this.#gauges.push(new Gauge(name, help, read));
  }

  /** Every metric in the text exposition format. */
  render(): string {
    const all: Metric[] = [
      this.jobs,
      this.tokens,
      this.attemptsFailed,
      this.settlements,
      this.rejected,
      this.ttft,
      this.relay,
      ...this.#gauges,
    ];
    return all.map((m) => m.render()).join('\n') + '\n';
  }
}
